"""The models the deviation server serves, protocol-neutral (REST and gRPC share them).

- ``numeric-echo``: echoes every input (any V2 datatype) and adds ``<name>_sum`` (FP64, [1]) for
  each numeric input, like the MLServer reference's custom runtime;
- ``fake-<task>``: answers a HuggingFace task without a model, deterministically, in either
  encoding: MLServer's (inputs named after pipeline arguments, one BYTES ``output`` of JSON
  strings) when an input is named like a pipeline argument, KServe's (``inputs[0]`` strings,
  ``output-0``) otherwise.

Input validation is the server's (it is what the bad-input checks exercise); switches that
change what a model answers are declared here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.deviation_server.switches import BOARD, switch

DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
INT_RANGES = {
    dt: (int(np.iinfo(dt.lower()).min), int(np.iinfo(dt.lower()).max))
    for dt in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
}
FLOAT_DTYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
SUM_SUFFIX = "_sum"

NUMERIC_MODEL = "numeric-echo"
NUMERIC_VERSION = "1"
TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "text-generation",
    "text2text-generation",
    "feature-extraction",
    "image-classification",
)
LABELS = ("NEGATIVE", "POSITIVE")
NER_LABELS = ("O", "B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC", "I-LOC")
HIDDEN = 8
MASK = "[MASK]"
#: input names by which a request shows MLServer's encoding (pipeline arguments)
KWARG_NAMES = {"args", "array_inputs", "inputs", "question", "context", "images"}

SUM_WRONG = switch(
    "sum-wrong",
    "v2-tensors",
    "the numeric model's _sum output is off by one",
    ["test_numeric_sum_output_is_the_sum"],
)
INT64_VIA_FLOAT = switch(
    "int64-via-float",
    "v2-tensors",
    "64-bit integers pass through a float64 (precision lost)",
    [
        "test_datatype_round_trips_flat[INT64*]",
        "test_datatype_round_trips_flat[UINT64*]",
        "test_rest_hypothesis_round_trip_is_exact",
    ],
)
FP64_VIA_FP32 = switch(
    "fp64-via-fp32",
    "v2-tensors",
    "FP64 tensors are rounded to float32",
    ["test_datatype_round_trips_flat[FP64*]", "test_rest_hypothesis_round_trip_is_exact"],
)
BOOL_AS_INT = switch(
    "bool-as-int",
    "v2-tensors",
    "BOOL outputs carry 0/1 numbers instead of true/false",
    ["test_datatype_round_trips_flat[BOOL*]", "test_response_tensors_are_well_formed"],
)
BYTES_UPPERCASED = switch(
    "bytes-uppercased",
    "v2-tensors",
    "BYTES elements come back changed",
    ["test_datatype_round_trips_flat[BYTES*]"],
)
NESTED_REJECTED = switch(
    "nested-rejected",
    "v2-tensors",
    "nested (multi-dimensional) JSON data is refused",
    ["test_datatype_round_trips_nested"],
)
SHAPE_MISMATCH = switch(
    "response-shape-mismatch",
    "v2-tensors",
    "an output's shape does not match its element count",
    ["test_response_tensors_are_well_formed", "test_grpc_response_tensors_are_well_formed"],
)
DATATYPE_MISLABELLED = switch(
    "datatype-mislabelled",
    "v2-tensors",
    "FP32 outputs are labelled INT8 (values do not fit)",
    ["test_response_tensors_are_well_formed", "test_grpc_response_tensors_are_well_formed"],
)
DATATYPE_UNKNOWN = switch(
    "datatype-unknown-name",
    "v2-tensors",
    "INT32 outputs are labelled with a non-V2 name",
    ["test_response_tensors_are_well_formed", "test_grpc_response_tensors_are_well_formed"],
)

LABEL_EMPTY = switch(
    "label-empty",
    "v2-tasks",
    "classification labels are empty strings",
    [
        "test_v2_pipeline_result_is_meaningful[text-classification*]",
        "test_v2_kwargs_grpc_result_is_meaningful[text-classification*]",
    ],
)
SCORE_OUT_OF_RANGE = switch(
    "score-out-of-range",
    "v2-tasks",
    "classification scores above 1",
    ["test_v2_pipeline_result_is_meaningful[text-classification*]"],
)
ENTITIES_EMPTY = switch(
    "entities-empty",
    "v2-tasks",
    "token-classification finds no entity in a sentence full of names",
    [
        "test_v2_pipeline_result_is_meaningful[token-classification*]",
        "test_v2_kwargs_grpc_result_is_meaningful[token-classification*]",
    ],
)
ENTITY_OFFSETS_WRONG = switch(
    "entity-offsets-wrong",
    "v2-tasks",
    "token-classification end offsets shifted by one",
    ["test_v2_pipeline_result_is_meaningful[token-classification*]"],
)
QA_NOT_A_SLICE = switch(
    "qa-answer-not-a-slice",
    "v2-tasks",
    "the QA answer is not context[start:end]",
    ["test_v2_pipeline_result_is_meaningful[question-answering*]"],
)
FILL_MASK_ASCENDING = switch(
    "fill-mask-ascending",
    "v2-tasks",
    "fill-mask candidates are worst first",
    ["test_v2_pipeline_result_is_meaningful[fill-mask*]"],
)
GENERATION_DROPS_PROMPT = switch(
    "generation-drops-prompt",
    "v2-tasks",
    "text-generation returns only the new text",
    ["test_v2_pipeline_result_is_meaningful[text-generation*]"],
)
TEXT2TEXT_NO_TEXT = switch(
    "text2text-no-text",
    "v2-tasks",
    "text2text-generation answers without generated_text",
    ["test_v2_pipeline_result_is_meaningful[text2text-generation*]"],
)
EMBEDDING_RAGGED = switch(
    "embedding-ragged",
    "v2-tasks",
    "embedding vectors of different lengths",
    [
        "test_v2_pipeline_result_is_meaningful[feature-extraction*]",
        "test_v2_input0_result_is_meaningful[feature-extraction*]",
    ],
)
IMAGE_LABEL_EMPTY = switch(
    "image-label-empty",
    "v2-tasks",
    "image-classification labels are empty",
    ["test_v2_pipeline_result_is_meaningful[image-classification*]"],
)
KWARGS_OUTPUT_MISNAMED = switch(
    "kwargs-output-misnamed",
    "v2-tasks",
    "the MLServer-encoded result is not named 'output'",
    ["test_v2_pipeline_result_is_meaningful", "test_mlserver_documented_example_is_answered"],
)
CLASS_ID_NEGATIVE = switch(
    "class-id-negative",
    "v2-tasks",
    "KServe-encoded class ids are negative",
    ["test_v2_input0_result_is_meaningful[text-classification*]"],
)
TOKEN_IDS_FLAT = switch(
    "token-ids-flat",
    "v2-tasks",
    "KServe-encoded token label ids lose the [N, 1, seq] shape",
    ["test_v2_input0_result_is_meaningful[token-classification*]"],
)
FILL_TOKEN_EMPTY = switch(
    "fill-token-empty",
    "v2-tasks",
    "KServe-encoded fill-mask tokens are empty",
    ["test_v2_input0_result_is_meaningful[fill-mask*]"],
)
EMBEDDING_NOT_UNIT = switch(
    "embedding-not-unit",
    "v2-tasks",
    "KServe-encoded embeddings are not L2-normalised",
    ["test_v2_input0_result_is_meaningful[feature-extraction*]"],
)
INPUT0_BATCH_IGNORED = switch(
    "input0-batch-ignored",
    "v2-tasks",
    "KServe-encoded requests answer only the first text",
    ["test_v2_input0_batch_gives_one_row_per_text", "test_kserve_documented_example_is_answered"],
)
METADATA_OUTPUTS_MISNAMED = switch(
    "metadata-outputs-misnamed",
    "v2-tasks",
    "task models' metadata declares an output named differently from the one returned",
    [
        "test_kwargs_outputs_are_declared_in_model_metadata",
        "test_input0_outputs_are_declared_in_model_metadata",
    ],
)
INPUT0_OUTPUT_MISNAMED = switch(
    "input0-output-misnamed",
    "v2-tasks",
    "KServe-encoded outputs are not named output-0",
    ["test_v2_input0_result_is_meaningful", "test_kserve_documented_example_is_answered"],
)


class InvalidInput(Exception):
    """A request the server refuses: REST 400 / gRPC INVALID_ARGUMENT."""


class NotFound(Exception):
    """An unknown model or version: REST 404 / gRPC NOT_FOUND."""


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    #: flat, row-major; BYTES elements are ``bytes``
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    name: str
    task: str | None
    versions: tuple[str, ...] = ()

    @property
    def platform(self) -> str:
        return "servegate-deviation" if self.task is None else "hf-fake"

    def metadata_tensors(self) -> tuple[list[dict], list[dict]]:
        """(inputs, outputs) tensor metadata."""
        if self.task is None:
            ins = [{"name": dt.lower(), "datatype": dt, "shape": [-1]} for dt in DATATYPES]
            outs = ins + [
                {"name": dt.lower() + SUM_SUFFIX, "datatype": "FP64", "shape": [1]}
                for dt in DATATYPES
                if dt != "BYTES"
            ]
            return ins, outs
        # it answers in both encodings, so it declares both encodings' outputs
        outs = [
            {"name": "output", "datatype": "BYTES", "shape": [-1, 1]},
            {
                "name": "output-0",
                "datatype": "BYTES"
                if self.task == "fill-mask"
                else "FP64"
                if self.task == "feature-extraction"
                else "INT64",
                "shape": [-1],
            },
        ]
        if BOARD.on(METADATA_OUTPUTS_MISNAMED):
            outs[0]["name"] = "outputs"
        return [{"name": "args", "datatype": "BYTES", "shape": [-1]}], outs


MODELS: dict[str, Model] = {
    NUMERIC_MODEL: Model(NUMERIC_MODEL, None, (NUMERIC_VERSION,)),
    **{f"fake-{t}": Model(f"fake-{t}", t) for t in TASKS},
}


def find_model(name: str, version: str = "") -> Model:
    model = MODELS.get(name)
    if model is None:
        raise NotFound(f"model {name!r} not found")
    if version and version not in model.versions:
        raise NotFound(f"model {name!r} has no version {version!r}")
    return model


def element_count(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def validate(tensor: Tensor) -> None:
    """Refuse a tensor whose datatype, shape or values are wrong (InvalidInput)."""
    if not tensor.name:
        raise InvalidInput("an input has no name")
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}")
    for dim in tensor.shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise InvalidInput(f"input {tensor.name!r}: bad dimension {dim!r} in the shape")
    if element_count(tensor.shape) != len(tensor.data):
        raise InvalidInput(
            f"input {tensor.name!r}: shape {tensor.shape} needs "
            f"{element_count(tensor.shape)} elements, got {len(tensor.data)}"
        )
    dt = tensor.datatype
    for value in tensor.data:
        if dt == "BYTES":
            ok = isinstance(value, bytes)
        elif dt == "BOOL":
            ok = isinstance(value, bool)
        elif dt in INT_RANGES:
            lo, hi = INT_RANGES[dt]
            ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        else:
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        if not ok:
            raise InvalidInput(f"input {tensor.name!r}: element {value!r} is not a {dt}")


def infer(model: Model, inputs: list[Tensor], requested: list[str] | None) -> list[Tensor]:
    """Validate ``inputs`` and run ``model``; ``requested`` limits the outputs (None: all)."""
    if not inputs:
        raise InvalidInput("the request has no inputs")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InvalidInput(f"input names repeat: {names}")
    for tensor in inputs:
        validate(tensor)
    produced = _numeric(inputs) if model.task is None else _task(model.task, inputs)
    if requested is None:
        return produced
    by_name = {t.name: t for t in produced}
    unknown = [n for n in requested if n not in by_name]
    if unknown:
        raise InvalidInput(
            f"requested output(s) {unknown} are not produced; available: {sorted(by_name)}"
        )
    return [by_name[n] for n in requested]


def _numeric(inputs: list[Tensor]) -> list[Tensor]:
    out = []
    for t in inputs:
        data = list(t.data)
        datatype = t.datatype
        if t.datatype in FLOAT_DTYPES:
            # the declared precision, as a model sees it
            data = np.asarray(data, dtype=np.float64).astype(FLOAT_DTYPES[t.datatype]).tolist()
            if t.datatype == "FP64" and BOARD.on(FP64_VIA_FP32):
                data = np.asarray(data, dtype=np.float32).astype(np.float64).tolist()
        if t.datatype in ("INT64", "UINT64") and BOARD.on(INT64_VIA_FLOAT):
            data = [int(float(v)) for v in data]
        if t.datatype == "BOOL" and BOARD.on(BOOL_AS_INT):
            data = [int(v) for v in data]
        if t.datatype == "BYTES" and BOARD.on(BYTES_UPPERCASED):
            data = [v.upper() + b"!" for v in data]
        shape = list(t.shape)
        if BOARD.on(SHAPE_MISMATCH):
            shape = shape + [2]
        if t.datatype == "FP32" and BOARD.on(DATATYPE_MISLABELLED):
            datatype = "INT8"
            data = [v + 1000.5 for v in data]
        if t.datatype == "INT32" and BOARD.on(DATATYPE_UNKNOWN):
            datatype = "INTEGER32"
        params = (
            {"content_type": t.parameters["content_type"]} if "content_type" in t.parameters else {}
        )
        out.append(Tensor(t.name, datatype, shape, data, params))
        if t.datatype != "BYTES":
            total = math.fsum(float(v) for v in t.data)
            if BOARD.on(SUM_WRONG):
                total += 1
            out.append(Tensor(t.name + SUM_SUFFIX, "FP64", [1], [total]))
    return out


def _unit(seed: str, size: int = HIDDEN) -> list[float]:
    digest = hashlib.sha256(seed.encode()).digest()
    vec = [b / 255.0 + 0.01 for b in digest[:size]]
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec]


def _texts(tensor: Tensor) -> list[str]:
    try:
        return [v.decode() for v in tensor.data]
    except (AttributeError, UnicodeDecodeError):
        raise InvalidInput(f"input {tensor.name!r}: expected UTF-8 BYTES text") from None


def _task(task: str, inputs: list[Tensor]) -> list[Tensor]:
    if any(t.name in KWARG_NAMES for t in inputs):
        return _kwargs_answer(task, {t.name: t for t in inputs})
    return _input0_answer(task, inputs[0])


def _kwargs_answer(task: str, by_name: dict[str, Tensor]) -> list[Tensor]:
    """MLServer's encoding: one BYTES output ``output`` [N, 1] of JSON items."""

    def text_of(*names: str) -> str:
        for name in names:
            if name in by_name:
                texts = _texts(by_name[name])
                if texts:
                    return texts[0]
        raise InvalidInput(f"{task} needs one of the inputs {list(names)}")

    items: list[Any]
    if task in ("text-classification", "image-classification"):
        if task == "image-classification":
            text_of("images", "inputs", "args")
        label = (
            ""
            if BOARD.on(LABEL_EMPTY if task == "text-classification" else IMAGE_LABEL_EMPTY)
            else LABELS[1]
        )
        score = 1.5 if BOARD.on(SCORE_OUT_OF_RANGE) else 0.75
        items = [{"label": label, "score": score}]
    elif task == "token-classification":
        text = text_of("args", "inputs")
        items = []
        for i, m in enumerate([] if BOARD.on(ENTITIES_EMPTY) else re.finditer(r"\w+", text)):
            end = m.end() + (1 if BOARD.on(ENTITY_OFFSETS_WRONG) else 0)
            items.append(
                {
                    "entity": NER_LABELS[1 + i % 6],
                    "score": 0.5,
                    "index": i + 1,
                    "word": m.group(0).lower(),
                    "start": m.start(),
                    "end": end,
                }
            )
    elif task == "question-answering":
        context = text_of("context")
        text_of("question")
        end = min(len(context), 10)
        answer = context[:end]
        if BOARD.on(QA_NOT_A_SLICE):
            answer = answer[::-1]
        items = [{"score": 0.4, "start": 0, "end": end, "answer": answer}]
    elif task == "fill-mask":
        text = text_of("args", "inputs")
        if MASK not in text:
            raise InvalidInput(f"fill-mask input has no {MASK} token")
        tokens = ["paris", "berlin", "rome", "madrid", "lisbon"]
        scores = [0.4, 0.3, 0.15, 0.1, 0.05]
        if BOARD.on(FILL_MASK_ASCENDING):
            scores.reverse()
        items = [
            {"score": s, "token": i + 10, "token_str": tok, "sequence": text.replace(MASK, tok)}
            for i, (tok, s) in enumerate(zip(tokens, scores, strict=True))
        ]
    elif task == "text-generation":
        prompt = text_of("args", "inputs")
        generated = " and then some more words"
        items = [
            {
                "generated_text": generated
                if BOARD.on(GENERATION_DROPS_PROMPT)
                else prompt + generated
            }
        ]
    elif task == "text2text-generation":
        text_of("args", "inputs")
        items = [
            {"summary": "Das Haus"}
            if BOARD.on(TEXT2TEXT_NO_TEXT)
            else {"generated_text": "Das Haus ist wunderbar."}
        ]
    else:  # feature-extraction
        text = text_of("args", "inputs")
        words = re.findall(r"\w+", text) or [text]
        vectors = [_unit(w) for w in words]
        if BOARD.on(EMBEDDING_RAGGED):
            vectors[-1] = vectors[-1][:-1]
        items = [[vectors]]
    data = [json.dumps(item).encode() for item in items]
    name = "outputs" if BOARD.on(KWARGS_OUTPUT_MISNAMED) else "output"
    return [Tensor(name, "BYTES", [len(data), 1], data, {"content_type": "hg_jsonlist"})]


def _input0_answer(task: str, first: Tensor) -> list[Tensor]:
    """KServe's encoding: inputs[0] texts, one output ``output-0``."""
    if first.datatype != "BYTES":
        raise InvalidInput(f"input {first.name!r}: expected BYTES text, got {first.datatype}")
    texts = _texts(first)
    if BOARD.on(INPUT0_BATCH_IGNORED):
        texts = texts[:1]
    n = len(texts)
    name = "output-1" if BOARD.on(INPUT0_OUTPUT_MISNAMED) else "output-0"
    if task == "text-classification":
        ids = [(-1 if BOARD.on(CLASS_ID_NEGATIVE) else len(t) % 2) for t in texts]
        return [Tensor(name, "INT64", [n], ids)]
    if task == "token-classification":
        seq = max(len(re.findall(r"\w+", t)) + 2 for t in texts)
        ids = [i % len(NER_LABELS) for _ in texts for i in range(seq)]
        shape = [n, seq] if BOARD.on(TOKEN_IDS_FLAT) else [n, 1, seq]
        return [Tensor(name, "INT64", shape, ids)]
    if task == "fill-mask":
        tokens = [b"" if BOARD.on(FILL_TOKEN_EMPTY) else b"paris" for _ in texts]
        return [Tensor(name, "BYTES", [n], tokens)]
    if task == "feature-extraction":
        rows = [_unit(t) for t in texts]
        if BOARD.on(EMBEDDING_NOT_UNIT):
            rows = [[v * 2 for v in row] for row in rows]
        if BOARD.on(EMBEDDING_RAGGED):
            return [Tensor(name, "FP64", [n, HIDDEN - 1], [v for r in rows for v in r[:-1]])]
        return [Tensor(name, "FP64", [n, HIDDEN], [v for r in rows for v in r])]
    # KServe answers generation only over OpenAI; a V2 request for it is refused
    raise InvalidInput(f"{task} is not served over V2 in this encoding")
