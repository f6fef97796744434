"""Discovery by real requests, against small fake servers run in this process: a 5xx never makes
a feature unsupported, a 404 about the model shows a route that exists, ``--model`` works without
the repository index, the HuggingFace V2 encoding comes from the model and not from the server's
name, every decision reaches the report, and an unreachable target has its own exit code."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from servegate.discovery import discover, encodings_from_metadata
from servegate.entry.cli import main as cli_main
from servegate.exit_codes import TARGET_UNREACHABLE
from servegate.reference_servers.local import free_port
from servegate.targets import Target

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE = ROOT / "conformance"


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` on a free local port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _run(tmp: Path, url: str, files: list[Path], *args: str) -> tuple[int, dict[str, Any]]:
    """The suite in this process against ``url``: (exit code, the target's JSON report)."""
    tmp.mkdir(parents=True, exist_ok=True)
    empty = tmp / "no-deviations.yaml"
    empty.write_text("deviations: []\n")
    reports = tmp / "reports"
    code = pytest.main(
        [
            *map(str, files),
            "-qq",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:hypothesispytest",
            "--assert=plain",
            f"--target={url}",
            f"--reports-dir={reports}",
            f"--deviations={empty}",
            *args,
        ]
    )
    found = sorted(reports.glob("conformance-*.json"))
    return int(code), json.loads(found[0].read_text()) if found else {}


def _decision(target: Target, feature: str):
    decision = target.decision(feature)
    assert decision is not None, f"no decision about {feature}"
    return decision


# -- an OpenAI server whose chat route answers 500 to everything ------------------------------

GENERATIVE = "acme-text-generation"


async def _models(request: Request) -> Response:
    return JSONResponse(
        {"object": "list", "data": [{"id": GENERATIVE, "object": "model", "owned_by": "acme"}]}
    )


async def _always_500(request: Request) -> Response:
    return PlainTextResponse("Internal Server Error", status_code=500)


async def _model_404(request: Request) -> Response:
    """A route that exists but knows no model: OpenAI's error for an unknown model."""
    body = await request.json()
    return JSONResponse(
        {
            "error": {
                "message": f"The model `{body.get('model')}` does not exist",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        },
        status_code=404,
    )


def openai_app() -> Starlette:
    """Models list, chat answering 500 to everything, completions answering "model not found"
    with 404, and no embeddings route at all (Starlette's plain 404)."""
    return Starlette(
        routes=[
            Route("/v1/models", _models),
            Route("/v1/chat/completions", _always_500, methods=["POST"]),
            Route("/v1/completions", _model_404, methods=["POST"]),
        ]
    )


def test_a_route_answering_500_is_present_and_broken_never_unsupported() -> None:
    with serving(openai_app()) as url:
        target = discover(Target(name="acme", http_url=url, openai_base="/v1"))
    chat = _decision(target, "openai-chat")
    assert chat.supported and chat.broken
    assert chat.evidence and chat.evidence[0].status == 500
    assert "POST" in chat.evidence[0].request and "chat/completions" in chat.evidence[0].request
    assert "openai-chat" in target.features
    # streaming is a parameter of chat: present (its checks will run and fail)
    assert "openai-stream" in target.features


def test_a_404_about_the_model_means_the_route_exists_and_a_plain_404_that_it_does_not() -> None:
    with serving(openai_app()) as url:
        target = discover(Target(name="acme", http_url=url, openai_base="/v1"))
    completions = _decision(target, "openai-completions")
    assert completions.supported and not completions.broken
    assert completions.evidence[0].status == 404
    assert "does not exist" in completions.evidence[0].excerpt
    embeddings = _decision(target, "openai-embeddings")
    assert not embeddings.supported
    assert embeddings.evidence and embeddings.evidence[0].status == 404
    assert "openai-embeddings" not in target.features


def test_chat_checks_run_and_fail_on_a_500_route_and_the_openai_profile_fails(
    tmp_path: Path,
) -> None:
    with serving(openai_app()) as url:
        code, report = _run(
            tmp_path,
            url,
            [CONFORMANCE / "test_openai_chat.py"],
            "--openai-base=/v1",
            "--profile=openai",
        )
    assert code == pytest.ExitCode.TESTS_FAILED
    assert any(c["outcome"] == "failed" for c in report["cases"])
    # none is unsupported for want of the chat route (only for a task or an undeclared promise)
    lacking = [
        f
        for c in report["cases"]
        if c["outcome"] == "unsupported"
        for f in c["unsupported"]["features"]
    ]
    assert "openai-chat" not in lacking and "openai-stream" not in lacking, lacking
    failed = [c for c in report["cases"] if c["outcome"] == "failed"]
    assert any(c["failure"]["exchange"]["status"] == 500 for c in failed if c["failure"])
    profile = next(p for p in report["profiles"] if p["name"] == "openai")
    assert profile["result"] == "failure"
    # the decision and its evidence are in the report
    chat = next(d for d in report["implementation"]["discovery"] if d["feature"] == "openai-chat")
    assert chat["supported"] and chat["broken"]
    assert chat["evidence"][0]["status"] == 500


async def _chat_ignoring_include_usage(request: Request) -> Response:
    """Chat that streams, but predates stream_options: include_usage is ignored."""
    body = await request.json()
    message = {"role": "assistant", "content": "Hello"}
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            }
        )
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": body.get("model"),
        "choices": [{"index": 0, "delta": message, "finish_reason": "length"}],
    }
    text = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    return Response(text, media_type="text/event-stream")


def test_a_stream_that_ignores_include_usage_does_not_offer_it() -> None:
    app = Starlette(
        routes=[
            Route("/v1/models", _models),
            Route("/v1/chat/completions", _chat_ignoring_include_usage, methods=["POST"]),
        ]
    )
    with serving(app) as url:
        target = discover(Target(name="acme", http_url=url, openai_base="/v1"))
    stream = _decision(target, "openai-stream")
    assert stream.supported and not stream.broken
    usage = _decision(target, "openai-stream-usage")
    assert not usage.supported
    assert usage.evidence[0].status == 200 and "include_usage" in usage.evidence[0].request


# -- a V2 server without the repository index, named like neither reference ------------------

IDENTITY = "identity"
SENTIMENT = "sentiment"
PLAIN = "plain-bert"


async def _live(request: Request) -> Response:
    return JSONResponse({"live": True})


async def _server_meta(request: Request) -> Response:
    return JSONResponse({"name": "acme-runtime", "version": "2.0", "extensions": []})


async def _index(request: Request) -> Response:
    # as Triton answers without its access token: the extension is restricted
    return JSONResponse({"error": "This API is restricted"}, status_code=400)


_METADATA = {
    IDENTITY: {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1]}],
    },
    # MLServer's HuggingFace runtime describes its inputs as pipeline arguments
    SENTIMENT: {
        "inputs": [
            {
                "name": "args",
                "datatype": "BYTES",
                "shape": [-1],
                "parameters": {"content_type": "str"},
            }
        ],
        "outputs": [],
    },
    # says nothing of its encoding: a probe must tell
    PLAIN: {"inputs": [], "outputs": []},
}


async def _model_meta(request: Request) -> Response:
    name = request.path_params["model"]
    if name not in _METADATA:
        return JSONResponse({"error": f"model {name} not found"}, status_code=404)
    return JSONResponse({"name": name, "platform": "acme", "versions": [], **_METADATA[name]})


async def _model_ready(request: Request) -> Response:
    name = request.path_params["model"]
    if name not in _METADATA:
        return JSONResponse({"error": f"model {name} not found"}, status_code=404)
    return JSONResponse({"name": name, "ready": True})


async def _infer(request: Request) -> Response:
    """MLServer's encoding: inputs named after pipeline arguments, one BYTES `output`."""
    name = request.path_params["model"]
    body = await request.json()
    names = [i.get("name") for i in body.get("inputs", [])]
    if name == PLAIN and names and names[0] in ("args", "array_inputs"):
        item = json.dumps({"label": "POSITIVE", "score": 0.9})
        return JSONResponse(
            {
                "model_name": name,
                "outputs": [
                    {
                        "name": "output",
                        "datatype": "BYTES",
                        "shape": [1, 1],
                        "parameters": {"content_type": "hg_jsonlist"},
                        "data": [item],
                    }
                ],
            }
        )
    return JSONResponse({"error": f"unexpected inputs {names}"}, status_code=400)


def v2_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v2/health/live", _live),
            Route("/v2/health/ready", _live),
            Route("/v2", _server_meta),
            Route("/v2/repository/index", _index, methods=["POST"]),
            Route("/v2/models/{model}", _model_meta),
            Route("/v2/models/{model}/ready", _model_ready),
            Route("/v2/models/{model}/infer", _infer, methods=["POST"]),
        ]
    )


def test_model_option_works_without_the_repository_index() -> None:
    with serving(v2_app()) as url:
        target = discover(Target(name="acme", http_url=url), {IDENTITY: None})
    assert IDENTITY in target.models
    assert target.models[IDENTITY].task is None
    assert "v2-rest" in target.features
    repository = _decision(target, "v2-repository")
    assert not repository.supported
    assert repository.evidence[0].status == 400
    assert "restricted" in repository.evidence[0].excerpt


def test_v2_checks_run_with_model_option_and_repository_checks_are_unsupported(
    tmp_path: Path,
) -> None:
    with serving(v2_app()) as url:
        code, report = _run(
            tmp_path,
            url,
            [CONFORMANCE / "test_v2_repository.py", CONFORMANCE / "test_health.py"],
            f"--model={IDENTITY}",
        )
    assert code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), code
    repository = [c for c in report["cases"] if "test_v2_repository" in c["nodeid"]]
    assert repository and all(c["outcome"] == "unsupported" for c in repository)
    evidence = repository[0]["unsupported"]
    assert evidence["features"] == ["v2-repository"]
    assert evidence["decisions"][0]["evidence"][0]["status"] == 400
    assert any(c["outcome"] == "passed" for c in report["cases"])


def test_the_mlserver_encoding_is_found_on_a_server_named_otherwise() -> None:
    with serving(v2_app()) as url:
        target = discover(
            Target(name="acme", http_url=url),
            {SENTIMENT: "text-classification", PLAIN: "text-classification"},
        )
    assert "acme-runtime" in target.implementation
    assert "hf-v2-kwargs" in target.features
    assert target.models[SENTIMENT].encodings == {"hf-v2-kwargs"}  # from its metadata
    assert target.models[PLAIN].encodings == {"hf-v2-kwargs"}  # from a probe
    kwargs = _decision(target, "hf-v2-kwargs")
    assert kwargs.supported and kwargs.evidence
    input0 = _decision(target, "hf-v2-input0")
    assert not input0.supported and input0.evidence


def test_the_kwargs_checks_run_on_that_server(tmp_path: Path) -> None:
    with serving(v2_app()) as url:
        _code, report = _run(
            tmp_path,
            url,
            [CONFORMANCE / "test_v2_tasks.py"],
            f"--model={PLAIN}=text-classification",
            "-k",
            "kwargs_outputs_are_declared and text-classification",
        )
    cases = report["cases"]
    assert cases, "no kwargs check ran"
    # run, not unsupported: this fake's metadata declares no `output`, so the check fails
    assert {c["outcome"] for c in cases} == {"failed"}, [c["message"] for c in cases]


def test_metadata_of_each_encoding_is_recognised() -> None:
    mlserver = {"inputs": [{"name": "array_inputs", "datatype": "BYTES", "shape": [-1]}]}
    kserve = {"inputs": [], "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}]}
    numeric = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}], "outputs": []}
    assert encodings_from_metadata(mlserver) == {"hf-v2-kwargs"}
    assert encodings_from_metadata(kserve) == {"hf-v2-input0"}
    assert encodings_from_metadata(numeric) == frozenset()
    assert encodings_from_metadata(None) == frozenset()


# -- hardening is asked for, never discovered --------------------------------------------------

HARDENING_CHECK = '''
import pytest

@pytest.mark.features("v2-rest", "hardening")
def test_good_practice(target):
    """A stand-in for a hardening check."""
'''


def test_hardening_checks_are_skipped_unless_requested(tmp_path: Path) -> None:
    check = tmp_path / "test_hardening_stand_in.py"
    check.write_text(HARDENING_CHECK)
    with serving(v2_app()) as url:
        _code, plain = _run(tmp_path / "a", url, [check], f"--model={IDENTITY}")
        _code, asked = _run(
            tmp_path / "b", url, [check], f"--model={IDENTITY}", "--features=hardening"
        )
    (case,) = plain["cases"]
    assert case["outcome"] == "skipped"
    assert "not requested (--profile hardening)" in case["message"]
    assert "hardening" not in plain["implementation"]["discovered_features"]
    assert [c["outcome"] for c in asked["cases"]] == ["passed"]


# -- a target that does not answer -------------------------------------------------------------


def test_unreachable_target_exits_with_its_code_and_the_gate_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = _run(tmp_path, url, [CONFORMANCE / "test_health.py"])
    assert code == TARGET_UNREACHABLE
    assert report["error"]["kind"] == "unreachable"
    assert report["result"] == "failure"
    capsys.readouterr()
    gate = cli_main(["--reports-dir", str(tmp_path / "reports"), "gate"])
    out = capsys.readouterr().out
    assert gate == 1
    assert "not tested (unreachable" in out.splitlines()[0]
