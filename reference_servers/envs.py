"""Each reference server runs in its own virtualenv, created on first use from pinned
requirements, because the runtimes' pins conflict with each other and with the suite's."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import time
import venv
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from servegate.errors import EnvironmentSetupError

COMPLETE_MARKER = ".servegate-complete"


def env_dir(state_dir: Path, name: str, requirements: Path, uninstall: Sequence[str] = ()) -> Path:
    """Where the env for these requirements lives: a new env whenever the pins (or the
    packages removed after installing them) change."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    if uninstall:
        digest.update(("\0uninstall " + " ".join(uninstall)).encode())
    return state_dir / "envs" / f"{name}-{digest.hexdigest()[:12]}"


def env_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def ensure_env(
    state_dir: Path,
    name: str,
    requirements: Path,
    *,
    log: Callable[[str], None] = print,
    timeout: float = 3600,
    uninstall: Sequence[str] = (),
) -> Path:
    """Return the interpreter of the env for ``requirements``, creating the env if needed.

    ``uninstall`` names packages that the pins pull in as dependencies and that must not be
    there (a runtime's wheels that fail to load); they are removed after the install.
    A half-created env (an interrupted install) is removed and made again.
    """
    directory = env_dir(state_dir, name, requirements, uninstall)
    python = env_python(directory)
    if (directory / COMPLETE_MARKER).exists() and python.exists():
        return python
    directory.parent.mkdir(parents=True, exist_ok=True)
    # one creator at a time: a second run (another shell, a parallel CI job) waits, then reuses
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        if not _try_lock(lock):
            log(f"[{name}] another process is creating {directory}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _create(directory, python, name, requirements, log, timeout, uninstall)
        except OSError as exc:
            raise EnvironmentSetupError(f"[{name}] creating {directory} failed: {exc}") from None


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _create(
    directory: Path,
    python: Path,
    name: str,
    requirements: Path,
    log: Callable[[str], None],
    timeout: float,
    uninstall: Sequence[str] = (),
) -> Path:
    if (directory / COMPLETE_MARKER).exists() and python.exists():
        return python
    if directory.exists():
        log(f"[{name}] removing an incomplete env at {directory}")
        shutil.rmtree(directory)
    log(f"[{name}] creating env {directory} from {requirements} (first use; minutes)")
    started = time.monotonic()
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    _pip(python, ["install", "--upgrade", "--quiet", "pip"], name, log, timeout)
    _pip(python, ["install", "--progress-bar", "off", "-r", str(requirements)], name, log, timeout)
    if uninstall:
        log(f"[{name}] removing {', '.join(uninstall)} (pulled in, not wanted)")
        _pip(python, ["uninstall", "--yes", *uninstall], name, log, timeout)
    (directory / COMPLETE_MARKER).write_text(requirements.read_text())
    log(f"[{name}] env ready in {time.monotonic() - started:.0f} s")
    return python


def _pip(
    python: Path, args: list[str], name: str, log: Callable[[str], None], timeout: float
) -> None:
    tail: deque[str] = deque(maxlen=30)
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    deadline = time.monotonic() + timeout
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if not line or line.startswith("WARNING: Location"):
                continue
            tail.append(line)
            # progress: one line per package pip starts on, and the final summary
            if line.startswith(("Collecting", "Installing", "Successfully", "ERROR")):
                log(f"[{name}] {line}")
            if time.monotonic() > deadline:
                proc.kill()
                raise EnvironmentSetupError(f"[{name}] pip did not finish within {timeout:.0f} s")
        code = proc.wait()
    if code != 0:
        raise EnvironmentSetupError(
            f"[{name}] pip {' '.join(args[:1])} failed with exit code {code}:\n" + "\n".join(tail)
        )
