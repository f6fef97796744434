"""V2 checks driven by each model's own metadata, for any model the target serves.

No contract with the model is assumed (unlike the numeric echo model's): each check reads
``GET /v2/models/{m}`` (or gRPC ModelMetadata), builds a request holding every declared input of
its datatype, variable dimensions made small and values well inside the datatype's range
(servegate/protocols/v2_synth.py), and judges the answer against the same metadata and the
protocol. Each check loops over the models and names every model that breaks its rule.

A model whose metadata gives nothing to build from (no inputs declared, one name declared
twice), or whose request is valid only in doubt (BYTES inputs may need content the metadata
cannot describe, such as an image; FP16 as JSON numbers, which the protocol calls problematic,
where the server lacks the binary extension) and that refuses it with an error object, is left
out of the check with that evidence; when every model is left out the check is unsupported. A
model with only numeric inputs sent exactly has no such excuse: any in-range value is valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from servegate.checks import RuleViolation
from servegate.entry.pytest_plugin import effective_features
from servegate.errors import Unreachable
from servegate.protocols import binary_tensor, v2_synth
from servegate.protocols.http import Reply
from servegate.protocols.v2_grpc import GrpcReply, V2GrpcClient
from servegate.protocols.v2_models import InferenceResponse
from servegate.protocols.v2_rest import V2RestClient
from servegate.protocols.v2_synth import ModelSpec, Tensor, Unusable
from servegate.targets import Target
from servegate.unsupported import unsupported

REQUEST_ID = "servegate-metadata-42"


class _Joined:
    """The exchanges of several models as one piece of evidence."""

    def __init__(self, parts: list[str]):
        self.parts = parts

    def describe(self) -> str:
        return "\n".join(self.parts)


@dataclass
class Ledger:
    """Per-model outcomes of one check: failures (with evidence) and models left out."""

    rule: str
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def fail(self, model: str, problem: str, evidence: Any = None) -> None:
        text = evidence.describe() if evidence is not None else ""
        self.failures.append((model, problem, text))

    def leave_out(self, model: str, why: str) -> None:
        self.left_out.append(f"{model}: {why}")

    def done(self, target: Target) -> None:
        """Fail naming every failing model; unsupported when no model could be checked."""
        # the captured output says which models the verdict covers
        print(f"checked: {', '.join(self.checked) or 'none'}")
        for line in self.left_out:
            print(f"left out: {line}")
        if self.failures:
            problem = "\n".join(f"model {m}: {p}" for m, p, _ in self.failures)
            evidence = _Joined([f"[{m}]\n{text}" for m, _, text in self.failures if text])
            raise RuleViolation(self.rule, problem, evidence)
        if not self.checked:
            why = "; ".join(self.left_out) or "it serves no model"
            unsupported(target, (), f"no model's metadata gives a request to check ({why})")


def _has(request: pytest.FixtureRequest, target: Target, feature: str) -> bool:
    return feature in effective_features(request.config, target)


# --- REST ------------------------------------------------------------------------------------


@dataclass
class RestSubject:
    """A model, its metadata and a valid request's tensors."""

    name: str
    spec: ModelSpec
    tensors: list[Tensor]
    #: FP16/BF16 inputs go as JSON numbers (the target lacks the binary extension)
    raw_as_json: bool = False

    @property
    def doubt(self) -> str | None:
        """Why a refusal of the valid request may be the model's right, if it may."""
        if any(t.datatype == "BYTES" for t in self.tensors):
            return "its BYTES inputs may need content the metadata cannot describe"
        if self.raw_as_json and (v2_synth.needs_raw(self.tensors) or self.raw_outputs):
            return (
                "its FP16/BF16 tensors went as JSON numbers, which the protocol calls problematic"
            )
        return None

    @property
    def raw_outputs(self) -> list[str]:
        """Declared outputs with no JSON form (FP16, BF16)."""
        return [o.name for o in self.spec.outputs if o.datatype in v2_synth.RAW_ONLY]


def _rest_subjects(
    target: Target, v2: V2RestClient, ledger: Ledger, binary: bool
) -> Iterator[RestSubject]:
    """Every model whose metadata can be read and synthesised from; the others go to the
    ledger (a metadata request that fails is a failure, an input-less model is left out)."""
    for name in sorted(target.models):
        try:
            reply = v2.model_metadata(name)
        except Unreachable as exc:
            # a server that drops the connection after a failing metadata request (the
            # metadata checks judge that); a server that is gone fails the next request
            ledger.leave_out(name, f"its metadata request got no answer ({exc})")
            continue
        if reply.status != 200:
            # test_model_metadata_describes_every_model fails for it; here it is not judged
            ledger.leave_out(name, f"its metadata answers {reply.status}, not 200")
            continue
        try:
            spec = v2_synth.model_spec(name, reply.json())
            tensors = v2_synth.valid_inputs(spec)
        except Unusable as exc:
            ledger.leave_out(name, str(exc))
            continue
        yield RestSubject(name, spec, tensors, raw_as_json=not binary)


def _send(
    v2: V2RestClient,
    subject: RestSubject,
    tensors: list[Tensor] | None = None,
    **options: Any,
) -> Reply:
    if subject.raw_outputs and not subject.raw_as_json and not options.get("binary_outputs"):
        # FP16/BF16 outputs as binary data, the others as JSON: that takes naming them all
        options.setdefault("outputs", [o.name for o in subject.spec.outputs])
        options["binary_output_names"] = subject.raw_outputs
    body, headers = v2_synth.rest_body(
        subject.tensors if tensors is None else tensors,
        raw_as_json=subject.raw_as_json,
        **options,
    )
    return v2.infer(subject.name, content=body, headers=headers)


def _answered(
    reply: Reply, subject: RestSubject, ledger: Ledger
) -> tuple[dict[str, Any], list[Tensor]] | None:
    """The parsed answer to a valid request; None after recording why there is none.

    An error object (any error status: "typically 400") for a request valid only in doubt
    leaves the model out (see the module's docstring).
    """
    if reply.status == 200:
        try:
            head, outputs = v2_synth.rest_outputs(
                reply.content, reply.headers.get(binary_tensor.HEADER)
            )
        except ValueError as exc:
            ledger.fail(subject.name, f"the answer cannot be read: {exc}", reply)
            return None
        try:
            InferenceResponse.model_validate(head)
        except ValueError as exc:
            ledger.fail(subject.name, f"the answer is not an inference response: {exc}", reply)
            return None
        return head, outputs
    if subject.doubt and reply.status >= 400 and _error_object(reply):
        ledger.leave_out(
            subject.name,
            f"{subject.doubt}, and it refuses the request built from its metadata "
            f"({reply.status} {reply.json()['error'][:120]!r})",
        )
        return None
    ledger.fail(
        subject.name,
        f"a request built from its metadata ({v2_synth.describe(subject.tensors)}) answers "
        f"{reply.status}",
        reply,
    )
    return None


def _error_object(reply: Reply) -> bool:
    """Whether the body is a JSON object with a string "error" (it may hold more)."""
    try:
        body = reply.json()
    except AssertionError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _deterministic(v2: V2RestClient, subject: RestSubject, first: list[Tensor]) -> bool:
    """Whether the same JSON request answers the same values twice (a sampling model does
    not, and then no two transports can be compared)."""
    again = _send(v2, subject)
    if again.status != 200:
        return False
    try:
        _, second = v2_synth.rest_outputs(again.content, again.headers.get(binary_tensor.HEADER))
    except ValueError:
        return False
    return _values(first) == _values(second)


def _values(outputs: list[Tensor]) -> dict[str, tuple[Any, ...]]:
    return {o.name: v2_synth.comparable(o) for o in outputs}


def _value_differences(reference: list[Tensor], other: list[Tensor]) -> list[str]:
    ref, got = _values(reference), _values(other)
    problems = []
    if sorted(ref) != sorted(got):
        problems.append(f"outputs {sorted(got)}, JSON gave {sorted(ref)}")
    for name in sorted(set(ref) & set(got)):
        if ref[name] != got[name]:
            problems.append(f"output {name!r}: {list(got[name])[:6]} vs JSON {list(ref[name])[:6]}")
    return problems


@pytest.mark.features("v2-rest")
def test_metadata_request_gets_the_declared_outputs(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient
) -> None:
    """A request holding every input the metadata declares is answered with outputs the
    metadata declares: their names, datatypes, and shapes the declared shapes allow.

    Spec (OIP, model metadata): "“inputs” : The inputs required by the model." and
    "“outputs” : The outputs produced by the model."; "\\"shape\\" : The shape of the tensor.
    Variable-size dimensions are specified as -1."
    """
    ledger = Ledger("a request built from the metadata is answered with declared outputs")
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        reply = _send(v2, subject)
        answer = _answered(reply, subject, ledger)
        if answer is None:
            continue
        ledger.checked.append(subject.name)
        _, outputs = answer
        problems = v2_synth.output_problems(subject.spec, outputs)
        if not outputs:
            problems.append("the answer has no outputs")
        if problems:
            ledger.fail(subject.name, "; ".join(problems), reply)
    ledger.done(target)


@pytest.mark.features("v2-rest")
def test_metadata_request_id_is_echoed(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient
) -> None:
    """The request's id comes back in the response, for every model.

    Spec (OIP, inference request): "\\"id\\" : An identifier for this request. Optional, but if
    specified this identifier must be returned in the response."
    """
    ledger = Ledger("the request id is returned in the response")
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        reply = _send(v2, subject, request_id=REQUEST_ID)
        answer = _answered(reply, subject, ledger)
        if answer is None:
            continue
        ledger.checked.append(subject.name)
        head, _ = answer
        if head.get("id") != REQUEST_ID:
            ledger.fail(subject.name, f"sent id {REQUEST_ID!r}, got {head.get('id')!r}", reply)
    ledger.done(target)


@pytest.mark.features("v2-rest")
def test_metadata_outputs_filter_is_honoured(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient
) -> None:
    """A request naming one of the model's outputs gets that output and no other.

    Spec (OIP): "\\"outputs\\" : The output tensors requested for this inference." and, of the
    example, "For the above request the inference server must return the “output0” output
    tensor."
    """
    ledger = Ledger("the request's outputs list limits the response to the outputs named")
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        answer = _answered(_send(v2, subject), subject, ledger)
        if answer is None:
            continue
        declared = [o.name for o in answer[1] if subject.spec.output(o.name) is not None]
        if not declared:
            ledger.leave_out(subject.name, "it returns no declared output to ask for")
            continue
        wanted = declared[-1]
        reply = _send(v2, subject, outputs=[wanted])
        filtered = _answered(reply, subject, ledger)
        if filtered is None:
            continue
        ledger.checked.append(subject.name)
        names = [o.name for o in filtered[1]]
        if names != [wanted]:
            ledger.fail(subject.name, f"asked for [{wanted!r}], got {names}", reply)
    ledger.done(target)


@pytest.mark.features("v2-rest", "v2-binary-tensor")
def test_metadata_binary_and_json_give_the_same_values(target: Target, v2: V2RestClient) -> None:
    """The same request sent with binary tensor data both ways is answered with the values
    the JSON request gets.

    Spec (binary tensor data extension): "The binary tensor data extension allows Triton to
    support tensor data represented in a binary format in the body of an HTTP/REST request."
    and "All tensor data types are representable as binary data in the native size of the data
    type." A representation, not other data. (Models that answer one JSON request twice with
    different values are left out: a sampling model has no one answer to compare.)
    """
    ledger = Ledger("binary tensor data and JSON carry the same tensor values")
    for subject in _rest_subjects(target, v2, ledger, binary=True):
        answer = _answered(_send(v2, subject), subject, ledger)
        if answer is None:
            continue
        if not _deterministic(v2, subject, answer[1]):
            ledger.leave_out(subject.name, "two identical JSON requests got different values")
            continue
        reply = _send(v2, subject, binary_inputs=True, binary_outputs=True)
        binary = _answered(reply, subject, ledger)
        if binary is None:
            continue
        ledger.checked.append(subject.name)
        problems = _value_differences(answer[1], binary[1])
        if problems:
            ledger.fail(subject.name, "binary answer differs: " + "; ".join(problems), reply)
    ledger.done(target)


@pytest.mark.features("v2-rest")
@pytest.mark.parametrize("fault", v2_synth.FAULTS)
def test_metadata_derived_bad_request_is_refused_cleanly(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient, fault: str
) -> None:
    """A valid request with one fault is refused with an error status and the protocol's error
    object, or (where the protocol leaves the choice to the server) answered as a valid
    inference; either way the server and the model stay ready. Data that does not fill its
    shape is always refused.

    Spec (OIP): "A failed inference request must be indicated by an HTTP error status
    (typically 400). The HTTP body must contain the $inference_error_response object."; "If the
    input is batched, the shape and data must represent the full shape and contents of the
    entire batch."; "The server can decide to coerce each element to the required type or
    return an error if an unexpected value is received."; "The “server ready” health API
    indicates if all the models are ready for inferencing."
    """
    must_refuse = fault == "data-short-of-shape"
    ledger = Ledger(
        f"a request with a {fault} fault is "
        + ("refused" if must_refuse else "refused or answered")
        + ' cleanly: an error status with {"error": ...}, and the server stays ready'
    )
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        if _answered(_send(v2, subject), subject, ledger) is None:
            continue
        ledger.checked.append(subject.name)
        faulty = v2_synth.faulty_inputs(fault, subject.spec, subject.tensors)
        reply = _send(v2, subject, faulty)
        if reply.status == 200:
            if must_refuse:
                ledger.fail(subject.name, "answered 200: the data does not fill the shape", reply)
                continue
            try:
                head, _ = v2_synth.rest_outputs(
                    reply.content, reply.headers.get(binary_tensor.HEADER)
                )
                InferenceResponse.model_validate(head)
            except ValueError as exc:
                ledger.fail(subject.name, f"a 200 that is not an inference response: {exc}", reply)
                continue
        elif reply.status < 400:
            ledger.fail(subject.name, f"status {reply.status} is neither success nor error", reply)
            continue
        elif not _error_object(reply):
            ledger.fail(subject.name, f'{reply.status} without a {{"error": ...}} body', reply)
            continue
        for probe, what in ((v2.ready(), "the server"), (v2.model_ready(subject.name), "it")):
            if probe.status != 200:
                ledger.fail(
                    subject.name,
                    f"after the {fault} request ({reply.status}) {what} is not ready "
                    f"({probe.status})",
                    probe,
                )
                break
    ledger.done(target)


@pytest.mark.features("v2-rest", "hardening")
@pytest.mark.parametrize("fault", v2_synth.FAULTS)
def test_metadata_derived_bad_request_is_not_a_5xx(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient, fault: str
) -> None:
    """Hardening: a request with one fault derived from the metadata never gets a 5xx (a
    server error says the server broke, not that the request was wrong).

    Spec: beyond it. The protocol says only "A failed inference request must be indicated by
    an HTTP error status (typically 400)."
    """
    ledger = Ledger(f"a request with a {fault} fault gets no 5xx")
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        if _answered(_send(v2, subject), subject, ledger) is None:
            continue
        ledger.checked.append(subject.name)
        reply = _send(v2, subject, v2_synth.faulty_inputs(fault, subject.spec, subject.tensors))
        if reply.status >= 500:
            ledger.fail(subject.name, f"status {reply.status}", reply)
    ledger.done(target)


# --- gRPC ------------------------------------------------------------------------------------


@dataclass
class GrpcSubject:
    name: str
    spec: ModelSpec
    tensors: list[Tensor]


def _grpc_subjects(target: Target, client: V2GrpcClient, ledger: Ledger) -> Iterator[GrpcSubject]:
    for name in sorted(target.models):
        reply = client.model_metadata(name)
        if not reply.ok:
            # test_grpc_model_metadata_describes_every_model fails for it; not judged here
            ledger.leave_out(name, f"ModelMetadata answers {reply.code.name}, not OK")
            continue
        try:
            spec = v2_synth.model_spec(name, reply.message)
            tensors = v2_synth.valid_inputs(spec)
        except Unusable as exc:
            ledger.leave_out(name, str(exc))
            continue
        yield GrpcSubject(name, spec, tensors)


def _grpc_answered(reply: GrpcReply, subject: GrpcSubject, ledger: Ledger) -> list[Tensor] | None:
    if reply.ok:
        return v2_synth.grpc_outputs(reply.message)
    if any(t.datatype == "BYTES" for t in subject.tensors):
        # "OK indicates success and other codes indicate failure": any code may refuse
        ledger.leave_out(
            subject.name,
            "its BYTES inputs may need content the metadata cannot describe, and it refuses "
            f"the request built from its metadata ({reply.code.name} {reply.details[:120]})",
        )
        return None
    ledger.fail(
        subject.name,
        f"a request built from its metadata ({v2_synth.describe(subject.tensors)}) answers "
        f"{reply.code.name}: {reply.details}",
        reply,
    )
    return None


def _grpc_infer(client: V2GrpcClient, subject: GrpcSubject, **options: Any) -> GrpcReply:
    return client.infer(v2_synth.grpc_request(subject.name, subject.tensors, **options))


@pytest.mark.features("v2-grpc")
def test_metadata_grpc_request_gets_the_declared_outputs(
    target: Target, v2_grpc: V2GrpcClient
) -> None:
    """Over gRPC, a request holding every input ModelMetadata declares is answered with
    outputs it declares: names, datatypes, and shapes the declared shapes allow.

    Spec (grpc_predict_v2.proto, ModelMetadataResponse): "// The model's inputs." / "// The
    model's outputs."; TensorMetadata: "// The tensor shape. A variable-size dimension is
    represented by a -1 value."
    """
    ledger = Ledger("a gRPC request built from the metadata is answered with declared outputs")
    for subject in _grpc_subjects(target, v2_grpc, ledger):
        reply = _grpc_infer(v2_grpc, subject)
        outputs = _grpc_answered(reply, subject, ledger)
        if outputs is None:
            continue
        ledger.checked.append(subject.name)
        problems = v2_synth.output_problems(subject.spec, outputs)
        if not outputs:
            problems.append("the answer has no outputs")
        if problems:
            ledger.fail(subject.name, "; ".join(problems), reply)
    ledger.done(target)


@pytest.mark.features("v2-grpc")
def test_metadata_grpc_request_id_is_echoed(target: Target, v2_grpc: V2GrpcClient) -> None:
    """Over gRPC, the request's id comes back in the response.

    Spec (grpc_predict_v2.proto, ModelInferRequest): "// Optional identifier for the request.
    If specified will be returned in the response."
    """
    ledger = Ledger("ModelInfer returns the request id")
    for subject in _grpc_subjects(target, v2_grpc, ledger):
        reply = _grpc_infer(v2_grpc, subject, request_id=REQUEST_ID)
        if _grpc_answered(reply, subject, ledger) is None:
            continue
        ledger.checked.append(subject.name)
        if reply.message.id != REQUEST_ID:
            ledger.fail(subject.name, f"sent id {REQUEST_ID!r}, got {reply.message.id!r}", reply)
    ledger.done(target)


@pytest.mark.features("v2-grpc")
def test_metadata_grpc_outputs_filter_is_honoured(target: Target, v2_grpc: V2GrpcClient) -> None:
    """Over gRPC, a request naming one of the model's outputs gets that output only.

    Spec (grpc_predict_v2.proto, ModelInferRequest): "// The requested output tensors for the
    inference. Optional, if not specified all outputs produced by the model will be returned."
    """
    ledger = Ledger("ModelInfer's outputs list limits the response to the outputs named")
    for subject in _grpc_subjects(target, v2_grpc, ledger):
        outputs = _grpc_answered(_grpc_infer(v2_grpc, subject), subject, ledger)
        if outputs is None:
            continue
        declared = [o.name for o in outputs if subject.spec.output(o.name) is not None]
        if not declared:
            ledger.leave_out(subject.name, "it returns no declared output to ask for")
            continue
        wanted = declared[-1]
        reply = _grpc_infer(v2_grpc, subject, outputs=[wanted])
        filtered = _grpc_answered(reply, subject, ledger)
        if filtered is None:
            continue
        ledger.checked.append(subject.name)
        names = [o.name for o in filtered]
        if names != [wanted]:
            ledger.fail(subject.name, f"asked for [{wanted!r}], got {names}", reply)
    ledger.done(target)


@pytest.mark.features("v2-rest", "v2-grpc")
def test_metadata_grpc_and_json_give_the_same_values(
    request: pytest.FixtureRequest, target: Target, v2: V2RestClient, v2_grpc: V2GrpcClient
) -> None:
    """The same request over gRPC and over REST is answered with the same tensor values.

    Spec (grpc_predict_v2.proto): "The GRPC API closely follows the concepts defined in the
    HTTP/REST API." with ModelInfer performing "inference using a specific model" as POST
    .../infer does. (Models that answer one request twice with different values are left out.)
    """
    ledger = Ledger("gRPC and REST carry the same tensor values")
    for subject in _rest_subjects(target, v2, ledger, _has(request, target, "v2-binary-tensor")):
        answer = _answered(_send(v2, subject), subject, ledger)
        if answer is None:
            continue
        if not _deterministic(v2, subject, answer[1]):
            ledger.leave_out(subject.name, "two identical JSON requests got different values")
            continue
        grpc_subject = GrpcSubject(subject.name, subject.spec, subject.tensors)
        reply = _grpc_infer(v2_grpc, grpc_subject)
        outputs = _grpc_answered(reply, grpc_subject, ledger)
        if outputs is None:
            continue
        ledger.checked.append(subject.name)
        problems = _value_differences(answer[1], outputs)
        if problems:
            ledger.fail(subject.name, "gRPC answer differs: " + "; ".join(problems), reply)
    ledger.done(target)
