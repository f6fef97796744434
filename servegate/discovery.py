"""Learning what a target serves: protocols, extensions, models and their tasks."""

from __future__ import annotations

from dataclasses import replace

from servegate.errors import BadTarget, Unreachable
from servegate.features import TASKS
from servegate.protocols.http import Reply
from servegate.protocols.openai import OpenAIClient
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_grpc import V2GrpcClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import ModelInfo, Target
from servegate.tasks import numeric_echo

#: words of V2 server names (GET /v2 "name") whose HuggingFace request encoding is known
_HF_ENCODINGS = {"mlserver": "hf-v2-kwargs", "kserve": "hf-v2-input0"}


def _json_or_none(reply: Reply) -> object:
    if reply.status != 200:
        return None
    try:
        return reply.json()
    except AssertionError:
        return None


#: GET /v2 extension names -> the feature they announce
_EXTENSION_FEATURES = {"binary_tensor_data": "v2-binary-tensor"}


def _extension_features(extensions: object) -> set[str]:
    if not isinstance(extensions, list):
        return set()
    return {_EXTENSION_FEATURES[e] for e in extensions if e in _EXTENSION_FEATURES}


def _lists_versions(v2: V2RestClient, models: set[str]) -> bool:
    """Whether any model's metadata lists a version (the /versions/{v} routes can be checked)."""
    for name in sorted(models):
        try:
            meta = _json_or_none(v2.model_metadata(name))
        except Unreachable:
            # a server that drops the connection on one model's metadata (KServe 0.14 does for
            # generative models) is judged by the checks, not refused by discovery
            continue
        if isinstance(meta, dict) and isinstance(meta.get("versions"), list) and meta["versions"]:
            return True
    return False


#: OpenAI route -> the feature its presence announces; streaming is part of the completions API
_OPENAI_ROUTES = {
    "completions": ("openai-stream",),
    "chat/completions": ("openai-chat",),
    "embeddings": ("openai-embeddings",),
}


def _openai_routes(oai: OpenAIClient) -> set[str]:
    """Which OpenAI routes exist: an empty body gets a 4xx from a route that exists (it lacks
    `model`) and 404 or 405 from one that does not."""
    found: set[str] = set()
    for route, route_features in _OPENAI_ROUTES.items():
        try:
            reply = oai.http.post(f"{oai.api_base}/{route}", json={})
        except Unreachable:
            continue
        if reply.status not in (404, 405) and reply.status < 500:
            found.update(route_features)
    return found


def task_from_name(model: str) -> str | None:
    """The task a model name ends with (``tiny-fill-mask`` -> ``fill-mask``), if any; the
    reference servers' ``numeric-echo`` is the custom numeric model."""
    if model == numeric_echo.MODEL_NAME:
        return numeric_echo.TASK
    for task in sorted(TASKS, key=len, reverse=True):
        if model == task or model.endswith("-" + task):
            return task
    return None


def discover(target: Target, declared_tasks: dict[str, str] | None = None) -> Target:
    """Probe ``target`` and return it with discovered features and models.

    Raises Unreachable when nothing answers at the URL, BadTarget when a declared model is not
    served.
    """
    features: set[str] = set(target.features)
    names: set[str] = set()
    v2 = V2RestClient(target.http_url, target.connection)
    v1 = V1Client(target.http_url, target.connection)
    oai = OpenAIClient(target.http_url, target.connection, target.openai_base)
    implementation = target.implementation
    try:
        try:
            live = v2.live()
        except Unreachable as exc:
            raise Unreachable(f"target {target.http_url} does not answer: {exc}") from None
        meta = _json_or_none(v2.server_metadata())
        if isinstance(meta, dict) and "name" in meta:
            features.add("v2-rest")
            server_name = str(meta.get("name", "")).lower()
            for family, encoding in _HF_ENCODINGS.items():
                if family in server_name:
                    features.add(encoding)
            features |= _extension_features(meta.get("extensions"))
            if implementation == "unknown":
                implementation = f"{meta.get('name')} {meta.get('version', '')}".strip()
        index = _json_or_none(v2.repository_index())
        if isinstance(index, list):
            features.add("v2-repository")
            names.update(str(m["name"]) for m in index if isinstance(m, dict) and "name" in m)
        if "v2-rest" in features and _lists_versions(v2, names | set(target.models)):
            features.add("v2-model-versions")
        listing = _json_or_none(v1.models())
        if isinstance(listing, dict) and isinstance(listing.get("models"), list):
            features.add("v1")
            names.update(str(m) for m in listing["models"])
        cards = _json_or_none(oai.models())
        if isinstance(cards, dict) and isinstance(cards.get("data"), list):
            features.add("openai")
            names.update(str(c["id"]) for c in cards["data"] if isinstance(c, dict) and "id" in c)
            features |= _openai_routes(oai)
        if "v2-rest" not in features and "v1" not in features and "openai" not in features:
            raise BadTarget(
                f"target {target.http_url} answers (GET /v2/health/live: {live.status}) but "
                "speaks none of V2, V1 or OpenAI there; is the URL the server's base URL?"
            )
    finally:
        v2.close()
        v1.close()
        oai.close()
    if target.grpc_address:
        grpc_client = V2GrpcClient.for_target(target, timeout=5.0)
        try:
            if grpc_client.live().ok:
                features.add("v2-grpc")
        except Unreachable as exc:
            raise Unreachable(f"gRPC target {target.grpc_address} does not answer: {exc}") from None
        finally:
            grpc_client.close()

    models = dict(target.models)
    for name in sorted(names):
        if name not in models:
            task = task_from_name(name)
            models[name] = ModelInfo(name=name, task=task, task_source="name")
    for name, task in (declared_tasks or {}).items():
        if name not in models:
            served = ", ".join(sorted(models)) or "none"
            raise BadTarget(
                f"--model {name}={task}: the target serves no model {name!r} (it serves: {served})"
            )
        models[name] = replace(models[name], task=task, task_source="declared")
    for model in models.values():
        if model.task:
            features.add(f"task-{model.task}")
    return replace(
        target, models=models, features=frozenset(features), implementation=implementation
    )
