"""What several subcommands share."""

from __future__ import annotations

from pathlib import Path

from servegate.errors import ServegateError


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def conformance_dir() -> Path:
    for candidate in (Path.cwd() / "conformance", repo_root() / "conformance"):
        if candidate.is_dir():
            return candidate
    raise ServegateError("no conformance/ folder found; run servegate from a servegate checkout")


def log(message: str) -> None:
    print(f"[servegate] {message}", flush=True)
