"""Prompt files (``--prompts FILE``): the user's own prompts instead of synthetic ones.

Accepted:

- JSON Lines, one object a line: ``{"prompt": "..."}`` (completions; chat sends it as one user
  message) or ``{"messages": [{"role": ..., "content": ...}, ...]}`` (chat; completions sends
  the last user message's content), each optionally with ``"max_tokens": N``;
- ShareGPT-style conversations, as JSON Lines or as one JSON array (the form the ShareGPT
  dumps come in): ``{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}]}``.
  The request is every turn up to the last human one; the reply after it, when there is one,
  sets the output length (counted with the tokenizer) unless ``--output-len`` is given.

A malformed file stops the run before the first request, with one line naming the file, the
line (or array index) and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError

#: ShareGPT speaker names and the chat role each becomes
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}


class PromptFileError(ServegateError):
    """A prompt file that cannot be read as one of the accepted formats."""


@dataclass(frozen=True)
class FilePrompt:
    """One row of a prompt file."""

    #: the completions prompt
    prompt: str
    #: the chat messages
    messages: tuple[dict[str, str], ...]
    #: output tokens the row asks for (``max_tokens``), if it says
    max_tokens: int | None = None
    #: a ShareGPT reply to the last human turn: its length sets the output length
    reply: str | None = None
    #: "prompt", "messages" or "sharegpt"
    form: str = "prompt"


def read_prompt_file(path: str | Path) -> list[FilePrompt]:
    """Every prompt of ``path``, in order."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"--prompts {path}: no such file") from None
    except UnicodeDecodeError:
        raise PromptFileError(f"--prompts {path}: not UTF-8 text") from None
    except OSError as exc:
        raise PromptFileError(f"--prompts {path}: cannot read it ({exc.strerror})") from None
    rows = _json_array(p, text) if text.lstrip().startswith("[") else _json_lines(p, text)
    if not rows:
        raise PromptFileError(f"--prompts {path}: no prompt in the file")
    return [_row(p, where, row) for where, row in rows]


def _json_array(path: Path, text: str) -> list[tuple[str, Any]]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); expected a JSON array or JSON Lines"
        ) from None
    return [(f"item {i}", item) for i, item in enumerate(items)]


def _json_lines(path: Path, text: str) -> list[tuple[str, Any]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise PromptFileError(
                f"{path}:{number}: not a JSON object ({exc.msg}); one JSON object a line"
            ) from None
    return rows


def _fail(path: Path, where: str, message: str) -> PromptFileError:
    location = (
        f"{path}:{where.removeprefix('line ')}" if where.startswith("line") else (f"{path} {where}")
    )
    return PromptFileError(f"{location}: {message}")


def _row(path: Path, where: str, row: Any) -> FilePrompt:
    if not isinstance(row, dict):
        raise _fail(path, where, f"expected a JSON object, got {type(row).__name__}")
    max_tokens = row.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise _fail(path, where, f"max_tokens must be a positive integer, not {max_tokens!r}")
    if "prompt" in row:
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise _fail(path, where, "prompt must be a non-empty string")
        return FilePrompt(prompt, ({"role": "user", "content": prompt},), max_tokens)
    if "messages" in row:
        messages = _messages(path, where, row["messages"])
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise _fail(path, where, "messages has no user message")
        return FilePrompt(users[-1], messages, max_tokens, form="messages")
    if "conversations" in row:
        return _sharegpt(path, where, row["conversations"], max_tokens)
    raise _fail(path, where, "expected a prompt, messages or conversations field")


def _messages(path: Path, where: str, value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise _fail(path, where, "messages must be a non-empty list")
    out = []
    for i, message in enumerate(value):
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("role"), str)
            or not isinstance(message.get("content"), str)
        ):
            raise _fail(path, where, f"messages[{i}] needs a string role and a string content")
        out.append({"role": message["role"], "content": message["content"]})
    return tuple(out)


def _sharegpt(path: Path, where: str, value: Any, max_tokens: int | None) -> FilePrompt:
    if not isinstance(value, list) or not value:
        raise _fail(path, where, "conversations must be a non-empty list")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise _fail(path, where, f"conversations[{i}] needs a string value")
        speaker = str(turn.get("from", "")).lower()
        if speaker not in SHAREGPT_ROLES:
            raise _fail(
                path,
                where,
                f"conversations[{i}].from {turn.get('from')!r}: expected human, gpt or system",
            )
        turns.append({"role": SHAREGPT_ROLES[speaker], "content": turn["value"]})
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last_user is None:
        raise _fail(path, where, "conversations has no human turn")
    after = turns[last_user + 1 :]
    reply = after[0]["content"] if after and after[0]["role"] == "assistant" else None
    return FilePrompt(
        turns[last_user]["content"],
        tuple(turns[: last_user + 1]),
        max_tokens,
        reply=reply,
        form="sharegpt",
    )
