"""Assertions that read as the rule they check, with the exchange that broke it."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ValidationError


class HasExchange(Protocol):
    def describe(self) -> str: ...


class RuleViolation(AssertionError):
    """A broken protocol rule: the rule, what was wrong, and the request/response."""

    def __init__(self, rule: str, problem: str, evidence: HasExchange | None = None):
        text = f"rule: {rule}\nproblem: {problem}"
        if evidence is not None:
            text += "\n" + evidence.describe()
        super().__init__(text)
        self.rule = rule
        self.problem = problem
        #: the request/response that broke the rule, so a report can keep it structured
        self.evidence = evidence


def expect(condition: object, rule: str, problem: str, evidence: HasExchange | None = None) -> None:
    """Fail with a RuleViolation unless ``condition`` holds."""
    if not condition:
        raise RuleViolation(rule, problem, evidence)


def expect_status(reply: Any, status: int | tuple[int, ...], rule: str) -> None:
    wanted = (status,) if isinstance(status, int) else status
    expect(
        reply.status in wanted,
        rule,
        f"status {reply.status}, expected {' or '.join(map(str, wanted))}",
        reply,
    )


def expect_model(model: type[BaseModel], data: Any, rule: str, evidence: HasExchange) -> Any:
    """Validate ``data`` against a payload model; the validation errors name what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors()[:8]
        )
        raise RuleViolation(
            rule, f"body does not match {model.__name__}: {problems}", evidence
        ) from None
