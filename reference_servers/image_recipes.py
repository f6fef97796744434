"""What servegate's own images are, as plain data: no Docker engine needed to read it.

A runtime image is the official image's contract made from the local env's pins: the same
``reference_servers/<runtime>/requirements.txt`` installed into a venv, the official image's
entry point and ports (HTTP 8080, gRPC 8081, metrics 8082), models read from ``/mnt/models``,
run as uid 1000. The container backend treats it like the official image it stands in for.

Every image carries labels that say what it is (``org.servegate.image``), for which device,
and a hash of everything it was made from (``org.servegate.pins``): an unchanged rebuild finds
the hash on the existing image and reuses it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from servegate.reference_servers.pip_config import CACHE_MOUNT

#: bump when the build script or the image's configuration changes: every image is remade
RECIPE_VERSION = "1"

LABEL_IMAGE = "org.servegate.image"
LABEL_DEVICE = "org.servegate.device"
LABEL_PINS = "org.servegate.pins"
LABEL_BASE = "org.servegate.base"
LABEL_REQUIREMENTS = "org.servegate.requirements"
LABEL_IMPLEMENTATION = "org.servegate.implementation"

BASE_TAG = "servegate/base:bookworm"
BASE_SUITE = "bookworm"
#: for users: Python 3.11 (the pins' interpreter) on Debian; torch's CUDA wheels bring their own
#: CUDA libraries, so a GPU image needs only the host's driver (``--gpus``), not a CUDA base
DEFAULT_BASE = "python:3.11-slim"
DEVICES = ("cpu", "cuda")
#: PyTorch's CPU wheels: PyPI's torch for Linux is the CUDA build (gigabytes of CUDA libraries)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

VENV = PurePosixPath("/opt/servegate/venv")
WORKDIR = PurePosixPath("/opt/servegate")
MODELS_DIR = PurePosixPath("/mnt/models")
#: where the build container sees the recipe's inputs (requirements, packages to copy in)
INPUTS = PurePosixPath("/servegate-build")
BUILD_SCRIPT = "build.sh"
#: the pins' wheels, kept across builds in pip's cache folder (see build_script)
WHEELHOUSE = CACHE_MOUNT / "servegate-wheels"
#: the official images run as this user; staged files are made world-readable for it
UID = 1000
PORTS = {"http": 8080, "grpc": 8081, "metrics": 8082}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    """One runtime image: its pins, what is copied in, and the official image's contract."""

    runtime: str
    requirements: Path
    #: Python packages (folders) copied into the venv's site-packages
    packages: tuple[Path, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    ports: tuple[int, ...]
    env: Mapping[str, str]
    #: which official image it stands in for, for the label and the logs
    stands_for: str
    #: distribution names whose pinned versions name the implementation
    named_pins: tuple[str, ...]

    def implementation(self) -> str:
        pins = read_pins(self.requirements)
        named = ", ".join(f"{n} {pins[n]}" for n in self.named_pins if n in pins)
        return f"servegate build of {self.stands_for} ({named})"


RECIPES: dict[str, Recipe] = {
    "mlserver": Recipe(
        runtime="mlserver",
        requirements=_HERE / "mlserver" / "requirements.txt",
        packages=(),
        # seldonio/mlserver: no entry point, ``mlserver start $MLSERVER_MODELS_DIR``
        entrypoint=(),
        cmd=("mlserver", "start", str(MODELS_DIR)),
        ports=(PORTS["http"], PORTS["grpc"], PORTS["metrics"]),
        env={"MLSERVER_MODELS_DIR": str(MODELS_DIR)},
        stands_for="seldonio/mlserver:<version>-huggingface",
        named_pins=("mlserver", "mlserver-huggingface"),
    ),
    "kserve": Recipe(
        runtime="kserve",
        requirements=_HERE / "kserve_huggingface" / "requirements.txt",
        # huggingfaceserver is not on PyPI: the image runs servegate's KServe HF server, which
        # takes huggingfaceserver's flags (one model by --model_dir/--model_name, as upstream)
        packages=(_HERE / "kserve_huggingface" / "kserve_hf_reference",),
        entrypoint=("python", "-m", "kserve_hf_reference"),
        cmd=(),
        ports=(PORTS["http"], PORTS["grpc"]),
        env={},
        stands_for="kserve/huggingfaceserver:<version>",
        named_pins=("kserve", "transformers"),
    ),
}


def runtime_tag(runtime: str, device: str) -> str:
    """The agreed name of servegate's build of ``runtime`` for ``device``."""
    return f"servegate/{runtime}:{device}"


def build_command(runtime: str, device: str) -> str:
    """The command a user runs to make :func:`runtime_tag`."""
    return f"servegate image build {runtime} --device {device}"


def read_pins(requirements: Path) -> dict[str, str]:
    """``name==version`` lines of a requirement file, names normalised as pip does."""
    pins = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9._-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _tree_digest(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())


def pins_hash(recipe: Recipe, device: str, base_id: str, torch_index: str | None) -> str:
    """A hash of everything an image is made from: pins, copied packages, base, device."""
    digest = hashlib.sha256()
    for part in (RECIPE_VERSION, recipe.runtime, device, base_id, torch_index or ""):
        digest.update(part.encode() + b"\0")
    digest.update(recipe.requirements.read_bytes())
    for package in recipe.packages:
        _tree_digest(digest, package)
    return digest.hexdigest()[:16]


def build_script(
    recipe: Recipe,
    device: str,
    torch_index: str | None,
    owner: str | None,
    env: Mapping[str, str] | None = None,
    with_cache: bool = False,
) -> str:
    """The shell script the build container runs (as root, in the base image).

    ``owner`` ("uid:gid") gets pip's cache back: the container writes it as root. ``env``
    (pip's settings, proxies) is exported by the script, so that it stays out of the image.
    ``with_cache``: pip's cache folder is mounted; the wheels are kept in it too.
    """
    venv_python = VENV / "bin" / "python"
    pip = f"{venv_python} -m pip --disable-pip-version-check"
    index = f" --extra-index-url {shlex.quote(torch_index)}" if torch_index else ""
    lines = [
        "set -eu",
        *(f"export {k}={shlex.quote(v)}" for k, v in (env or {}).items()),
        f"trap 'chown -R {owner} {CACHE_MOUNT} 2>/dev/null || true' EXIT" if owner else "",
        # a bare Debian base (servegate/base:bookworm) has no Python: the distribution's 3.11
        "if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then",
        "  if ! command -v apt-get >/dev/null; then",
        "    echo 'servegate: the base image has no python3 with venv, and no apt-get' >&2",
        "    exit 3",
        "  fi",
        "  echo 'servegate: installing python3 and python3-venv with apt-get'",
        "  export DEBIAN_FRONTEND=noninteractive",
        "  apt-get update -qq",
        "  apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates",
        "  apt-get clean",
        "  rm -rf /var/lib/apt/lists/*",
        "fi",
        "python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {",
        '  echo "servegate: the pins are for Python 3.11; the base has $(python3 -V)" >&2',
        "  exit 3",
        "}",
        f"python3 -m venv {VENV}",
        # as the local envs are made (reference_servers/envs.py)
        f"{pip} install --upgrade --quiet pip",
    ]
    requirements = f"-r {INPUTS / 'requirements.txt'}"
    torch = read_pins(recipe.requirements).get("torch")
    if device == "cuda" and torch:
        # a CPU wheel among the configured sources (a +cpu local version) would satisfy
        # torch==X too; the GPU image must get the CUDA build
        lines.append(f"echo 'torch!={torch}+cpu' > /tmp/servegate-cuda.txt")
        requirements += " -r /tmp/servegate-cuda.txt"
    install = f"{pip} install --progress-bar off{index} {requirements}"
    if with_cache:
        # pip's HTTP cache keeps only responses a proxy lets be cached; a folder of the wheels
        # themselves does not depend on that. The download resolves the pins against the
        # indexes (files already there are not fetched again); the install then takes the
        # wheels from that folder alone, where the newest of each is what the download chose.
        # An sdist whose build needs packages from an index installs from the indexes instead.
        lines += [
            f"mkdir -p {WHEELHOUSE}",
            f"{pip} download --progress-bar off{index} -d {WHEELHOUSE} {requirements}",
            f'PIP_NO_INDEX=1 PIP_FIND_LINKS="{WHEELHOUSE} ${{PIP_FIND_LINKS:-}}" {install} || {{',
            "  echo 'servegate: the kept wheels did not suffice; installing from the indexes'",
            f"  {install}",
            "}",
        ]
    else:
        lines.append(install)
    if recipe.packages:
        site = f'"$({venv_python} -c "import sysconfig; print(sysconfig.get_path(\'purelib\'))")"'
        for package in recipe.packages:
            lines.append(f"cp -r {INPUTS / package.name} {site}/")
        lines.append(f"find {site} -name __pycache__ -prune -exec rm -rf {{}} +")
    lines += [
        f"getent passwd {UID} >/dev/null || useradd --uid {UID} --create-home --shell /bin/sh "
        "servegate 2>/dev/null || echo 'servegate: no useradd; uid 1000 runs without a home'",
        f"mkdir -p {MODELS_DIR} {WORKDIR}",
        f"chown {UID} {WORKDIR}",
        "echo 'servegate: image contents ready'",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def contract_dockerfile(
    installed: str, recipe: Recipe, labels: Mapping[str, str], base_env: Sequence[str]
) -> str:
    """A Dockerfile of metadata only: the installed image with the official contract."""
    base_path = next((e.split("=", 1)[1] for e in base_env if e.startswith("PATH=")), None)
    changes = [
        f"FROM {installed}",
        f"ENV PATH={VENV / 'bin'}:{base_path or DEFAULT_PATH}",
        f"ENV VIRTUAL_ENV={VENV}",
        "ENV PYTHONUNBUFFERED=1",
        *(f"ENV {k}={v}" for k, v in recipe.env.items()),
        f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}",
        f"CMD {json.dumps(list(recipe.cmd))}",
        "EXPOSE " + " ".join(str(p) for p in recipe.ports),
        f"WORKDIR {WORKDIR}",
        f"USER {UID}",
    ]
    changes += [f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()]
    return "\n".join(changes) + "\n"


def runtime_labels(
    recipe: Recipe, device: str, pins: str, base: str, base_id: str
) -> dict[str, str]:
    return {
        LABEL_IMAGE: recipe.runtime,
        LABEL_DEVICE: device,
        LABEL_PINS: pins,
        LABEL_BASE: f"{base}@{base_id}",
        LABEL_REQUIREMENTS: f"reference_servers/{recipe.requirements.parent.name}/requirements.txt",
        LABEL_IMPLEMENTATION: recipe.implementation(),
    }


def base_hash(suite: str, mirror: str | None) -> str:
    digest = hashlib.sha256(f"{RECIPE_VERSION}\0{suite}\0minbase\0{mirror or ''}".encode())
    return digest.hexdigest()[:16]
