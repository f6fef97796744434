"""Fixtures the conformance modules share (the target and the clients come from the plugin)."""

from __future__ import annotations

import pytest

from servegate.features import UNSUPPORTED_PREFIX
from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo


@pytest.fixture
def numeric(target: Target) -> ModelInfo:
    """The target's numeric echo model (every V2 datatype); unsupported when it serves none."""
    model = numeric_echo.numeric_model(target)
    if model is None:
        pytest.skip(
            f"{UNSUPPORTED_PREFIX} {target.name} serves no {numeric_echo.TASK} model "
            f"(declare one with --model NAME={numeric_echo.TASK})"
        )
    return model
