"""A modelcar image: the staged model repository as an OCI image KServe mounts at /mnt/models.

KServe's modelcar pattern (``storageUri: oci://IMAGE``) runs the image as a sidecar and reads
``/models`` from it. The build context is the staged repository and a Dockerfile written from
:data:`DOCKERFILE`; nothing is downloaded but the small base image.
"""

from __future__ import annotations

from pathlib import Path

#: the base only has to provide a shell for the sidecar to idle in
BASE_IMAGE = "busybox:1.36.1"
#: loaded into the kind nodes with `kind load`, never pushed; a fixed, non-"latest" tag keeps
#: the pull policy at IfNotPresent
IMAGE_REPOSITORY = "servegate.local/models"
REPOSITORY_DIR = "repository"

DOCKERFILE = """\
FROM {base}
# the staged servegate model repository: fixture models and their settings files
COPY {repository}/ /models/
# the serving container runs as a non-root user
RUN chmod -R a+rX /models
"""


def dockerfile(base: str = BASE_IMAGE) -> str:
    """The Dockerfile text of a modelcar whose build context holds ``repository/``."""
    return DOCKERFILE.format(base=base, repository=REPOSITORY_DIR)


def image_name(run_id: str) -> str:
    return f"{IMAGE_REPOSITORY}:{run_id}"


def storage_uri(image: str) -> str:
    return f"oci://{image}"


def write_build_context(context: Path, base: str = BASE_IMAGE) -> Path:
    """Write the Dockerfile into ``context`` (whose ``repository/`` is already staged)."""
    if not (context / REPOSITORY_DIR).is_dir():
        raise FileNotFoundError(f"no staged repository in {context / REPOSITORY_DIR}")
    path = context / "Dockerfile"
    path.write_text(dockerfile(base), encoding="utf-8")
    return path


def build(context: Path, image: str) -> None:
    """Build the modelcar with the local Docker engine."""
    import docker

    client = docker.from_env()
    try:
        client.images.build(path=str(context), tag=image, rm=True, forcerm=True)
    finally:
        client.close()


def remove(image: str) -> None:
    """Remove the local image (best effort: it may never have been built)."""
    import docker

    client = docker.from_env()
    try:
        client.images.remove(image, force=True)
    except Exception:  # already gone
        pass
    finally:
        client.close()
