"""The Triton reference server (PyTriton): its env made from Debian's python3.11, the command
prepare() builds, the real server it starts and stops with every process it spawned, a
tritonclient round trip, and the conformance suite through the plugin on discovery alone."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from servegate.errors import EnvironmentSetupError
from servegate.fixtures.catalog import FixtureSet
from servegate.reference_servers import envs
from servegate.reference_servers.base import Ports, ServerSpec
from servegate.reference_servers.registry import get_runtime
from servegate.reference_servers.triton import runtime as tr
from tests.conftest import STATE_DIR, project_python

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = ROOT / "conformance"
PORTS = Ports(http=18100, grpc=18101, metrics=18102)
FAKE_PYTHON = Path("/nonexistent/bin/python")


def no_fixtures(root: Path) -> FixtureSet:
    return FixtureSet(root=root, key="test", models={})


def prepare(tmp_path: Path, **spec: object):
    return tr.RUNTIME.prepare(
        ServerSpec(runtime="triton", **spec),  # type: ignore[arg-type]
        no_fixtures(tmp_path),
        FAKE_PYTHON,
        PORTS,
        tmp_path / "work",
    )


# ------------------------------------------------------------------------------ prepare()


def test_registry_names_triton_with_its_base_interpreter() -> None:
    runtime = get_runtime("triton")
    assert runtime is tr.RUNTIME
    assert runtime.requirements_file().read_text().count("nvidia-pytriton==0.7.0") == 1
    assert tr.RUNTIME.base_interpreter.prefix == "/usr"


def test_argv_runs_the_script_on_loopback_with_the_three_ports(tmp_path: Path) -> None:
    launch = prepare(tmp_path)
    argv = list(launch.argv)
    assert argv[:2] == [str(FAKE_PYTHON), str(tr.SERVER_SCRIPT)]
    flags = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert flags["--http-port"] == "18100" and flags["--grpc-port"] == "18101"
    assert flags["--metrics-port"] == "18102" and flags["--address"] == "127.0.0.1"
    # the three bound models are the declared ones; only numeric-echo has a task
    assert dict(launch.models) == {
        "numeric-echo": "custom-numeric",
        "identity": "",
        "bytes-echo": "",
    }
    # discovery alone: nothing declared by hand
    assert launch.declared_features == frozenset()
    assert launch.describe is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"options": {"workers": 2}}, "takes no options"),
        ({"models": ("tiny-fill-mask",)}, "serves only its own models"),
        ({"device": "cuda"}, "CPU-only"),
    ],
)
def test_unservable_specs_are_refused_with_one_line(
    tmp_path: Path, spec: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(tmp_path, **spec)


# ------------------------------------------------------------------------ base interpreter


def test_absent_base_interpreter_is_one_line_naming_what_to_install() -> None:
    base = envs.BaseInterpreter(
        candidates=("/nonexistent/python3.11", "servegate-no-such-python"),
        prefix="/usr",
        hint="Debian's python3.11 with venv (apt-get install python3.11-venv)",
    )
    with pytest.raises(EnvironmentSetupError) as info:
        envs.resolve_base("triton", base)
    message = str(info.value)
    assert message.startswith("triton needs Debian's python3.11")
    assert "apt-get install python3.11-venv" in message and "\n" not in message


def test_an_interpreter_of_another_build_is_not_taken() -> None:
    # the suite's own venv interpreter reports its venv as sys.prefix, never "/usr"
    base = envs.BaseInterpreter(candidates=(sys.executable,), prefix="/usr", hint="X")
    with pytest.raises(EnvironmentSetupError, match=r"needs X; tried .*prefix"):
        envs.resolve_base("triton", base)


def test_env_hash_follows_the_base_interpreter_version(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("x==1\n")
    a = envs.ResolvedInterpreter(Path("/usr/bin/python3.11"), "3.11.2 (main) [GCC 12.2.0]")
    b = envs.ResolvedInterpreter(Path("/usr/bin/python3.11"), "3.11.9 (main) [GCC 12.2.0]")
    assert envs.env_dir(tmp_path, "t", req, a) != envs.env_dir(tmp_path, "t", req, b)
    assert envs.env_dir(tmp_path, "t", req, a) == envs.env_dir(tmp_path, "t", req, a)


# ------------------------------------------------------------------------- the real server

DEBIAN_PYTHON = Path("/usr/bin/python3.11")
needs_debian_python = pytest.mark.skipif(
    not DEBIAN_PYTHON.exists(), reason="Debian's python3.11 (apt-get install python3.11-venv)"
)


def group_processes(pgid: int) -> list[str]:
    """Every live process of the process group, as "pid: command line"."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        # field 5 of /proc/PID/stat is the process group (after the ")" closing the name)
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{pid}: {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def triton_python() -> Path:
    """The project's Triton env, created on first use from Debian's python3.11."""
    return project_python("triton")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, triton_python: Path) -> Iterator:
    from servegate.reference_servers.local import start_local

    state = tmp_path_factory.mktemp("triton")
    started = time.monotonic()
    running = start_local(
        tr.RUNTIME,
        ServerSpec(runtime="triton", ready_timeout=240),
        no_fixtures(state),
        triton_python,
        state_dir=state,
        logs_dir=state / "logs",
    )
    print(f"triton start to ready: {time.monotonic() - started:.1f} s")
    yield running
    running.stop()


@needs_debian_python
@pytest.mark.slow
def test_env_is_made_from_debian_python(triton_python: Path) -> None:
    cfg = (triton_python.parent.parent / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg, cfg
    assert "version = 3.11" in cfg or "version_info = 3.11" in cfg, cfg


@needs_debian_python
@pytest.mark.slow
def test_server_says_what_it_is_and_serves_the_three_models(server) -> None:
    import httpx

    assert server.target.implementation.startswith("Triton Inference Server (triton 2.51.0, ")
    assert "nvidia-pytriton 0.7.0" in server.target.implementation
    base = server.target.http_url
    meta = httpx.get(f"{base}/v2").json()
    assert meta["name"] == "triton" and "binary_tensor_data" in meta["extensions"]
    for name in ("numeric-echo", "identity", "bytes-echo"):
        assert httpx.get(f"{base}/v2/models/{name}/ready").status_code == 200
    numeric = httpx.get(f"{base}/v2/models/numeric-echo").json()
    assert {i["name"] for i in numeric["inputs"]} >= {"bool", "int32", "fp16", "bytes"}
    assert "int32_sum" in {o["name"] for o in numeric["outputs"]}
    # PyTriton keeps the repository API behind its access token
    index = httpx.post(f"{base}/v2/repository/index")
    assert index.status_code in (400, 403) and "triton-access-token" in index.text


@needs_debian_python
@pytest.mark.slow
def test_tritonclient_round_trip_over_http_and_grpc(server) -> None:
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    host = server.target.http_url.removeprefix("http://")
    values = np.array([1.5, -2.25, 3.0e38, 0.0], dtype=np.float32)
    texts = np.array([b"caf\xc3\xa9", b"", b"abc"], dtype=np.object_)
    for module, url in ((triton_http, host), (triton_grpc, server.target.grpc_address)):
        client = module.InferenceServerClient(url=url)
        try:
            numeric = module.InferInput("fp32", [4], "FP32")
            numeric.set_data_from_numpy(values)
            result = client.infer("numeric-echo", [numeric])
            assert result.as_numpy("fp32").tolist() == values.tolist()
            assert result.as_numpy("fp32_sum").tolist() == [float(np.sum(values.astype(float)))]
            ident = module.InferInput("input", [2, 4], "FP32")
            ident.set_data_from_numpy(np.stack([values, values]))
            out = client.infer("identity", [ident]).as_numpy("output")
            assert out.shape == (2, 4) and out[1].tolist() == values.tolist()
            text = module.InferInput("text", [3], "BYTES")
            text.set_data_from_numpy(texts)
            reply = client.infer("bytes-echo", [text])
            assert reply.as_numpy("text").tolist() == texts.tolist()
            assert reply.as_numpy("length").tolist() == [5, 0, 3]
        finally:
            client.close()


@needs_debian_python
@pytest.mark.slow
def test_stop_leaves_no_process_of_the_group(tmp_path: Path, triton_python: Path) -> None:
    """tritonserver and one Python-backend stub per model run under the launcher: stop() must
    take every one of them, not only the process it started."""
    import tempfile

    from servegate.reference_servers.local import start_local

    workspaces = set(Path(tempfile.gettempdir()).glob("servegate-triton-*"))
    running = start_local(
        tr.RUNTIME,
        ServerSpec(runtime="triton", ready_timeout=240),
        no_fixtures(tmp_path),
        triton_python,
        state_dir=tmp_path,
        logs_dir=tmp_path / "logs",
        name="triton-stop",
    )
    pgid = running.proc.pid
    try:
        spawned = group_processes(pgid)
        assert any("tritonserver" in p for p in spawned), spawned
        assert sum("triton_python_backend_stub" in p for p in spawned) >= 3, spawned
    finally:
        started = time.monotonic()
        running.stop()
        print(f"triton stop: {time.monotonic() - started:.1f} s")
    # the PyTriton workspace (sockets, model store) goes with it
    assert set(Path(tempfile.gettempdir()).glob("servegate-triton-*")) <= workspaces
    deadline = time.monotonic() + 10
    while group_processes(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_processes(pgid) == []
    # signal 0 only asks whether the group still exists
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


@needs_debian_python
@pytest.mark.slow
def test_conformance_suite_on_discovery_alone(pytester: pytest.Pytester) -> None:
    """A short slice of the suite through the plugin: discovery finds V2 REST, gRPC and the
    binary extension from the server itself (nothing declared), and these checks pass."""
    reports = pytester.path / "reports"
    empty = pytester.path / "no-deviations.yaml"
    empty.write_text("deviations: []\n")
    result = pytester.runpytest_subprocess(
        str(CONFORMANCE / "test_health.py"),
        str(CONFORMANCE / "test_v2_binary.py"),
        str(CONFORMANCE / "test_v2_grpc.py"),
        "-k",
        "live or ready or metadata or binary or echoes_request_id or limit",
        "-p",
        "no:cacheprovider",
        "--servers=triton",
        f"--state-dir={STATE_DIR}",
        f"--reports-dir={reports}",
        f"--deviations={empty}",
        "-rfEs",
        timeout=900,
    )
    assert result.ret == 0, result.stdout.str()[-4000:]
    report = json.loads((reports / "conformance-triton.json").read_text())
    target = report["implementation"]
    assert target["description"].startswith("Triton Inference Server (triton 2.51.0")
    assert {"v2-rest", "v2-grpc", "v2-binary-tensor"} <= set(target["discovered_features"])
    assert report["counts"]["failed"] == 0 and report["counts"]["passed"] >= 10
