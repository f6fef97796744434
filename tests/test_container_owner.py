"""Who owns a container or a staged folder, and when the owner counts as gone (no engine)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from servegate.reference_servers.container_owner import (
    OWNER_FILE,
    Owner,
    current_owner,
    orphaned_run_folders,
    process_start,
    run_folder,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_this_run_is_alive_and_its_labels_name_it():
    owner = current_owner()
    assert owner.pid == os.getpid()
    assert owner.host == socket.gethostname()
    assert not owner.is_gone()
    assert Owner.from_labels(owner.labels()) == owner


def test_an_owner_whose_process_ended_is_gone():
    assert replace(current_owner(), pid=_dead_pid()).is_gone()


def test_a_reused_pid_does_not_keep_a_dead_owner_alive():
    # the pid exists (it is ours) but started at another time than the owner's process did
    other_start = str(int(process_start(os.getpid()) or "0") + 1)
    assert replace(current_owner(), pid_start=other_start).is_gone()


def test_an_owner_on_another_host_is_never_judged_gone():
    assert not replace(current_owner(), pid=_dead_pid(), host="elsewhere.invalid").is_gone()


def test_labels_without_an_owner_are_no_owner():
    assert Owner.from_labels({"org.servegate.owner": "x"}) is None


def test_only_folders_of_gone_runs_are_orphans(tmp_path: Path):
    live = run_folder(tmp_path, current_owner())
    dead_owner = replace(current_owner(), run_id="deadbeef0000", pid=_dead_pid())
    dead = run_folder(tmp_path, dead_owner)
    assert json.loads((dead / OWNER_FILE).read_text())["org.servegate.pid"] == str(dead_owner.pid)
    # a folder whose marker was never written (killed in between) is left until it is old
    (tmp_path / "fresh-without-marker").mkdir()
    old = tmp_path / "old-without-marker"
    old.mkdir()
    os.utime(old, (0, 0))
    assert orphaned_run_folders(tmp_path) == sorted([dead, old])
    assert live.is_dir()
