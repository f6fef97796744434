"""Learning what a target serves by asking it with real requests: protocols, extensions, models,
their tasks, the HuggingFace V2 encoding each model speaks, and the OpenAI routes.

Every decision is kept with the exchanges it rests on (``Target.discovery``), so a report can say
why a check was unsupported. The rules:

- a 2xx answer shows a feature;
- a 5xx answer, or a dropped connection, to a probe shows a feature that is present and broken:
  its checks run and fail with that evidence. **A 5xx never makes a feature unsupported**;
- absence rests on a 4xx (for a route: 404 or 405 that is not an error about the model);
- the repository index is an extension: without it models come from ``--model``, probed one by
  one (V2 ready and metadata, V1 model, the OpenAI list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from servegate.errors import BadTarget, Unreachable
from servegate.features import FEATURES, TASKS
from servegate.protocols.exchange import excerpt
from servegate.protocols.http import Reply
from servegate.protocols.openai import OpenAIClient
from servegate.protocols.v1 import V1Client
from servegate.protocols.v2_grpc import V2GrpcClient
from servegate.protocols.v2_rest import V2RestClient
from servegate.targets import Decision, Evidence, ModelInfo, Target
from servegate.tasks import hf_v2_input0, hf_v2_kwargs, numeric_echo

#: characters of a body a decision keeps (the report shows it on one line)
EVIDENCE_EXCERPT = 200

KWARGS, INPUT0 = "hf-v2-kwargs", "hf-v2-input0"
#: input names by which a model's metadata shows MLServer's encoding: pipeline arguments
_PIPELINE_ARGUMENTS = frozenset(
    {"args", "array_inputs", "inputs", "question", "context", "images", "candidate_labels"}
)
#: GET /v2 extension names -> the feature they announce
_EXTENSION_FEATURES = {"binary_tensor_data": "v2-binary-tensor"}
#: tasks whose models answer OpenAI completions and chat
_GENERATIVE = ("text-generation", "text2text-generation")
#: at most this many models are tried per OpenAI route before a decision
_ROUTE_CANDIDATES = 4


def evidence_of(reply: Reply) -> Evidence:
    """A reply as a decision keeps it: request line, status, a one-line body excerpt."""
    ex = reply.exchange
    body = " ".join(excerpt(ex.response_body, EVIDENCE_EXCERPT).split())
    return Evidence(request=f"{ex.method} {ex.url}", status=ex.status, excerpt=body)


def _no_answer(request: str, exc: Exception) -> Evidence:
    return Evidence(request=request, status=None, excerpt=" ".join(str(exc).split())[:200])


def _json(reply: Reply | None) -> Any:
    if reply is None or not 200 <= reply.status < 300:
        return None
    try:
        return reply.json()
    except AssertionError:
        return None


def _broken(reply: Reply | None) -> bool:
    """No answer, or a 5xx: evidence of a broken feature, never of an absent one."""
    return reply is None or reply.status >= 500


def _ask(request: str, send: Callable[[], Reply]) -> tuple[Reply | None, Evidence]:
    """Send one probe and keep its evidence (a dropped connection is evidence too)."""
    try:
        reply = send()
    except Unreachable as exc:
        return None, _no_answer(request, exc)
    return reply, evidence_of(reply)


@dataclass
class _Decisions:
    """One decision per feature; a later positive finding replaces an earlier negative one."""

    by_feature: dict[str, Decision] = field(default_factory=dict)

    def add(
        self,
        feature: str,
        supported: bool,
        how: str,
        evidence: Iterable[Evidence] = (),
        *,
        broken: bool = False,
    ) -> None:
        old = self.by_feature.get(feature)
        # a shown feature stays shown, and a working sighting outranks a broken one
        if old is not None and old.supported and (not supported or (broken and not old.broken)):
            return
        self.by_feature[feature] = Decision(feature, supported, how, tuple(evidence), broken)

    def has(self, feature: str) -> bool:
        decision = self.by_feature.get(feature)
        return decision is not None and decision.supported


def task_from_name(model: str) -> str | None:
    """The task a model name ends with (``tiny-fill-mask`` -> ``fill-mask``), if any; the
    reference servers' ``numeric-echo`` is the custom numeric model."""
    if model == numeric_echo.MODEL_NAME:
        return numeric_echo.TASK
    for task in sorted(TASKS, key=len, reverse=True):
        if model == task or model.endswith("-" + task):
            return task
    return None


def task_from_metadata(meta: object) -> str | None:
    """A HuggingFace task the model's metadata names in its parameters (``task``), if any."""
    if not isinstance(meta, dict):
        return None
    params = meta.get("parameters")
    for where in (params, params.get("extra") if isinstance(params, dict) else None):
        if isinstance(where, dict):
            task = where.get("task")
            if isinstance(task, str) and task in TASKS:
                return task
    return None


def _tensors(meta: dict[str, Any], key: str) -> list[dict[str, Any]]:
    found = meta.get(key)
    return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []


def _content_type(tensor: dict[str, Any]) -> str:
    params = tensor.get("parameters")
    value = params.get("content_type") if isinstance(params, dict) else None
    return str(value) if value else ""


def encodings_from_metadata(meta: object) -> frozenset[str]:
    """The HuggingFace V2 encodings a model's metadata declares.

    MLServer's (inputs named after pipeline arguments, ``hg_*`` content types, one BYTES
    ``output``) and KServe's (``input-0`` / ``output-0``) name their tensors differently; a model
    that declares neither (empty metadata, a numeric model) says nothing.
    """
    if not isinstance(meta, dict):
        return frozenset()
    inputs, outputs = _tensors(meta, "inputs"), _tensors(meta, "outputs")
    found: set[str] = set()
    if any(t.get("name") in _PIPELINE_ARGUMENTS for t in inputs) or any(
        _content_type(t).startswith("hg_") for t in inputs + outputs
    ):
        found.add(KWARGS)
    if any(
        t.get("name") == hf_v2_kwargs.OUTPUT_NAME and t.get("datatype") == "BYTES" for t in outputs
    ):
        found.add(KWARGS)
    if any(t.get("name") == hf_v2_input0.INPUT_NAME for t in inputs) or any(
        t.get("name") == hf_v2_input0.OUTPUT_NAME for t in outputs
    ):
        found.add(INPUT0)
    return frozenset(found)


def _output_names(reply: Reply | None) -> list[str]:
    body = _json(reply)
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        return []
    return [str(o.get("name")) for o in outputs if isinstance(o, dict)]


#: encoding -> (the tasks it defines over V2, its documented request, the output it answers)
_ENCODING_PROBES: dict[str, tuple[tuple[str, ...], Callable[[str], dict[str, Any]], str]] = {
    INPUT0: (hf_v2_input0.TASKS, hf_v2_input0.request_for, hf_v2_input0.OUTPUT_NAME),
    KWARGS: (TASKS, hf_v2_kwargs.request_for, hf_v2_kwargs.OUTPUT_NAME),
}


@dataclass
class _EncodingProbe:
    """What the encoding probes of one model found."""

    spoken: set[str] = field(default_factory=set)
    #: encodings whose documented request got a 5xx or no answer
    broken: set[str] = field(default_factory=set)
    evidence: list[Evidence] = field(default_factory=list)


def _probe_encodings(v2: V2RestClient, model: ModelInfo) -> _EncodingProbe:
    """Send each encoding's documented request for the model's task: a 2xx carrying that
    encoding's output shows the encoding; the first recognised one ends the probing."""
    found = _EncodingProbe()
    for encoding, (tasks, request_for, output) in _ENCODING_PROBES.items():
        if model.task not in tasks:
            continue
        body = request_for(model.task)
        reply, evidence = _ask(
            f"POST /v2/models/{model.name}/infer", partial(v2.infer, model.name, body)
        )
        found.evidence.append(evidence)
        if reply is not None and 200 <= reply.status < 300 and output in _output_names(reply):
            found.spoken.add(encoding)
            break
        if _broken(reply):
            found.broken.add(encoding)
    return found


def _route_verdict(reply: Reply | None, model: str) -> str:
    """What one minimal valid request says of an OpenAI route: "present", "broken" or
    "absent". 404/405 that is an error about the model (its name, or "model" and "not found" /
    "does not exist" in the body) comes from a route that exists."""
    if reply is None or reply.status >= 500:
        return "broken"
    if 200 <= reply.status < 300:
        return "present"
    if reply.status in (404, 405):
        body = reply.content.decode("utf-8", "replace").lower()
        about_model = model.lower() in body or (
            "model" in body and ("not found" in body or "does not exist" in body)
        )
        return "present" if about_model and reply.status == 404 else "absent"
    return "present"


#: OpenAI route -> (feature, minimal valid request for a model)
_OPENAI_ROUTES: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "completions": (
        "openai-completions",
        lambda m: {"model": m, "prompt": "Hi", "max_tokens": 1},
    ),
    "chat/completions": (
        "openai-chat",
        lambda m: {"model": m, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1},
    ),
    "embeddings": ("openai-embeddings", lambda m: {"model": m, "input": "Hi"}),
}


def _route_candidates(route: str, models: dict[str, ModelInfo], listed: list[str]) -> list[str]:
    """Listed models to try a route with, the likeliest first: generative models for text,
    feature-extraction models for embeddings, then the rest in list order."""
    wanted = ("feature-extraction",) if route == "embeddings" else _GENERATIVE
    first = [m for m in listed if models.get(m) and models[m].task in wanted]
    return (first + [m for m in listed if m not in first])[:_ROUTE_CANDIDATES]


def _probe_route(
    oai: OpenAIClient, route: str, candidates: list[str]
) -> tuple[str, list[Evidence], str | None]:
    """The verdict of a route over its candidate models: present on the first 2xx; else broken
    when any answer was a 5xx; else present when any 4xx other than an absent-route 404/405
    came back; else absent. Returns (verdict, evidence, the model that answered 2xx)."""
    _feature, body_for = _OPENAI_ROUTES[route]
    verdicts: list[str] = []
    evidence: list[Evidence] = []
    for model in candidates:
        body = body_for(model)
        reply, ev = _ask(
            f"POST {oai.api_base}/{route}",
            partial(oai.http.post, f"{oai.api_base}/{route}", json=body),
        )
        evidence.append(ev)
        verdict = _route_verdict(reply, model)
        if verdict == "present" and reply is not None and 200 <= reply.status < 300:
            return "present", evidence, model
        verdicts.append(verdict)
    for verdict in ("broken", "present"):
        if verdict in verdicts:
            return verdict, evidence, None
    return "absent", evidence, None


def _probe_stream(
    oai: OpenAIClient, route: str, model: str, usage: bool
) -> tuple[Evidence, bool, int | None]:
    """A streamed minimal request: (evidence, whether it was an event stream, status)."""
    _feature, body_for = _OPENAI_ROUTES[route]
    body = {**body_for(model), "stream": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    request = f"POST {oai.api_base}/{route} (stream{', include_usage' if usage else ''})"
    try:
        stream = oai.stream_all(route, body)
    except Unreachable as exc:
        return _no_answer(request, exc), False, None
    reply = stream.reply
    text = " ".join(excerpt(reply.exchange.response_body, EVIDENCE_EXCERPT).split())
    is_sse = 200 <= reply.status < 300 and reply.content_type == "text/event-stream"
    if usage and is_sse:
        is_sse = any(isinstance(c, dict) and c.get("usage") for c in stream.chunks)
    return Evidence(request, reply.status, text), is_sse, reply.status


def discover(target: Target, declared_tasks: dict[str, str | None] | None = None) -> Target:
    """Probe ``target`` and return it with discovered features, models and decisions.

    Raises Unreachable when nothing answers at the URL, BadTarget when a model named with
    ``--model`` is not served (the probes' answers are in the message).
    """
    declared = dict(declared_tasks or {})
    dec = _Decisions()
    names: list[str] = []
    oai_listed: list[str] = []
    metadata: dict[str, Any] = {}
    meta_evidence: dict[str, Evidence] = {}
    v2 = V2RestClient(target.http_url, target.connection)
    v1 = V1Client(target.http_url, target.connection)
    oai = OpenAIClient(target.http_url, target.connection, target.openai_base)
    implementation = target.implementation
    models = dict(target.models)

    def add_names(found: Iterable[str]) -> None:
        names.extend(n for n in found if n not in names)

    try:
        try:
            live = v2.live()
        except Unreachable as exc:
            raise Unreachable(f"target {target.http_url} does not answer: {exc}") from None

        # V2: the server metadata route (required by the protocol)
        reply, ev = _ask("GET /v2", v2.server_metadata)
        meta = _json(reply)
        if isinstance(meta, dict) and "name" in meta:
            dec.add("v2-rest", True, "GET /v2 answers the server metadata", [ev])
            extensions = meta.get("extensions")
            listed_ext = [str(e) for e in extensions] if isinstance(extensions, list) else []
            for ext, feature in _EXTENSION_FEATURES.items():
                dec.add(
                    feature,
                    ext in listed_ext,
                    f"GET /v2 extensions {'list' if ext in listed_ext else 'do not list'} {ext!r}",
                    [ev],
                )
            if implementation == "unknown":
                implementation = f"{meta.get('name')} {meta.get('version', '')}".strip()
        elif _broken(reply):
            dec.add(
                "v2-rest",
                True,
                "GET /v2 answers with an error: V2 present, broken",
                [ev],
                broken=True,
            )
        else:
            dec.add("v2-rest", False, "GET /v2 does not answer V2 server metadata", [ev])

        # V2 repository extension: optional, so its absence only concerns its own checks
        reply, ev = _ask("POST /v2/repository/index", v2.repository_index)
        index = _json(reply)
        if isinstance(index, list):
            dec.add("v2-repository", True, "the repository index answers a list of models", [ev])
            add_names(str(m["name"]) for m in index if isinstance(m, dict) and "name" in m)
        elif _broken(reply):
            dec.add(
                "v2-repository",
                True,
                "the repository index answers with an error: present, broken",
                [ev],
                broken=True,
            )
        else:
            dec.add(
                "v2-repository",
                False,
                "the repository index (an optional extension) is not offered or refused",
                [ev],
            )

        # KServe V1: the model list
        reply, ev = _ask("GET /v1/models", v1.models)
        listing = _json(reply)
        if isinstance(listing, dict) and isinstance(listing.get("models"), list):
            dec.add("v1", True, "GET /v1/models answers a model list", [ev])
            add_names(str(m) for m in listing["models"])
        elif _broken(reply):
            dec.add(
                "v1",
                True,
                "GET /v1/models answers with an error: present, broken",
                [ev],
                broken=True,
            )
        else:
            dec.add("v1", False, "GET /v1/models does not answer a V1 model list", [ev])

        # OpenAI: the models list
        reply, ev = _ask(f"GET {oai.api_base}/models", oai.models)
        cards = _json(reply)
        if isinstance(cards, dict) and ("data" in cards or "object" in cards):
            data = cards.get("data")
            if isinstance(data, list):
                oai_listed = [str(c["id"]) for c in data if isinstance(c, dict) and "id" in c]
                add_names(oai_listed)
            dec.add("openai", True, "the OpenAI models list answers", [ev])
        elif _broken(reply):
            dec.add(
                "openai",
                True,
                "the OpenAI models list answers with an error: present, broken",
                [ev],
                broken=True,
            )
        else:
            dec.add("openai", False, "the OpenAI models list does not answer", [ev])

        # models named with --model are asked about directly: the index is an extension
        for name in declared:
            if name not in names:
                _probe_declared(dec, v2, v1, name, names, metadata, meta_evidence)

        # every model's V2 metadata: versions, encoding, task
        if dec.has("v2-rest"):
            for name in names:
                if name in metadata:
                    continue
                reply, ev = _ask(f"GET /v2/models/{name}", partial(v2.model_metadata, name))
                metadata[name] = _json(reply)
                meta_evidence[name] = ev

        for name in names:
            info = models.get(name) or ModelInfo(name=name, task=None, task_source="name")
            if name in declared and declared[name]:
                info = replace(info, task=declared[name], task_source="declared")
            elif name not in target.models:
                from_meta = task_from_metadata(metadata.get(name))
                if from_meta:
                    info = replace(info, task=from_meta, task_source="metadata")
                else:
                    info = replace(info, task=task_from_name(name), task_source="name")
            info = replace(info, encodings=encodings_from_metadata(metadata.get(name)))
            models[name] = info
        for name, task in declared.items():
            if task and name in models:
                models[name] = replace(models[name], task=task, task_source="declared")

        _decide_versions(dec, metadata, meta_evidence)
        if dec.has("v2-rest"):
            models = _decide_encodings(dec, v2, models, metadata, meta_evidence)
        else:
            for encoding in (KWARGS, INPUT0):
                dec.add(encoding, False, "the target does not speak V2 over REST")
        _decide_v1_predictions(dec, v1, models)
        if dec.has("openai"):
            _decide_openai(dec, oai, models, oai_listed or list(models))
        else:
            for feature in (
                "openai-completions",
                "openai-chat",
                "openai-stream",
                "openai-stream-usage",
                "openai-embeddings",
            ):
                dec.add(feature, False, "the target has no OpenAI models list")
        if not (dec.has("v2-rest") or dec.has("v1") or dec.has("openai")):
            raise BadTarget(
                f"target {target.http_url} answers (GET /v2/health/live: {live.status}) but "
                "speaks none of V2, V1 or OpenAI there; is the URL the server's base URL?"
            )
    finally:
        v2.close()
        v1.close()
        oai.close()

    _decide_grpc(dec, target)
    _decide_rest(dec, target, models)
    decisions = tuple(dec.by_feature.values())
    features = set(target.features) | {d.feature for d in decisions if d.supported}
    return replace(
        target,
        models=models,
        features=frozenset(features),
        implementation=implementation,
        discovery=decisions,
    )


def _names_model(reply: Reply | None, name: str) -> bool:
    """A 2xx JSON object naming the model (V2 metadata and V1 model status both carry it)."""
    body = _json(reply)
    return isinstance(body, dict) and body.get("name") == name


def _probe_declared(
    dec: _Decisions,
    v2: V2RestClient,
    v1: V1Client,
    name: str,
    names: list[str],
    metadata: dict[str, Any],
    meta_evidence: dict[str, Evidence],
) -> None:
    """Ask for a model named with --model directly: V2 readiness and metadata, V1 status.
    Served when its metadata or V1 status names it, or when it is ready and its metadata is
    broken (5xx); BadTarget listing what was asked and seen otherwise."""
    ready, ready_ev = _ask(f"GET /v2/models/{name}/ready", partial(v2.model_ready, name))
    meta, meta_ev = _ask(f"GET /v2/models/{name}", partial(v2.model_metadata, name))
    status, v1_ev = _ask(f"GET /v1/models/{name}", partial(v1.model, name))
    is_ready = ready is not None and 200 <= ready.status < 300
    if _names_model(meta, name) or (is_ready and _broken(meta)):
        names.append(name)
        metadata[name] = _json(meta)
        meta_evidence[name] = meta_ev
        dec.add(
            "v2-rest",
            True,
            f"--model {name}: its V2 metadata and readiness answer",
            [ready_ev, meta_ev],
            broken=_broken(meta),
        )
    if _names_model(status, name):
        if name not in names:
            names.append(name)
        dec.add("v1", True, f"--model {name}: GET /v1/models/{name} answers its status", [v1_ev])
    if name not in names:
        served = ", ".join(names) or "none found"
        asked = "; ".join(e.line() for e in (ready_ev, meta_ev, v1_ev))
        raise BadTarget(
            f"--model {name}: the target does not serve it (it serves: {served}); asked: {asked}"
        )


def _decide_versions(
    dec: _Decisions, metadata: dict[str, Any], evidence: dict[str, Evidence]
) -> None:
    for name, meta in metadata.items():
        if isinstance(meta, dict) and isinstance(meta.get("versions"), list) and meta["versions"]:
            dec.add(
                "v2-model-versions",
                True,
                f"model {name}'s metadata lists versions {meta['versions']}",
                [evidence[name]],
            )
            return
    dec.add(
        "v2-model-versions",
        False,
        "no model's V2 metadata lists a version",
        [evidence[n] for n in list(metadata)[:3]],
    )


def _decide_encodings(
    dec: _Decisions,
    v2: V2RestClient,
    models: dict[str, ModelInfo],
    metadata: dict[str, Any],
    meta_evidence: dict[str, Evidence],
) -> dict[str, ModelInfo]:
    """Which HuggingFace V2 encoding each model speaks: from its metadata, else from a probe
    with each encoding's documented request. A 5xx to a probe counts as the encoding being
    present and broken only where no model shows an encoding with a 2xx or its metadata."""
    out = dict(models)
    shown: dict[str, list[tuple[str, Evidence]]] = {KWARGS: [], INPUT0: []}
    broken: dict[str, list[Evidence]] = {KWARGS: [], INPUT0: []}
    probed: list[Evidence] = []
    for name, info in models.items():
        if info.encodings:
            for encoding in info.encodings:
                shown[encoding].append(
                    (f"model {name}'s metadata declares it", meta_evidence[name])
                )
            continue
        if info.task not in TASKS or not isinstance(metadata.get(name), dict):
            continue
        found = _probe_encodings(v2, info)
        probed += found.evidence
        for encoding in found.spoken:
            shown[encoding].append(
                (f"model {name} answers the encoding's documented request", found.evidence[-1])
            )
        for encoding in found.broken:
            broken[encoding].append(found.evidence[0])
        if found.spoken:
            out[name] = replace(info, encodings=frozenset(found.spoken))
        elif found.broken:
            out[name] = replace(info, encodings=frozenset(found.broken))
    any_shown = any(shown.values())
    for encoding in (KWARGS, INPUT0):
        if shown[encoding]:
            how = "; ".join(dict.fromkeys(h for h, _ in shown[encoding][:3]))
            dec.add(encoding, True, how, [e for _, e in shown[encoding][:3]])
        elif broken[encoding] and not any_shown:
            dec.add(
                encoding,
                True,
                "the encoding's documented request was answered with an error (present, broken)",
                broken[encoding][:3],
                broken=True,
            )
        else:
            others = [ev for pairs in shown.values() for _, ev in pairs[:1]] if any_shown else []
            dec.add(
                encoding,
                False,
                "no model's metadata declares this encoding and no probe with its documented "
                "request was answered with it"
                + (" (other models show the other encoding)" if any_shown else ""),
                (others + probed)[:4],
            )
    # models whose own encoding is unknown while the server's is shown keep no encoding: the
    # checks pick models that speak what they test
    return out


def _decide_v1_predictions(dec: _Decisions, v1: V1Client, models: dict[str, ModelInfo]) -> None:
    """KServe huggingfaceserver's meaning of V1 predictions: a V1 predict of one text for a
    model of a task that encoding defines answers one prediction."""
    if not dec.has("v1"):
        dec.add("v1-hf-predictions", False, "the target does not speak V1")
        return
    evidence: list[Evidence] = []
    broken = False
    for info in models.values():
        if info.task not in hf_v2_input0.TASKS:
            continue
        body = {"instances": [hf_v2_input0.TEXTS[info.task]]}
        reply, ev = _ask(
            f"POST /v1/models/{info.name}:predict", partial(v1.predict, info.name, body)
        )
        evidence.append(ev)
        answer = _json(reply)
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if isinstance(predictions, list) and len(predictions) == 1:
            dec.add(
                "v1-hf-predictions",
                True,
                f"a V1 predict of one text for {info.name} ({info.task}) answers one prediction",
                [ev],
            )
            return
        broken = broken or _broken(reply)
        if len(evidence) >= _ROUTE_CANDIDATES:
            break
    if broken:
        dec.add(
            "v1-hf-predictions",
            True,
            "a V1 predict of one text was answered with a 5xx or no answer: present, broken",
            evidence,
            broken=True,
        )
    else:
        dec.add(
            "v1-hf-predictions",
            False,
            "no model of a task with a V1 HuggingFace meaning answers a V1 predict of one text"
            if evidence
            else "no served model has a task with a V1 HuggingFace meaning",
            evidence,
        )


def _decide_openai(
    dec: _Decisions,
    oai: OpenAIClient,
    models: dict[str, ModelInfo],
    listed: list[str],
) -> None:
    """Each OpenAI route from a minimal valid request per listed model; streaming from the
    routes that generate text."""
    answered: dict[str, str] = {}
    for route, (feature, _body) in _OPENAI_ROUTES.items():
        candidates = _route_candidates(route, models, listed)
        if not candidates:
            dec.add(feature, False, "the OpenAI models list names no model to ask with")
            continue
        verdict, evidence, model = _probe_route(oai, route, candidates)
        if model:
            answered[route] = model
        if verdict == "present":
            dec.add(
                feature,
                True,
                f"POST {route} with a minimal valid request is answered "
                "(2xx, or a 4xx from a route that exists)",
                evidence,
            )
        elif verdict == "broken":
            dec.add(
                feature,
                True,
                f"POST {route} answered with a 5xx or no answer: present, "
                "broken (its checks run and fail)",
                evidence,
                broken=True,
            )
        else:
            dec.add(
                feature,
                False,
                f"POST {route} answered 404/405 not about the model: the route does not exist",
                evidence,
            )
    # streaming is a parameter of completions and chat (`stream`, `stream_options` are fields
    # of both request schemas), not a route of its own: a server that offers either route owes
    # event streams, so openai-stream follows the routes and the probe only adds evidence
    text_routes = [r for r in ("chat/completions", "completions") if dec.has(_OPENAI_ROUTES[r][0])]
    if not text_routes:
        for feature in ("openai-stream", "openai-stream-usage"):
            dec.add(feature, False, "neither completions nor chat is offered")
        return
    route = next((r for r in text_routes if r in answered), text_routes[0])
    model = answered.get(route) or _route_candidates(route, models, listed)[0]
    ev, is_sse, _status = _probe_stream(oai, route, model, usage=False)
    dec.add(
        "openai-stream",
        True,
        f"{route} is offered and `stream` is part of its request schema; "
        + (
            "a streamed request got an event stream"
            if is_sse
            else "the streamed request did not get an event stream: its checks run and fail"
        ),
        [ev],
        broken=not is_sse,
    )
    ev, has_usage, status = _probe_stream(oai, route, model, usage=True)
    # include_usage is an optional extra of the stream: a usage chunk shows it; a refusal (4xx)
    # or a stream that ignores the option shows a server that does not offer it (as servers
    # that predate the option do); a 5xx or no answer shows it broken, never absent
    if status is None or status >= 500:
        dec.add(
            "openai-stream-usage",
            True,
            "a stream with stream_options.include_usage got a 5xx or no answer: present, broken",
            [ev],
            broken=True,
        )
    elif has_usage:
        dec.add(
            "openai-stream-usage",
            True,
            "a stream with stream_options.include_usage carries a usage chunk",
            [ev],
        )
    else:
        dec.add(
            "openai-stream-usage",
            False,
            "a stream with stream_options.include_usage is refused (4xx) or carries no usage "
            "chunk: the option is not offered",
            [ev],
        )


def _decide_grpc(dec: _Decisions, target: Target) -> None:
    if not target.grpc_address:
        dec.add("v2-grpc", False, "no gRPC address given (--grpc-target)")
        return
    client = V2GrpcClient.for_target(target, timeout=5.0)  # its headers and TLS too
    try:
        reply = client.live()
    except Unreachable as exc:
        raise Unreachable(f"gRPC target {target.grpc_address} does not answer: {exc}") from None
    finally:
        client.close()
    ev = Evidence(
        f"gRPC ServerLive {target.grpc_address}",
        reply.code.name,
        " ".join(reply.details.split())[:EVIDENCE_EXCERPT],
    )
    if reply.ok:
        dec.add("v2-grpc", True, "gRPC ServerLive answers OK", [ev])
    elif reply.code.name == "UNIMPLEMENTED":
        dec.add("v2-grpc", False, "gRPC ServerLive is not implemented there", [ev])
    else:
        dec.add(
            "v2-grpc",
            True,
            "gRPC ServerLive answers with an error: present, broken",
            [ev],
            broken=True,
        )


def _decide_rest(dec: _Decisions, target: Target, models: dict[str, ModelInfo]) -> None:
    """Task features from the models; features discovery does not find by itself; and those the
    launcher of a reference server declared."""
    # every served task, the custom ones (the numeric echo model's) included
    tasks = sorted(set(TASKS) | {m.task for m in models.values() if m.task})
    for task in tasks:
        with_task = sorted(m.name for m in models.values() if m.task == task)
        if with_task:
            sources = sorted({models[n].task_source for n in with_task})
            dec.add(f"task-{task}", True, f"models {', '.join(with_task)} ({', '.join(sources)})")
        else:
            dec.add(
                f"task-{task}",
                False,
                "no served model has this task (a task comes from "
                "--model NAME=TASK, the model's metadata or a name ending in -TASK)",
            )
    dec.add(
        "hardening",
        False,
        "never discovered: good practice beyond the specs, checked "
        "with --profile hardening or --features hardening",
    )
    dec.add(
        "openai-deterministic",
        False,
        "never discovered: the API does not promise "
        "repeatable sampling; declare it with --features openai-deterministic",
    )
    for feature in sorted(target.features):
        if not dec.has(feature):
            dec.by_feature[feature] = Decision(
                feature, True, f"declared by the launcher of {target.name}"
            )
    for name in FEATURES:
        if name not in dec.by_feature:
            dec.add(name, False, "not found by discovery")
