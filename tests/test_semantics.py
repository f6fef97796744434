"""The checks of meaning per task: each can fail, and no task goes unchecked."""

from __future__ import annotations

import pytest

from servegate.checks import RuleViolation
from servegate.features import TASKS
from servegate.targets import ModelInfo
from servegate.tasks import examples, semantics


class _Evidence:
    def describe(self) -> str:
        return "(no exchange)"


MODEL = ModelInfo(name="m", task=None)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_a_check_of_meaning_that_refuses_nonsense(task: str) -> None:
    with pytest.raises(RuleViolation):
        semantics.check_task_result(task, [{"nonsense": True}], MODEL, _Evidence())


def test_a_task_without_a_check_of_meaning_does_not_pass() -> None:
    with pytest.raises(LookupError, match="no check of meaning for task 'zero-shot'"):
        semantics.check_task_result("zero-shot", [], MODEL, _Evidence())


def test_no_entity_for_a_sentence_of_names_fails() -> None:
    with pytest.raises(RuleViolation, match="finds entities"):
        semantics.check_entities([], MODEL, examples.NER, _Evidence())


def test_entities_that_name_the_input_pass() -> None:
    entity = {"entity": "B-ORG", "score": 0.5, "word": "Apple", "start": 0, "end": 5}
    semantics.check_entities([entity], MODEL, examples.NER, _Evidence())
