"""Which run owns a container, and removing what a run that is gone left behind.

testcontainers' reaper (a container of its own) needs an image from a registry; servegate does
not depend on it. Every container servegate starts carries labels naming its owner: a run id,
the owning process and the host it runs on; every staged model repository lives in a folder of
its run with the same facts in ``owner.json``. A run removes its own at exit, on SIGINT and on
SIGTERM; what a run killed outright (SIGKILL) left behind is removed by the next start on the
same host, once its owner process is gone. A live run's containers are never touched by
another: two runs at once each clean up only their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

#: the run id (agreed name: every container servegate starts carries it)
LABEL_OWNER = "org.servegate.owner"
LABEL_PID = "org.servegate.pid"
#: the owning process's start time (clock ticks since boot): tells a reused pid from its owner
LABEL_PID_START = "org.servegate.pid-start"
LABEL_HOST = "org.servegate.host"
#: the staged repository the container mounts, removed with it
LABEL_STAGED = "org.servegate.staged"

OWNER_FILE = "owner.json"


@dataclass(frozen=True)
class Owner:
    """One servegate run: this process on this host."""

    run_id: str
    pid: int
    pid_start: str
    host: str

    def labels(self) -> dict[str, str]:
        return {
            LABEL_OWNER: self.run_id,
            LABEL_PID: str(self.pid),
            LABEL_PID_START: self.pid_start,
            LABEL_HOST: self.host,
        }

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        try:
            return cls(
                run_id=labels[LABEL_OWNER],
                pid=int(labels[LABEL_PID]),
                pid_start=labels.get(LABEL_PID_START, ""),
                host=labels[LABEL_HOST],
            )
        except (KeyError, ValueError):
            return None

    def is_gone(self) -> bool:
        """Whether this owner's process has ended, as far as this host can tell.

        False for an owner on another host (a shared engine): that run is not ours to judge.
        """
        if self.host != socket.gethostname():
            return False
        started = process_start(self.pid)
        if started is None:
            return True
        # a pid reused by an unrelated process: the owner is gone all the same
        return bool(self.pid_start) and started != self.pid_start


@cache
def _owner_of(pid: int) -> Owner:
    return Owner(
        run_id=uuid.uuid4().hex[:12],
        pid=pid,
        pid_start=process_start(pid) or "",
        host=socket.gethostname(),
    )


def current_owner() -> Owner:
    """This run (one per process: a forked child is a run of its own)."""
    return _owner_of(os.getpid())


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot ("" where /proc cannot tell), or None
    when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "" if _exists(pid) else None
    # the command name may hold spaces and parentheses: fields are counted after the last ')'
    fields = stat.rsplit(")", 1)[-1].split()
    # field 22 of proc(5) is starttime; fields here start at field 3 (state)
    return fields[19] if len(fields) > 19 else ""


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- staged files -----------------------------------------------------------------------------


def run_folder(staging_root: Path, owner: Owner) -> Path:
    """The folder of ``owner``'s staged repositories under ``staging_root``, made with its
    ``owner.json`` so that a later run can tell whether its owner is gone."""
    folder = Path(staging_root) / owner.run_id
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OWNER_FILE
    if not marker.exists():
        marker.write_text(json.dumps(owner.labels(), sort_keys=True) + "\n", encoding="utf-8")
    return folder


def orphaned_run_folders(staging_root: Path) -> list[Path]:
    """Run folders under ``staging_root`` whose owner is gone (or that say no owner at all)."""
    root = Path(staging_root)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        try:
            labels = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            # killed between making the folder and writing its marker: only an old one is
            # surely nobody's
            labels = None
        owner = Owner.from_labels(labels) if isinstance(labels, dict) else None
        if owner is None:
            if _older_than(folder, seconds=3600):
                found.append(folder)
        elif owner.is_gone():
            found.append(folder)
    return found


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


# --- containers -------------------------------------------------------------------------------


def owned_containers(client: Any, run_id: str | None = None) -> list[Any]:
    """servegate's containers in the engine (running or not); only ``run_id``'s when given."""
    label = LABEL_OWNER if run_id is None else f"{LABEL_OWNER}={run_id}"
    return list(client.containers.list(all=True, filters={"label": label}))


def remove_container(container: Any) -> None:
    """Remove a container, its anonymous volumes and the staged repository it mounted."""
    staged = (container.labels or {}).get(LABEL_STAGED)
    with contextlib.suppress(Exception):  # already gone, or being removed by its owner
        container.remove(force=True, v=True)
    if staged:
        shutil.rmtree(staged, ignore_errors=True)


def remove_orphans(
    client: Any, staging_root: Path | None, log: Callable[[str], None] = print
) -> int:
    """Remove the containers and staged folders of runs whose owner process is gone; their
    number. A container of a live run, or of another host, stays."""
    removed = 0
    for container in owned_containers(client):
        owner = Owner.from_labels(container.labels or {})
        if owner is None or not owner.is_gone():
            continue
        log(
            f"removing container {container.name}, left behind by servegate run "
            f"{owner.run_id} (pid {owner.pid}, no longer running)"
        )
        remove_container(container)
        removed += 1
    if staging_root is not None:
        for folder in orphaned_run_folders(staging_root):
            shutil.rmtree(folder, ignore_errors=True)
    return removed


def remove_own(client: Any, owner: Owner, staging_root: Path | None) -> None:
    """Remove every container and staged file of ``owner`` (its exit, a signal)."""
    for container in owned_containers(client, owner.run_id):
        remove_container(container)
    if staging_root is not None:
        shutil.rmtree(Path(staging_root) / owner.run_id, ignore_errors=True)
