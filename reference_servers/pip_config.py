"""The host's pip configuration, carried into an image build container.

An image is built on the same package sources as the local envs: the host's CA bundle, package
indexes, extra wheel folders and constraints, as ``pip config list`` and the ``PIP_*`` variables
give them (a corporate network's settings live there). Each local path is mounted read-only under
:data:`HOST_ROOT` at its own path, and pip inside the container is told the new path through
``PIP_*`` variables. The CA bundle gets a path of its own: mounted over the image's bundle it
would break the distribution's ca-certificates package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

#: where host paths appear inside the build container
HOST_ROOT = PurePosixPath("/servegate-host")
#: pip's cache inside the build container (the host's cache dir, mounted read-write)
CACHE_MOUNT = PurePosixPath("/servegate-pip-cache")

#: settings that name files, folders or URLs, as pip's option names
PATH_KEYS = ("cert", "index-url", "extra-index-url", "find-links", "constraint")
#: settings passed through unchanged
PLAIN_KEYS = ("trusted-host", "default-timeout", "timeout", "retries", "proxy", "no-index")
#: proxy variables pip (and apt) read from the environment
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
#: the order pip loads its configuration in; later ones win
_VARIANT_ORDER = ("global", "user", "site", ":env:")


@dataclass(frozen=True)
class PipSources:
    """Where pip gets packages, as settings by pip option name (values split on whitespace)."""

    settings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    proxies: Mapping[str, str] = field(default_factory=dict)

    def merged(self, overrides: Mapping[str, Iterable[str]]) -> PipSources:
        """These sources with ``overrides`` (non-empty ones) replacing whole settings."""
        settings = dict(self.settings)
        for key, values in overrides.items():
            values = tuple(values)
            if values:
                settings[key] = values
        return PipSources(settings, self.proxies)


@dataclass(frozen=True)
class PipMounts:
    """Bind mounts (host path -> container path, read-only) and the container's PIP_* env."""

    volumes: Mapping[str, str]
    env: Mapping[str, str]


def parse_config_list(text: str) -> dict[str, tuple[str, ...]]:
    """``pip config list`` output -> settings; ``install.X`` counts as ``X``; env wins."""
    ranked: dict[str, tuple[int, tuple[str, ...]]] = {}
    for line in text.splitlines():
        match = re.match(r"^([^.=]+)\.([\w-]+)='(.*)'$", line.strip())
        if not match:
            continue
        variant, key, value = match.groups()
        if variant not in ("global", "install", ":env:"):
            continue
        rank = _VARIANT_ORDER.index(variant) if variant in _VARIANT_ORDER else 1
        current = ranked.get(key)
        if current is None or rank >= current[0]:
            ranked[key] = (rank, tuple(value.split()))
    return {k: v for k, (_, v) in ranked.items() if k in PATH_KEYS + PLAIN_KEYS}


def host_sources(python: str = sys.executable) -> PipSources:
    """The host's pip configuration as ``python -m pip config list`` reports it (files and
    ``PIP_*`` variables alike), and its proxy variables; empty when pip cannot say."""
    out = _pip(python, "config", "list") or ""
    proxies = {k: v for k in PROXY_VARS if (v := os.environ.get(k))}
    return PipSources(parse_config_list(out), proxies)


def host_cache_dir(python: str = sys.executable) -> Path | None:
    """The host's pip cache folder (``pip cache dir``), None when pip's cache is off."""
    out = (_pip(python, "cache", "dir") or "").strip()
    return Path(out) if out else None


def _pip(python: str, *args: str) -> str | None:
    """What ``python -m pip ARGS`` prints, None when it fails (pip missing, an error)."""
    try:
        return subprocess.run(
            [python, "-m", "pip", *args], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def container_mounts(sources: PipSources) -> PipMounts:
    """Mounts and ``PIP_*`` variables that give pip in a container the same sources.

    Raises ValueError naming a configured local path that does not exist.
    """
    volumes: dict[str, str] = {}
    env: dict[str, str] = {}

    def mount(host: Path, *, whole: Path | None = None) -> PurePosixPath:
        root = (whole or host).resolve()
        if not root.exists():
            raise ValueError(f"the pip configuration names {host}, which does not exist")
        volumes[str(root)] = str(HOST_ROOT / root.relative_to("/"))
        return HOST_ROOT / host.resolve().relative_to("/")

    for key in PATH_KEYS:
        values = sources.settings.get(key, ())
        if not values:
            continue
        translated = []
        for value in values:
            parsed = urlparse(value)
            if parsed.scheme == "file":
                local = Path(unquote(parsed.path))
                # a PEP 503 index's pages link to files beside its "simple" folder
                whole = local.parent if local.name == "simple" else None
                translated.append("file://" + str(mount(local, whole=whole)))
            elif parsed.scheme in ("http", "https"):
                translated.append(value)
            else:
                translated.append(str(mount(Path(value))))
        env["PIP_" + key.upper().replace("-", "_")] = " ".join(translated)
    for key in PLAIN_KEYS:
        if sources.settings.get(key):
            env["PIP_" + key.upper().replace("-", "_")] = " ".join(sources.settings[key])
    return PipMounts(volumes, {**env, **sources.proxies})
