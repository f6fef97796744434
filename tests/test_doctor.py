"""``servegate doctor``: every backend and device gets a line with its reason; --need sets the
exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from servegate.entry.cli import main
from servegate.entry.commands import doctor


def _checks(engine=None, engine_gpu=None, tools=None, cluster=(None, ""), gpu=(None, "GPU 0")):
    return doctor.run_checks(
        Path("/nonexistent"),
        engine=lambda: engine,
        engine_gpu=lambda: engine_gpu,
        kind_tools=lambda: tools,
        kind_cluster=lambda: cluster,
        gpu=lambda: gpu,
    )


def test_everything_available():
    checks = _checks()
    assert all(c.ok for c in checks.values())
    assert set(checks) == {
        "gpu", "local", "local:cuda", "testcontainers", "testcontainers:cuda", "kind",
        "kind:cuda",
    }  # fmt: skip


def test_no_engine_rules_out_containers_and_kind_with_the_reason():
    checks = _checks(engine="no Docker engine answers at unix:///x.sock (no such socket)")
    assert checks["local"].ok
    for key in ("testcontainers", "testcontainers:cuda", "kind", "kind:cuda"):
        assert not checks[key].ok
        assert "no Docker engine answers at unix:///x.sock" in checks[key].problem
    assert checks["testcontainers"].line().startswith("testcontainers")
    assert " no " in checks["testcontainers"].line()


def test_missing_kind_tools_and_gpu_are_named():
    checks = _checks(tools="kind not on PATH", gpu=("nvidia-smi not on PATH", ""))
    assert checks["kind"].problem == "kind not on PATH"
    assert checks["testcontainers"].ok
    assert checks["local:cuda"].problem == "nvidia-smi not on PATH"
    assert not checks["kind:cuda"].ok


def test_gpu_engine_without_nvidia_runtime_rules_out_gpu_containers_only():
    checks = _checks(engine_gpu="the Docker engine has no nvidia runtime")
    assert checks["testcontainers"].ok
    assert "no nvidia runtime" in checks["testcontainers:cuda"].problem


@pytest.fixture
def no_engine(monkeypatch):
    real = doctor.run_checks

    def fake(state_dir, **_):
        return real(
            state_dir,
            engine=lambda: "no Docker engine answers at unix:///x.sock (no such socket)",
            engine_gpu=lambda: None,
            kind_tools=lambda: "kind not on PATH",
            gpu=lambda: ("nvidia-smi not on PATH", ""),
        )

    monkeypatch.setattr(doctor, "run_checks", fake)


def test_need_sets_the_exit_status(no_engine, capsys):
    assert main(["doctor", "--need", "local"]) == 0
    assert main(["doctor", "--need", "testcontainers"]) == 1
    out = capsys.readouterr().out
    assert "servegate doctor: cannot run testcontainers: needs a Docker engine" in out
    assert main(["doctor", "--need", "local:cuda"]) == 1
    assert main(["doctor", "--need", "docker"]) == 2


def test_doctor_runs_on_this_machine(capsys):
    """The real probes: whatever this machine has, one line per check and status 0."""
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"local", "testcontainers", "kind", "local:cuda"} <= set(names)
