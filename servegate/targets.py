"""What a target is: the server under test, its endpoints, its models and their tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from servegate.errors import BadTarget

DEFAULT_OPENAI_BASE = "/openai/v1"


@dataclass(frozen=True)
class Connection:
    """How to talk to a target over HTTP: TLS, extra headers, timeouts."""

    #: extra headers sent with every request (e.g. a bearer token); redacted in reports
    headers: Mapping[str, str] = field(default_factory=dict)
    #: True, False (insecure) or a CA bundle path
    verify: bool | str = True
    #: per-request timeout in seconds
    timeout: float = 30.0


@dataclass(frozen=True)
class ModelInfo:
    """A model the target serves and the HuggingFace task it performs (None when unknown)."""

    name: str
    task: str | None = None
    version: str | None = None
    #: what is known of the model's config (labels in id order, hidden size, mask token);
    #: filled in for fixture models, empty for models discovered on an arbitrary target
    labels: tuple[str, ...] = ()
    hidden_size: int | None = None
    mask_token: str | None = None
    #: how the task was learnt: "declared" (--model or the launcher), "metadata" (the model's
    #: own metadata), "name" (model name)
    task_source: str = "declared"
    #: the HuggingFace V2 encodings (hf-v2-kwargs, hf-v2-input0) discovery found this model to
    #: speak, from its metadata or a probe; empty when unknown
    encodings: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Evidence:
    """One exchange a discovery decision rests on: the request line, the status (None when no
    response arrived) and a short excerpt of the body."""

    request: str
    status: int | str | None
    excerpt: str = ""

    def line(self) -> str:
        seen = "no response" if self.status is None else str(self.status)
        return f"{self.request} -> {seen}" + (f" {self.excerpt}" if self.excerpt else "")


@dataclass(frozen=True)
class Decision:
    """Why discovery holds a feature supported or not: how it was found, and the exchanges."""

    feature: str
    supported: bool
    #: one sentence: what was asked and what settled it
    how: str
    evidence: tuple[Evidence, ...] = ()
    #: supported, but a probe was answered with a 5xx (or no answer): its checks run and fail
    broken: bool = False


@dataclass(frozen=True)
class Target:
    """A server under test."""

    #: short name used in test ids and report file names, e.g. "mlserver"
    name: str
    #: HTTP base URL, no trailing slash, e.g. "http://127.0.0.1:8080"
    http_url: str
    #: gRPC address "host:port", or None when the target has no gRPC endpoint
    grpc_address: str | None = None
    #: path of the OpenAI routes below http_url
    openai_base: str = DEFAULT_OPENAI_BASE
    models: Mapping[str, ModelInfo] = field(default_factory=dict)
    #: what the server is, for reports ("unknown" when the user aims at a URL)
    implementation: str = "unknown"
    #: features the target supports: declared by its launcher or the user, then discovered
    features: frozenset[str] = frozenset()
    connection: Connection = field(default_factory=Connection)
    #: every discovery decision, one per feature, in the order made
    discovery: tuple[Decision, ...] = ()

    def decision(self, feature: str) -> Decision | None:
        """The discovery decision about ``feature``, if discovery made one."""
        return next((d for d in self.discovery if d.feature == feature), None)

    def with_models(self, models: Mapping[str, ModelInfo]) -> Target:
        return replace(self, models=dict(models))

    def models_for_task(self, task: str) -> list[ModelInfo]:
        return [m for m in self.models.values() if m.task == task]


def parse_http_url(url: str) -> str:
    """Validate a ``--target`` value and return it without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise BadTarget(f"--target {url!r}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise BadTarget(f"--target {url!r}: no host name in the URL")
    try:
        port = parts.port
    except ValueError as exc:
        raise BadTarget(f"--target {url!r}: {exc}") from None
    if port == 0:
        raise BadTarget(f"--target {url!r}: port 0 is not a port a server listens on")
    if parts.query or parts.fragment:
        raise BadTarget(f"--target {url!r}: a base URL takes no query or fragment")
    return url.strip().rstrip("/")


def parse_grpc_address(address: str) -> str:
    """Validate a ``--grpc-target`` value ("host:port")."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadTarget(f"--grpc-target {address!r}: expected host:port, e.g. 127.0.0.1:8081")
    return address.strip()


def parse_model_tasks(values: list[str]) -> dict[str, str | None]:
    """Parse ``--model NAME[=TASK]`` options into a mapping (task None: learn it by discovery)."""
    out: dict[str, str | None] = {}
    for value in values:
        name, sep, task = value.strip().partition("=")
        if not name or (sep and not task):
            raise BadTarget(
                f"--model {value!r}: expected NAME or NAME=TASK, e.g. my-bert=fill-mask"
            )
        out[name] = task or None
    return out
