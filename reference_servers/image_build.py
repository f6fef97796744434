"""``servegate image build``: servegate's base and runtime images, made with a Docker engine.

No BuildKit and no registry are assumed. The base image is a Debian minbase root filesystem
from debootstrap, imported as an image. A runtime image is made by running a container from
its base with the inputs mounted read-only (the pinned requirements, the host's pip sources,
see pip_config.py) and the host's pip cache mounted read-write, installing the pins into a
venv, and committing the container with the official image's entry point, ports and labels
(image_recipes.py). An image whose ``org.servegate.pins`` label matches what would be built
is reused as it is.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError
from servegate.reference_servers import image_recipes as recipes
from servegate.reference_servers import pip_config

LOG_TAIL_LINES = 30


class ImageBuildError(ServegateError):
    """An image that could not be built; the message is one line (plus a log tail)."""


@dataclass(frozen=True)
class BuildResult:
    tag: str
    image_id: str
    size_bytes: int
    seconds: float
    reused: bool

    def line(self) -> str:
        size = f"{self.size_bytes / 1e9:.2f} GB"
        if self.reused:
            return f"{self.tag} is up to date ({size}, checked in {self.seconds:.1f} s)"
        return f"{self.tag} built in {self.seconds:.0f} s ({size})"


def docker_client() -> Any:
    """A docker-py client of the engine; ImageBuildError in one line when none answers."""
    from servegate.reference_servers.containers import docker_engine_problem

    problem = docker_engine_problem()
    if problem:
        raise ImageBuildError(f"servegate image build needs a Docker engine: {problem}")
    import docker

    return docker.from_env(timeout=600)


def local_image(client: Any, name: str) -> Any | None:
    """The image ``name`` if this engine has it, else None."""
    import docker.errors

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def pull_problem(client: Any, name: str) -> str | None:
    """Pull ``name``; None when it arrived, else why not (one line)."""
    repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "")
    try:
        client.images.pull(repository, tag=tag or "latest")
    except Exception as exc:  # docker-py raises APIError, NotFound, transport errors alike
        return _engine_reason(exc)
    return None


def _engine_reason(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def ensure_present(client: Any, name: str, *, what: str, hint: str) -> Any:
    """The image ``name``, pulled when absent; ImageBuildError naming it, why, and ``hint``."""
    image = local_image(client, name)
    if image is not None:
        return image
    problem = pull_problem(client, name)
    image = local_image(client, name) if problem is None else None
    if image is None:
        raise ImageBuildError(
            f"{what} {name} is not present and cannot be pulled ({problem or 'not found'}); {hint}"
        )
    return image


# --- the base image -------------------------------------------------------------------------


def build_base(
    *,
    tag: str = recipes.BASE_TAG,
    suite: str = recipes.BASE_SUITE,
    mirror: str | None = None,
    work_dir: Path,
    log_path: Path,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """A Debian minbase image from debootstrap, for machines with no registry."""
    started = time.monotonic()
    if os.geteuid() != 0:
        raise ImageBuildError("servegate image build base runs debootstrap, which needs root")
    debootstrap = find_debootstrap()
    if debootstrap is None:
        raise ImageBuildError(
            "servegate image build base needs debootstrap (apt-get install debootstrap)"
        )
    client = docker_client()
    wanted = recipes.base_hash(suite, mirror)
    existing = local_image(client, tag)
    if existing is not None and not force and _pins(existing) == wanted:
        return _result(tag, existing, started, reused=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="servegate-base-", dir=work_dir) as tmp:
        root = Path(tmp) / "rootfs"
        log(f"[image base] debootstrap --variant=minbase {suite} (about a minute; log: {log_path})")
        argv = [debootstrap, "--variant=minbase", suite, str(root), *([mirror] if mirror else [])]
        _run_logged(argv, log_path, "debootstrap")
        archive = Path(tmp) / "rootfs.tar"
        _run_logged(["tar", "-C", str(root), "-cf", str(archive), "."], log_path, "tar")
        shutil.rmtree(root, ignore_errors=True)
        labels = {
            recipes.LABEL_IMAGE: "base",
            recipes.LABEL_PINS: wanted,
            recipes.LABEL_BASE: f"debootstrap --variant=minbase {suite}",
        }
        changes = [
            f"ENV PATH={recipes.DEFAULT_PATH}",
            "ENV LANG=C.UTF-8",
            'CMD ["/bin/bash"]',
            *(f'LABEL {k}="{v}"' for k, v in labels.items()),
        ]
        repository, _, version = tag.rpartition(":")
        log(f"[image base] importing the root filesystem as {tag}")
        try:
            client.api.import_image_from_file(
                str(archive), repository=repository, tag=version, changes=changes
            )
        except Exception as exc:
            raise ImageBuildError(f"docker import of {tag} failed: {_engine_reason(exc)}") from None
    image = local_image(client, tag)
    if image is None:
        raise ImageBuildError(f"docker import reported no error, but {tag} is not there")
    return _result(tag, image, started, reused=False)


def find_debootstrap() -> str | None:
    # /usr/sbin is not on a user's PATH
    return shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if Path(p).exists()), None
    )


def _run_logged(argv: list[str], log_path: Path, what: str) -> None:
    with log_path.open("ab") as out:
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0:
        raise ImageBuildError(
            f"{what} failed with exit code {code} (log: {log_path})\n" + _tail(log_path)
        )


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as handle:
        return "\n".join(line.rstrip() for line in deque(handle, maxlen=lines))
    return ""


# --- runtime images -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeBuild:
    """What to build: which runtime, for which device, on which base, tagged how."""

    runtime: str
    device: str = "cpu"
    base: str = recipes.DEFAULT_BASE
    tag: str | None = None
    #: extra index for torch; None: PyTorch's CPU index for cpu (when it answers), none for cuda
    torch_index: str | None = None
    force: bool = False

    @property
    def image_tag(self) -> str:
        return self.tag or recipes.runtime_tag(self.runtime, self.device)


def build_runtime(
    build: RuntimeBuild,
    *,
    sources: pip_config.PipSources,
    cache_dir: Path | None,
    log_path: Path,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Make (or reuse) the runtime image ``build`` describes."""
    started = time.monotonic()
    if build.runtime not in recipes.RECIPES:
        raise ImageBuildError(
            f"no image recipe for {build.runtime!r}; one of: base, {', '.join(recipes.RECIPES)}"
        )
    if build.device not in recipes.DEVICES:
        raise ImageBuildError(f"--device {build.device!r}: expected one of cpu, cuda")
    recipe = recipes.RECIPES[build.runtime]
    tag = build.image_tag
    client = docker_client()
    hint = (
        "on a machine without a registry, `servegate image build base` makes "
        f"{recipes.BASE_TAG}: then pass --base {recipes.BASE_TAG}"
    )
    base_image = ensure_present(client, build.base, what="base image", hint=hint)
    torch_index = _torch_index(build, sources, log)
    pins = recipes.pins_hash(recipe, build.device, base_image.id, torch_index)
    existing = local_image(client, tag)
    if existing is not None and not build.force and _pins(existing) == pins:
        return _result(tag, existing, started, reused=True)
    try:
        mounts = pip_config.container_mounts(sources)
    except ValueError as exc:
        raise ImageBuildError(str(exc)) from None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    with tempfile.TemporaryDirectory(prefix="servegate-image-") as tmp:
        inputs = Path(tmp)
        shutil.copyfile(recipe.requirements, inputs / "requirements.txt")
        for package in recipe.packages:
            shutil.copytree(
                package, inputs / package.name, ignore=shutil.ignore_patterns("__pycache__")
            )
        _world_readable(inputs)
        binds = {str(inputs): str(recipes.INPUTS), **mounts.volumes}
        env = dict(mounts.env)
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            env["PIP_CACHE_DIR"] = str(pip_config.CACHE_MOUNT)
        else:
            env["PIP_NO_CACHE_DIR"] = "1"
        owner = None if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}"
        script = recipes.build_script(
            recipe, build.device, torch_index, owner, env, with_cache=cache_dir is not None
        )
        (inputs / recipes.BUILD_SCRIPT).write_text(script)
        labels = recipes.runtime_labels(recipe, build.device, pins, build.base, base_image.id)
        log(f"[image {build.runtime}] installing {recipe.requirements.name} on {build.base} "
            f"(log: {log_path})")  # fmt: skip
        # The build container's configuration ends up in the committed image (docker commit
        # merges it in, and its command becomes the layer's history): so no environment (the
        # script exports pip's settings), bind mounts that declare no volumes, no owner labels
        # (every container of the image would look like a leftover of this build). It has a
        # fixed name instead: a build killed outright leaves it for the next build of the tag.
        name = _build_container_name(tag)
        _remove_stale_build(client, name, tag)
        container = client.containers.create(
            base_image.id,
            name=name,
            entrypoint=["/bin/sh"],
            command=[str(recipes.INPUTS / recipes.BUILD_SCRIPT)],
            mounts=_bind_mounts(binds, cache_dir),
            # proxies and package indexes the host reaches, the build reaches the same way
            network_mode="host",
            user="0",
        )
        try:
            container.start()
            _follow(container, log_path, f"[image {build.runtime}]", log)
            code = int(container.wait().get("StatusCode", -1))
            if code != 0:
                raise ImageBuildError(
                    f"building {tag} failed: the install in {build.base} exited with code "
                    f"{code} (log: {log_path})\n" + _tail(log_path)
                )
            installed = container.commit()
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
    # The official contract goes on in a metadata-only Dockerfile (no RUN: the classic builder,
    # no BuildKit needed), which, unlike commit's changes, really resets the entry point.
    dockerfile = recipes.contract_dockerfile(
        installed.id, recipe, labels, base_image.attrs.get("Config", {}).get("Env") or []
    )
    try:
        client.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, forcerm=True, pull=False
        )
    except Exception as exc:
        raise ImageBuildError(f"tagging {tag} failed: {_engine_reason(exc)}") from None
    image = local_image(client, tag)
    if image is None:
        raise ImageBuildError(f"the build reported no error, but {tag} is not there")
    if existing is not None and existing.id != image.id:
        # the image this one replaces, untagged now: gigabytes nobody names any more
        with contextlib.suppress(Exception):  # still used by a container: it stays
            client.images.remove(existing.id)
    return _result(tag, image, started, reused=False)


def _bind_mounts(binds: Mapping[str, str], cache_dir: Path | None) -> list[Any]:
    """Read-only bind mounts, and pip's cache read-write (HostConfig mounts: no VOLUME)."""
    from docker.types import Mount

    mounts = [
        Mount(target, source, type="bind", read_only=True) for source, target in binds.items()
    ]
    if cache_dir is not None:
        mounts.append(Mount(str(pip_config.CACHE_MOUNT), str(cache_dir.resolve()), type="bind"))
    return mounts


def _build_container_name(tag: str) -> str:
    return "servegate-image-build-" + re.sub(r"[^a-zA-Z0-9_.-]+", "-", tag).strip("-")


def _remove_stale_build(client: Any, name: str, tag: str) -> None:
    """Remove the container a killed build of ``tag`` left; refuse while one still runs."""
    import docker.errors

    try:
        stale = client.containers.get(name)
    except docker.errors.NotFound:
        return
    if stale.status == "running":
        raise ImageBuildError(
            f"another build of {tag} is running (container {name}); wait for it, or stop it "
            f"with `docker rm -f {name}`"
        )
    stale.remove(force=True)


def _follow(container: Any, log_path: Path, prefix: str, log: Callable[[str], None]) -> None:
    """Copy the build's output to the log; one progress line per package pip starts on."""
    pending = b""
    with log_path.open("ab") as out:
        for chunk in container.logs(stream=True, follow=True):
            out.write(chunk)
            out.flush()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line.startswith(("Collecting", "Successfully", "ERROR", "servegate:")):
                    # pip's summary names every package: the log has it whole
                    log(f"{prefix} {line[:160]}{' ...' if len(line) > 160 else ''}")


def _torch_index(
    build: RuntimeBuild, sources: pip_config.PipSources, log: Callable[[str], None]
) -> str | None:
    """The extra index torch comes from: given, or PyTorch's CPU index for a CPU image when
    it answers from here (else the configured sources decide, as for the local envs)."""
    if build.torch_index is not None:
        return build.torch_index or None
    if build.device != "cpu":
        return None
    cert = (sources.settings.get("cert") or (None,))[0]
    try:
        context = ssl.create_default_context(cafile=cert)
        urllib.request.urlopen(recipes.TORCH_CPU_INDEX + "/torch/", timeout=10, context=context)
    except Exception as exc:
        log(
            f"[image {build.runtime}] PyTorch's CPU index does not answer here "
            f"({_engine_reason(exc)}); torch comes from the configured package sources"
        )
        return None
    return recipes.TORCH_CPU_INDEX


def _world_readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))


def _pins(image: Any) -> str | None:
    return (image.labels or {}).get(recipes.LABEL_PINS)


def _result(tag: str, image: Any, started: float, *, reused: bool) -> BuildResult:
    return BuildResult(
        tag=tag,
        image_id=image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=time.monotonic() - started,
        reused=reused,
    )


def image_labels(image: Any) -> Mapping[str, str]:
    return dict(image.labels or {})
