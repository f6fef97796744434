"""Each reference server runs in its own virtualenv, created on first use from pinned
requirements, because the runtimes' pins conflict with each other and with the suite's.

An env is made from the suite's own interpreter unless its runtime names a
:class:`BaseInterpreter`: a server whose native parts link one particular Python build (Triton's
Python-backend stub links the distribution's libpython) needs a venv of exactly that build.
"""

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
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from servegate.errors import EnvironmentSetupError

COMPLETE_MARKER = ".servegate-complete"


@dataclass(frozen=True)
class BaseInterpreter:
    """The interpreter a runtime's env must be made from, and how to recognise it."""

    #: absolute paths or command names (looked up on PATH), tried in order
    candidates: tuple[str, ...]
    #: the ``sys.prefix`` it must report: "/usr" is the distribution's own build, which a
    #: pyenv or python.org build of the same version is not
    prefix: str
    #: the one line a user reads when none is found, e.g. what to install
    hint: str


@dataclass(frozen=True)
class ResolvedInterpreter:
    path: Path
    #: its ``sys.version``: part of the env's hash, so another build makes another env
    version: str


_PROBE = "import sys, venv, ensurepip; print(sys.prefix); print(sys.version)"


def resolve_base(name: str, base: BaseInterpreter) -> ResolvedInterpreter:
    """The first candidate that runs, reports ``base.prefix`` and can make a venv with pip;
    EnvironmentSetupError with ``base.hint`` otherwise."""
    seen: list[str] = []
    for candidate in base.candidates:
        found = candidate if Path(candidate).is_absolute() else shutil.which(candidate)
        if not found or not Path(found).exists():
            continue
        try:
            out = subprocess.run(
                [found, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
            ).stdout.splitlines()
        except (OSError, subprocess.SubprocessError):
            # Debian ships venv/ensurepip apart (python3.11-venv): the import fails without it
            seen.append(f"{found} (cannot make a venv)")
            continue
        if len(out) >= 2 and out[0] == base.prefix:
            return ResolvedInterpreter(path=Path(found), version="\n".join(out[1:]))
        seen.append(f"{found} (prefix {out[0] if out else '?'})")
    tried = f"; tried {', '.join(seen)}" if seen else ""
    raise EnvironmentSetupError(f"{name} needs {base.hint}{tried}")


def env_dir(
    state_dir: Path,
    name: str,
    requirements: Path,
    base: ResolvedInterpreter | None = None,
    uninstall: Sequence[str] = (),
) -> Path:
    """Where the env for these requirements lives: a new env whenever the pins change, the
    interpreter it is made from, or the packages removed after installing them."""
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update((base.version if base else sys.version).encode())
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
    base: BaseInterpreter | None = None,
    uninstall: Sequence[str] = (),
) -> Path:
    """Return the interpreter of the env for ``requirements``, creating the env if needed.

    The env is made from ``base`` when given (EnvironmentSetupError naming what to install
    when it is absent), else from the interpreter running servegate. ``uninstall`` names
    packages that the pins pull in as dependencies and that must not be there (a runtime's
    wheels that fail to load); they are removed after the install. A half-created env (an
    interrupted install) is removed and made again.
    """
    resolved = resolve_base(name, base) if base is not None else None
    directory = env_dir(state_dir, name, requirements, resolved, uninstall)
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
            return _create(directory, python, name, requirements, log, timeout, resolved, uninstall)
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
    base: ResolvedInterpreter | None = None,
    uninstall: Sequence[str] = (),
) -> Path:
    if (directory / COMPLETE_MARKER).exists() and python.exists():
        return python
    if directory.exists():
        log(f"[{name}] removing an incomplete env at {directory}")
        shutil.rmtree(directory)
    log(f"[{name}] creating env {directory} from {requirements} (first use; minutes)")
    started = time.monotonic()
    if base is None:
        venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    else:
        # the venv module of that interpreter: EnvBuilder here would copy this one
        _run_venv(base.path, directory, name, timeout)
    _pip(python, ["install", "--upgrade", "--quiet", "pip"], name, log, timeout)
    _pip(python, ["install", "--progress-bar", "off", "-r", str(requirements)], name, log, timeout)
    if uninstall:
        log(f"[{name}] removing {', '.join(uninstall)} (pulled in, not wanted)")
        _pip(python, ["uninstall", "--yes", *uninstall], name, log, timeout)
    (directory / COMPLETE_MARKER).write_text(requirements.read_text())
    log(f"[{name}] env ready in {time.monotonic() - started:.0f} s")
    return python


def _run_venv(base: Path, directory: Path, name: str, timeout: float) -> None:
    try:
        subprocess.run(
            [str(base), "-m", "venv", "--clear", str(directory)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise EnvironmentSetupError(
            f"[{name}] {base} -m venv failed: {(exc.stderr or exc.stdout).strip()[-500:]}"
        ) from None
    except subprocess.TimeoutExpired:
        raise EnvironmentSetupError(f"[{name}] {base} -m venv took over {timeout:.0f} s") from None


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
