"""``servegate image build``: the host's pip sources carried into the build, the pins hash, the
build script and the official contract (no engine needed); the images themselves, their one-line
errors and the backend's image choice with the engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servegate.errors import ServegateError
from servegate.reference_servers import image_recipes as recipes
from servegate.reference_servers.base import ServerSpec
from servegate.reference_servers.containers import docker_engine_problem, resolve_image
from servegate.reference_servers.pip_config import (
    CACHE_MOUNT,
    HOST_ROOT,
    PipSources,
    container_mounts,
    parse_config_list,
)

# --- the host's pip configuration -------------------------------------------------------------


def test_pip_config_list_is_read_with_the_environment_winning():
    text = "\n".join(
        [
            "global.cert='/etc/ssl/certs/ca-certificates.crt'",
            "global.find-links='/opt/wheels'",
            "install.constraint='/etc/c.txt'",
            "global.index-url='https://corp.example/simple'",
            ":env:.index-url='https://mirror.example/simple'",
            "global.extra-index-url='file:///opt/pypi/simple file:///opt/more/simple'",
            "global.no-cache-dir='true'",
            "not a setting",
        ]
    )
    settings = parse_config_list(text)
    assert settings["index-url"] == ("https://mirror.example/simple",)
    assert settings["extra-index-url"] == ("file:///opt/pypi/simple", "file:///opt/more/simple")
    assert settings["constraint"] == ("/etc/c.txt",)
    assert settings["find-links"] == ("/opt/wheels",)
    # only package sources travel into the build; the cache is servegate's own mount
    assert "no-cache-dir" not in settings


def test_local_pip_sources_are_mounted_read_only_at_paths_of_their_own(tmp_path):
    cert = tmp_path / "etc" / "corp-ca.pem"
    cert.parent.mkdir()
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    index = tmp_path / "pypi" / "simple"
    index.mkdir(parents=True)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=3\n")
    sources = PipSources(
        {
            "cert": (str(cert),),
            "extra-index-url": (f"file://{index}", "https://corp.example/simple"),
            "find-links": (str(wheels),),
            "constraint": (str(constraints),),
            "trusted-host": ("corp.example",),
        },
        proxies={"HTTPS_PROXY": "http://proxy.example:3128"},
    )
    mounts = container_mounts(sources)
    inside = {host: Path(container) for host, container in mounts.volumes.items()}
    # every local source under HOST_ROOT: the CA bundle never over the image's own bundle
    assert all(str(c).startswith(str(HOST_ROOT) + "/") for c in inside.values())
    assert mounts.env["PIP_CERT"] == str(HOST_ROOT) + str(cert)
    # a PEP 503 index: its parent is mounted, for the files its pages link to
    assert str(index.parent) in mounts.volumes
    assert mounts.env["PIP_EXTRA_INDEX_URL"] == (
        f"file://{HOST_ROOT}{index} https://corp.example/simple"
    )
    assert mounts.env["PIP_FIND_LINKS"] == f"{HOST_ROOT}{wheels}"
    assert mounts.env["PIP_CONSTRAINT"] == f"{HOST_ROOT}{constraints}"
    assert mounts.env["PIP_TRUSTED_HOST"] == "corp.example"
    assert mounts.env["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert str(CACHE_MOUNT) not in mounts.env.values()


def test_overrides_replace_the_hosts_settings_and_a_missing_path_is_named(tmp_path):
    host = PipSources({"find-links": ("/host/wheels",), "index-url": ("https://a/simple",)})
    merged = host.merged({"find-links": [str(tmp_path)], "index-url": []})
    assert merged.settings["find-links"] == (str(tmp_path),)
    assert merged.settings["index-url"] == ("https://a/simple",)
    with pytest.raises(ValueError, match="/host/wheels, which does not exist"):
        container_mounts(host)


# --- the recipe -------------------------------------------------------------------------------


def _recipe(tmp_path: Path, runtime: str = "mlserver") -> recipes.Recipe:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("mlserver==1.7.1\ntorch==2.13.0\n")
    package = tmp_path / "pkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("X = 1\n")
    return recipes.Recipe(
        runtime=runtime,
        requirements=requirements,
        packages=(package,),
        entrypoint=("python", "-m", "pkg"),
        cmd=(),
        ports=(8080, 8081),
        env={},
        stands_for="some/official:<version>",
        named_pins=("mlserver",),
    )


def test_pins_hash_changes_with_every_input_and_only_then(tmp_path):
    recipe = _recipe(tmp_path)
    first = recipes.pins_hash(recipe, "cpu", "sha256:base1", None)
    assert recipes.pins_hash(recipe, "cpu", "sha256:base1", None) == first
    assert recipes.pins_hash(recipe, "cuda", "sha256:base1", None) != first
    assert recipes.pins_hash(recipe, "cpu", "sha256:base2", None) != first
    assert recipes.pins_hash(recipe, "cpu", "sha256:base1", "https://x/cpu") != first
    (tmp_path / "pkg" / "__init__.py").write_text("X = 2\n")
    second = recipes.pins_hash(recipe, "cpu", "sha256:base1", None)
    assert second != first
    recipe.requirements.write_text("mlserver==1.7.2\ntorch==2.13.0\n")
    assert recipes.pins_hash(recipe, "cpu", "sha256:base1", None) != second


def test_build_script_installs_the_pins_into_a_venv_and_python_where_missing(tmp_path):
    recipe = _recipe(tmp_path)
    script = recipes.build_script(recipe, "cpu", "https://download.example/cpu", owner="1001:1001")
    assert "apt-get install -y -qq --no-install-recommends python3 python3-venv" in script
    assert f"python3 -m venv {recipes.VENV}" in script
    assert (
        f"--extra-index-url https://download.example/cpu -r {recipes.INPUTS}/requirements.txt"
        in (script)
    )
    assert f"cp -r {recipes.INPUTS}/pkg " in script
    assert f"chown -R 1001:1001 {CACHE_MOUNT}" in script
    assert "torch!=" not in script
    # without a cache folder nothing is kept; with one, the wheels themselves are
    assert "pip download" not in script
    cached = recipes.build_script(recipe, "cpu", None, owner=None, with_cache=True)
    requirements = f"-r {recipes.INPUTS}/requirements.txt"
    download = cached.index(f"download --progress-bar off -d {recipes.WHEELHOUSE} {requirements}")
    from_kept = cached.index(f'PIP_NO_INDEX=1 PIP_FIND_LINKS="{recipes.WHEELHOUSE} ')
    assert from_kept > download
    assert cached.index(f"install --progress-bar off {requirements}", from_kept) > from_kept
    # pip's settings are exported by the script: a container's environment would stay in the image
    env = {"PIP_FIND_LINKS": "/servegate-host/opt/my wheels", "HTTPS_PROXY": "http://u:p@proxy"}
    exported = recipes.build_script(recipe, "cpu", None, owner=None, env=env)
    assert "export PIP_FIND_LINKS='/servegate-host/opt/my wheels'" in exported
    assert "export HTTPS_PROXY=http://u:p@proxy" in exported
    gpu = recipes.build_script(recipe, "cuda", None, owner=None)
    # a CPU wheel among the host's sources must not satisfy torch==X in the GPU image
    assert "echo 'torch!=2.13.0+cpu' > /tmp/servegate-cuda.txt" in gpu
    assert "-r /tmp/servegate-cuda.txt" in gpu
    assert "chown" not in gpu.split("mkdir")[0]


def test_build_script_runs_in_a_shell(tmp_path):
    script = recipes.build_script(_recipe(tmp_path), "cpu", None, owner=None)
    checked = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_committed_configuration_is_the_official_contract():
    labels = {recipes.LABEL_IMAGE: "mlserver", recipes.LABEL_PINS: "abc"}
    ml = recipes.contract_dockerfile(
        "sha256:installed", recipes.RECIPES["mlserver"], labels, ["PATH=/usr/local/bin:/bin"]
    ).splitlines()
    assert ml[0] == "FROM sha256:installed"
    assert f"ENV PATH={recipes.VENV}/bin:/usr/local/bin:/bin" in ml
    assert 'CMD ["mlserver", "start", "/mnt/models"]' in ml
    assert "ENTRYPOINT []" in ml
    assert "EXPOSE 8080 8081 8082" in ml
    assert "USER 1000" in ml
    assert 'LABEL org.servegate.pins="abc"' in ml
    ks = recipes.contract_dockerfile("x", recipes.RECIPES["kserve"], labels, []).splitlines()
    assert 'ENTRYPOINT ["python", "-m", "kserve_hf_reference"]' in ks
    assert f"ENV PATH={recipes.VENV}/bin:{recipes.DEFAULT_PATH}" in ks
    assert "EXPOSE 8080 8081" in ks


def test_implementation_label_names_the_pinned_versions():
    assert recipes.RECIPES["mlserver"].implementation() == (
        "servegate build of seldonio/mlserver:<version>-huggingface "
        "(mlserver 1.7.1, mlserver-huggingface 1.7.1)"
    )
    assert "kserve 0.14.1" in recipes.RECIPES["kserve"].implementation()


# --- one line for every failure ---------------------------------------------------------------

NO_ENGINE = "unix:///nonexistent/servegate-test-docker.sock"


def _servegate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servegate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("what", ["base", "mlserver"])
def test_without_an_engine_image_build_says_so_in_one_line(what, tmp_path):
    if what == "base" and os.geteuid() != 0:
        pytest.skip("base checks root first")
    result = _servegate(
        "--reports-dir", str(tmp_path), "image", "build", what, env={"DOCKER_HOST": NO_ENGINE}
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "servegate: error: servegate image build needs a Docker engine: no Docker engine "
        f"answers at {NO_ENGINE} (no such socket: is the engine running?)"
    ]


@pytest.mark.parametrize(
    ("patch", "line"),
    [
        (
            "os.geteuid = lambda: 1000",
            "servegate image build base runs debootstrap, which needs root",
        ),
        (
            "os.geteuid = lambda: 0; "
            "import servegate.reference_servers.image_build as b; "
            "b.find_debootstrap = lambda: None",
            "servegate image build base needs debootstrap (apt-get install debootstrap)",
        ),
    ],
    ids=["not-root", "no-debootstrap"],
)
def test_base_image_says_what_is_missing_in_one_line(tmp_path, patch, line):
    main = "from servegate.entry.cli import main; sys.exit(main(sys.argv[1:]))"
    code = f"import os, sys; {patch}; {main}"
    result = subprocess.run(
        [sys.executable, "-c", code, "--reports-dir", str(tmp_path), "image", "build", "base"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"servegate: error: {line}"


# --- with the engine --------------------------------------------------------------------------


@pytest.fixture
def engine() -> None:
    """A Docker engine: skipped without one, except in CI (CI=true), where that is a failure."""
    problem = docker_engine_problem(timeout=2)
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and no Docker engine: {problem}", pytrace=False)
    pytest.skip(f"needs a Docker engine: {problem}")


needs_engine = pytest.mark.usefixtures("engine")


@needs_engine
def test_missing_base_image_is_one_line_naming_it_and_the_way_out(tmp_path):
    result = _servegate(
        "--reports-dir", str(tmp_path), "image", "build", "mlserver",
        "--base", "servegate-test/no-such-base:0", "--no-host-pip-config",
        "--torch-index", "",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "servegate: error: base image servegate-test/no-such-base:0 is not present and cannot "
        "be pulled ("
    )
    assert "`servegate image build base`" in line
    assert f"--base {recipes.BASE_TAG}" in line


@needs_engine
def test_absent_unpullable_image_names_itself_why_and_the_build_command(capsys):
    spec = ServerSpec("mlserver", options={"image": "servegate-test/no-such-image:0"})
    with pytest.raises(ServegateError) as err:
        resolve_image("mlserver", spec, log=print)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "image servegate-test/no-such-image:0 is not present and cannot be pulled ("
    )
    assert "`servegate image build mlserver --device cpu` builds servegate/mlserver:cpu" in message


def _built(tag: str) -> dict | None:
    import docker

    client = docker.from_env()
    try:
        return client.images.get(tag).attrs
    except docker.errors.ImageNotFound:
        return None
    finally:
        client.close()


@needs_engine
@pytest.mark.parametrize("runtime", ["mlserver", "kserve"])
def test_built_image_keeps_the_official_contract(runtime):
    tag = recipes.runtime_tag(runtime, "cpu")
    attrs = _built(tag)
    if attrs is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tag} is not built: CI runs `{recipes.build_command(runtime, 'cpu')}`")
        pytest.skip(f"{tag} is not built (`{recipes.build_command(runtime, 'cpu')}`)")
    config = attrs["Config"]
    recipe = recipes.RECIPES[runtime]
    assert (config.get("Entrypoint") or []) == list(recipe.entrypoint)
    assert (config.get("Cmd") or []) == list(recipe.cmd)
    assert set(config["ExposedPorts"]) == {f"{p}/tcp" for p in recipe.ports}
    assert config["User"] == "1000"
    assert config["Labels"][recipes.LABEL_IMAGE] == runtime
    assert config["Labels"][recipes.LABEL_IMPLEMENTATION] == recipe.implementation()
    # the running image: uid 1000, the pins installed, the server's module importable
    module = "mlserver_huggingface" if runtime == "mlserver" else "kserve_hf_reference"
    probe = (
        "import importlib.metadata as m, json, os; import " + module + "; "
        "print(json.dumps([os.getuid(), {d.metadata['Name'].lower(): d.version "
        "for d in m.distributions()}]))"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", "--label", "org.servegate.owner=test-images",
         "--entrypoint", "python", tag, "-c", probe],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    uid, found = json.loads(out.stdout.strip().splitlines()[-1])
    assert uid == 1000
    installed = {re.sub(r"[-_.]+", "-", name): version for name, version in found.items()}
    pins = recipes.read_pins(recipe.requirements)
    wrong = {
        name: (version, installed.get(name))
        for name, version in pins.items()
        if (installed.get(name) or "").split("+")[0] != version
    }
    assert wrong == {}


# --- end to end: `servegate serve <runtime> --backend testcontainers`, as a new user runs it ----

#: a short conformance run against the served target: health and metadata of every model
SHORT_RUN = ("conformance/test_health.py", "conformance/test_v2_metadata.py")


def _read_until(proc: subprocess.Popen, marker: str, seen: list[str]) -> bool:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line.rstrip())
        if marker in line:
            return True
    return False


@pytest.mark.slow
@needs_engine
@pytest.mark.parametrize("runtime", ["mlserver", "kserve"])
def test_serve_with_containers_prints_urls_and_a_short_conformance_run_passes(tmp_path, runtime):
    import docker

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "servegate", "--state-dir", str(root / ".servegate"),
         "--reports-dir", str(tmp_path / "reports"), "serve", runtime,
         "--backend", "testcontainers", "--ready-timeout", "900"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root,
    )  # fmt: skip
    seen: list[str] = []
    client = docker.from_env()
    try:
        ready = _read_until(proc, "Ctrl-C stops it.", seen)
        assert ready, "\n".join(seen[-40:])
        urls = dict(line.split(": ", 1) for line in seen if line.startswith(("HTTP: ", "gRPC: ")))
        http, grpc = urls["HTTP"], urls["gRPC"]
        assert http.startswith("http://127.0.0.1:") and grpc.startswith("127.0.0.1:")
        (command,) = [line.strip() for line in seen if line.strip().startswith("pytest ")]
        # the container behind the printed port, to check its removal afterwards
        port = http.rsplit(":", 1)[1]
        (container,) = [
            c
            for c in client.containers.list()
            if any(b.get("HostPort") == port for bs in (c.ports or {}).values() for b in (bs or []))
        ]
        args = command.split()[1:]
        args = [SHORT_RUN[0], SHORT_RUN[1], *args[1:]]
        result = subprocess.run(
            [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "-q",
             f"--reports-dir={tmp_path / 'conformance'}"],
            capture_output=True, text=True, timeout=900, cwd=root,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert " passed" in result.stdout
        assert " failed" not in result.stdout
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container.id)
    client.close()
