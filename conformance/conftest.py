"""Fixtures the conformance modules share (the target and the clients come from the plugin)."""

from __future__ import annotations

import pytest

from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo
from servegate.unsupported import unsupported


@pytest.fixture
def numeric(target: Target) -> ModelInfo:
    """The target's numeric echo model (every V2 datatype); unsupported when it serves none."""
    model = numeric_echo.numeric_model(target)
    if model is None:
        unsupported(
            target,
            f"task-{numeric_echo.TASK}",
            f"serves no {numeric_echo.TASK} model "
            f"(declare one with --model NAME={numeric_echo.TASK})",
        )
    return model
