"""Options shared by the pytest plugin and the CLI, turned into Targets in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from servegate.errors import BadTarget
from servegate.features import PROFILES, TASKS, parse_profiles, unknown_features
from servegate.reference_servers.registry import RUNTIMES
from servegate.targets import (
    DEFAULT_OPENAI_BASE,
    Connection,
    Target,
    parse_grpc_address,
    parse_http_url,
    parse_model_tasks,
)

#: tasks a --model NAME=TASK may name, beyond the HuggingFace ones
EXTRA_TASKS = ("custom-numeric",)


@dataclass
class RunOptions:
    """Everything the suite needs to know about where to point, from options."""

    target: Target | None = None
    #: --model NAME[=TASK]: models to probe directly (task None: learnt by discovery)
    model_tasks: dict[str, str | None] = field(default_factory=dict)
    servers: tuple[str, ...] = ("mlserver", "kserve")
    backend: str = "local"
    device: str = "cpu"
    state_dir: Path = Path(".servegate")
    reports_dir: Path = Path("reports")
    ready_timeout: float = 180.0
    extra_features: frozenset[str] = frozenset()
    exempt_features: frozenset[str] = frozenset()
    #: profiles the run is asked to conform to (--profile); their core features count as
    #: supported, and a profile that does not succeed makes the run fail
    profiles: tuple[str, ...] = ()
    #: the image (or build) under test, recorded in reports (--image)
    image: str | None = None


def parse_headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise BadTarget(f"--header {value!r}: expected 'Name: value'")
        headers[name.strip()] = content.strip()
    return headers


def parse_feature_list(option: str, value: str | None) -> frozenset[str]:
    names = frozenset(n.strip() for n in (value or "").split(",") if n.strip())
    unknown = unknown_features(names)
    if unknown:
        raise BadTarget(f"{option}: unknown feature(s) {', '.join(unknown)}")
    return names


def build_run_options(
    *,
    target: str | None,
    grpc_target: str | None,
    models: list[str],
    openai_base: str,
    headers: list[str],
    insecure: bool,
    ca_bundle: str | None,
    request_timeout: float,
    servers: str,
    backend: str,
    device: str,
    state_dir: str,
    reports_dir: str,
    ready_timeout: float,
    features: str | None = None,
    exempt_features: str | None = None,
    profiles: str | None = None,
    image: str | None = None,
) -> RunOptions:
    """Validate raw option values; BadTarget with the option named when one is wrong."""
    model_tasks = parse_model_tasks(models)
    for name, task in model_tasks.items():
        if task is not None and task not in TASKS and task not in EXTRA_TASKS:
            raise BadTarget(
                f"--model {name}={task}: unknown task; known: {', '.join(TASKS + EXTRA_TASKS)}"
            )
    if request_timeout <= 0:
        raise BadTarget("--request-timeout must be a positive number of seconds")
    if ca_bundle and not Path(ca_bundle).is_file():
        raise BadTarget(f"--ca-bundle {ca_bundle!r}: no such file")
    verify: bool | str = False if insecure else (ca_bundle or True)
    connection = Connection(headers=parse_headers(headers), verify=verify, timeout=request_timeout)
    try:
        profile_names = parse_profiles(profiles)
    except ValueError as exc:
        raise BadTarget(f"--profile: {exc}") from None
    core = frozenset(f for name in profile_names for f in PROFILES[name].core)
    options = RunOptions(
        model_tasks=model_tasks,
        backend=backend,
        device=device,
        state_dir=Path(state_dir),
        reports_dir=Path(reports_dir),
        ready_timeout=ready_timeout,
        extra_features=parse_feature_list("--features", features) | core,
        exempt_features=parse_feature_list("--exempt-features", exempt_features),
        profiles=profile_names,
        image=image.strip() if image and image.strip() else None,
    )
    if target:
        options.target = Target(
            name=_target_name(parse_http_url(target)),
            http_url=parse_http_url(target),
            grpc_address=parse_grpc_address(grpc_target) if grpc_target else None,
            openai_base=openai_base or DEFAULT_OPENAI_BASE,
            connection=connection,
        )
        options.servers = ()
    else:
        if grpc_target:
            raise BadTarget("--grpc-target needs --target (the HTTP base URL of the same server)")
        names = tuple(s.strip() for s in servers.split(",") if s.strip())
        if names == ("all",):
            # every reference implementation side by side: one matrix page
            names = tuple(RUNTIMES)
        unknown = [s for s in names if s not in RUNTIMES]
        if unknown or not names:
            raise BadTarget(
                f"--servers {servers!r}: unknown server(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(RUNTIMES)}"
            )
        options.servers = names
    return options


def _target_name(url: str) -> str:
    """A short, file-name-safe name for a URL target: host-port."""
    rest = url.split("://", 1)[1]
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in rest).strip("-")
