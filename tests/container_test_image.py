"""A tiny image for the container backend's failure modes, made from this machine's own shell.

No registry and no base image are needed: the root file system holds /bin/sh, sleep and their
shared libraries, copied from this machine, and an ``mlserver`` script that stands in for the
runtime's command (MLServer's layout starts ``mlserver start /mnt/models``). ``docker import``
turns it into an image; the mode is an environment variable baked into the image:

- ``die``: prints two lines and exits with :data:`DIE_CODE`, as a server that cannot load its
  models does;
- ``hang``: prints a line and never answers, as a server stuck loading does.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import docker

REPOSITORY = "servegate-test/startup"
DIE_CODE = 3
DIE_LINE = "cannot load the models: this server fails on purpose"

SCRIPT = f"""#!/bin/sh
echo "test server: starting with $*"
if [ "$SERVEGATE_TEST_MODE" = die ]; then
  echo "{DIE_LINE}" >&2
  exit {DIE_CODE}
fi
echo "test server: loading forever"
exec sleep 100000
"""


def _with_libraries(binary: Path) -> list[Path]:
    """The binary and every shared library it loads (ldd), as absolute paths."""
    found = [binary]
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                found.append(Path(part))
                break
    return found


def rootfs_tar() -> bytes:
    """The root file system as a tar archive (every file dereferenced: no links to follow)."""
    files: dict[str, Path] = {}
    for name in ("sh", "sleep"):
        which = shutil.which(name)
        assert which, f"this machine has no {name}"
        binary, *libraries = _with_libraries(Path(which))
        # at the names the script and the image's PATH use
        files[f"bin/{name}"] = binary.resolve()
        for library in libraries:
            # at the path the binary asks its loader for (/lib64/ld-linux..., /lib/...)
            files[str(library).lstrip("/")] = library.resolve()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member, source in sorted(files.items()):
            tar.add(str(source), arcname=member)
        script = SCRIPT.encode()
        info = tarfile.TarInfo("bin/mlserver")
        info.mode = 0o755
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script))
        for folder in ("tmp", "mnt/models"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777
            tar.addfile(info)
    return buffer.getvalue()


def build(client: Any, mode: str) -> str:
    """The image for ``mode`` (die, hang), imported into the engine unless there already; its
    name. Tagged by content, so that runs at once share it and reruns add no image."""
    tar = rootfs_tar()
    digest = hashlib.sha256(tar + mode.encode()).hexdigest()[:12]
    tag = f"{mode}-{digest}"
    name = f"{REPOSITORY}:{tag}"
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        client.api.import_image_from_data(
            tar,
            repository=REPOSITORY,
            tag=tag,
            changes=[f"ENV SERVEGATE_TEST_MODE={mode}", "ENV PATH=/bin"],
        )
    return name
