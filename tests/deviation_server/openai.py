"""OpenAI routes of the deviation server (under ``/openai/v1`` as KServe serves them), with the
switches that break them.

A fake generative model per generative task writes space-led words from a fixed vocabulary:
greedily (a function of the prompt) at temperature 0, from a seeded generator otherwise; one
word is one token, a prompt counts its words (or its token ids). ``fake-feature-extraction``
answers embeddings. Everything else is what OpenAI documents: string stop sequences cut the
text before them, errors come in the error envelope with 4xx statuses, streams are
``data: <json>`` events ending ``data: [DONE]``, include_usage adds a final usage chunk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.deviation_server import models
from tests.deviation_server.switches import BOARD, legal_variation, switch

AREA = "openai"
BASE = "/openai/v1"
GENERATIVE = {f"fake-{t}" for t in ("text-generation", "text2text-generation")}
EMBEDDING = "fake-feature-extraction"
VOCAB = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
)
CONTEXT = 256
MAX_N = 128
#: tokens generated when a request sets no limit
DEFAULT_TOKENS = 16
ROLES = {"system", "developer", "user", "assistant", "tool"}
CREATED = int(time.time())

BAD = "test_openai_bad_request_is_a_4xx"
CHAT_CHECKS = [
    "test_chat_returns_an_assistant_message",
    "test_chat_accepts_system_user_and_assistant_roles",
    "test_chat_respects_max_tokens",
]
ENVELOPE = "test_openai_error_body_is_the_error_envelope"
STREAM_CHECKS = "test_stream_{}"


def _s(name: str, description: str, checks: list[str]) -> str:
    return switch(name, AREA, description, checks)


def _legal(name: str, description: str) -> str:
    return legal_variation(name, AREA, description)


# models
MODELS_NOT_LIST = _s(
    "oai-models-object-not-list",
    'the models list has object "models"',
    ["test_openai_models_list_lists_model_objects"],
)
MODEL_CARD_NO_OBJECT = _s(
    "oai-model-card-no-object",
    'model objects lack "object"',
    ["test_openai_models_list_lists_model_objects"],
)
MODEL_RETRIEVE_NULL = _s(
    "oai-model-retrieve-null",
    "GET models/{id} answers 200 null",
    ["test_openai_model_retrieve_describes_the_model"],
)
MODEL_RETRIEVE_OTHER = _s(
    "oai-model-retrieve-other",
    "GET models/{id} describes another model",
    ["test_openai_model_retrieve_describes_the_model"],
)
MODEL_UNKNOWN_200 = _s(
    "oai-model-retrieve-unknown-200",
    "an unknown model's card answers 200",
    [
        "test_openai_unknown_model_retrieve_is_refused",
        "test_openai_unknown_model_retrieve_is_a_404",
    ],
)
MODEL_UNKNOWN_400 = _s(
    "oai-model-retrieve-unknown-400",
    "an unknown model's card answers 400, not 404",
    ["test_openai_unknown_model_retrieve_is_a_404"],
)
# completions
WRONG_OBJECT = _s(
    "oai-completion-object-wrong",
    'completions have object "completion"',
    ["test_completion_returns_a_text_completion"],
)
COMPLETION_NO_CHOICES = _s(
    "oai-completion-no-choices",
    "completions answer an empty choices list",
    ["test_completion_returns_a_text_completion"],
)
USAGE_SUM = _s(
    "oai-usage-total-wrong",
    "usage.total_tokens is prompt + completion + 1",
    ["test_completion_usage_adds_up"],
)
USAGE_OVER = _s(
    "oai-usage-over-max-tokens",
    "completion_tokens counts one token too many",
    ["test_completion_usage_adds_up", "test_chat_respects_max_tokens"],
)
USAGE_NO_PROMPT = _s(
    "oai-usage-prompt-zero", "usage.prompt_tokens is 0", ["test_completion_usage_adds_up"]
)
PROMPT_LIST_FIRST = _s(
    "oai-prompt-list-first-only",
    "a list of prompts answers the first only",
    ["test_completion_prompt_list_gives_one_choice_per_prompt"],
)
TOKEN_IDS_400 = _s(
    "oai-token-ids-refused",
    "a prompt of token ids is refused",
    ["test_completion_accepts_token_ids"],
)
TOKEN_IDS_MISCOUNT = _s(
    "oai-token-ids-miscounted",
    "token id prompts count one extra token",
    ["test_completion_accepts_token_ids"],
)
FINISH_STOP_ON_LENGTH = _s(
    "oai-finish-stop-at-max-tokens",
    "finish_reason is stop when max_tokens was reached",
    ["test_completion_finish_reason_length_when_max_tokens_is_reached"],
)
FINISH_LENGTH_ON_STOP = _s(
    "oai-finish-length-on-stop-sequence",
    "finish_reason is length when a stop sequence fired",
    ["test_completion_stop_sequence_ends_the_text"],
)
STOP_IGNORED = _s(
    "oai-stop-ignored",
    "stop sequences are ignored",
    ["test_completion_text_never_contains_the_stop_sequence"],
)
STOP_INCLUDED = _s(
    "oai-stop-included",
    "the stop sequence is left in the text",
    ["test_completion_text_never_contains_the_stop_sequence"],
)
STOP_EARLY = _s(
    "oai-stop-one-word-early",
    "a stop sequence also drops the word before it",
    ["test_completion_stop_sequence_ends_the_text"],
)
ECHO_IGNORED = _s(
    "oai-echo-ignored", "echo is ignored", ["test_completion_echo_returns_the_prompt_first"]
)
N_IGNORED = _s("oai-n-ignored", "n is ignored: one choice", ["test_completion_n_returns_n_choices"])
N_500 = _s("oai-n-500", "n > 1 is a 500", ["test_completion_n_returns_n_choices"])
GREEDY_RANDOM = _s(
    "oai-temperature-zero-samples",
    "temperature 0 samples at random",
    ["test_completion_temperature_zero_is_deterministic"],
)
SEED_IGNORED = _s(
    "oai-seed-ignored", "the seed does not seed sampling", ["test_completion_seed_repeats_sampling"]
)
# chat
CHAT_ROLE = _s(
    "oai-chat-role-bot",
    'the chat message has role "bot"',
    ["test_chat_returns_an_assistant_message"],
)
CHAT_OBJECT = _s(
    "oai-chat-object-wrong",
    'chat completions have object "chat.completion.chunk"',
    ["test_chat_returns_an_assistant_message"],
)
CHAT_NO_CONTENT = _s(
    "oai-chat-content-missing",
    "the assistant message has no content",
    ["test_chat_returns_an_assistant_message"],
)
CHAT_SYSTEM_400 = _s(
    "oai-chat-system-refused",
    "system messages are refused",
    ["test_chat_accepts_system_user_and_assistant_roles[*system-user*]"],
)
CHAT_ASSISTANT_400 = _s(
    "oai-chat-assistant-refused",
    "assistant messages are refused",
    ["test_chat_accepts_system_user_and_assistant_roles[*user-assistant*]"],
)
CHAT_MAX_TOKENS_IGNORED = _s(
    "oai-chat-max-tokens-ignored", "chat ignores max_tokens", ["test_chat_respects_max_tokens"]
)
CHAT_MCT_IGNORED = _s(
    "oai-chat-max-completion-tokens-ignored",
    "chat ignores max_completion_tokens",
    ["test_chat_respects_max_completion_tokens"],
)
CHAT_FINISH_BAD = _s(
    "oai-chat-finish-reason-unknown",
    'chat finish_reason is "done", outside the enum',
    ["test_chat_returns_an_assistant_message"],
)
# a route broken for every request: discovery must take it as present and broken, not absent
CHAT_500 = _s(
    "oai-chat-route-500",
    "the chat route answers 500 to every request",
    [*CHAT_CHECKS, "test_openai_client_chats"],
)
# embeddings
EMB_ONE = _s(
    "oai-embeddings-first-only",
    "a list of inputs gets one embedding",
    ["test_embeddings_return_one_vector_per_input"],
)
EMB_ORDER = _s(
    "oai-embeddings-indexes-reversed",
    "embedding indexes are reversed",
    ["test_embeddings_return_one_vector_per_input"],
)
EMB_RAGGED = _s(
    "oai-embeddings-ragged",
    "the last embedding is one value short",
    ["test_embeddings_have_the_model_dimension"],
)
EMB_NAN = _s(
    "oai-embeddings-nan",
    "an embedding holds a non-finite value",
    ["test_embeddings_have_the_model_dimension"],
)
B64_FLOAT64 = _s(
    "oai-base64-float64",
    "base64 embeddings pack float64",
    ["test_embeddings_base64_decodes_to_the_float_vectors"],
)
B64_OTHER = _s(
    "oai-base64-mismatch",
    "base64 embeddings are another vector",
    ["test_embeddings_base64_decodes_to_the_float_vectors"],
)
B64_IGNORED = _s(
    "oai-base64-ignored",
    "encoding_format base64 answers float lists",
    ["test_embeddings_base64_decodes_to_the_float_vectors"],
)
EMB_USAGE_ZERO = _s(
    "oai-embeddings-usage-zero",
    "embeddings usage.prompt_tokens is 0",
    ["test_embeddings_usage_counts_prompt_tokens"],
)
EMB_USAGE_TOTAL = _s(
    "oai-embeddings-usage-total-wrong",
    "embeddings total_tokens != prompt",
    ["test_embeddings_usage_counts_prompt_tokens"],
)
# streaming
S_CONTENT_TYPE = _s(
    "oai-stream-content-type-json",
    "streams are labelled application/json",
    ["test_stream_is_text_event_stream"],
)
S_NO_BLANK = _s(
    "oai-stream-no-blank-line",
    "events are not separated by a blank line",
    ["test_stream_events_are_data_lines_each_ended_by_a_blank_line"],
)
S_UNTERMINATED = _s(
    "oai-stream-last-event-unterminated",
    "the last event has no blank line",
    ["test_stream_events_are_data_lines_each_ended_by_a_blank_line"],
)
S_NO_DATA = _s(
    "oai-stream-no-data-field",
    "events are bare JSON lines without data:",
    ["test_stream_events_are_data_lines_each_ended_by_a_blank_line"],
)
S_NO_DONE = _s(
    "oai-stream-no-done", "the stream ends without data: [DONE]", ["test_stream_ends_with_done"]
)
S_AFTER_DONE = _s(
    "oai-stream-event-after-done", "a chunk follows data: [DONE]", ["test_stream_ends_with_done"]
)
S_OBJECT = _s(
    "oai-stream-chunk-object-wrong",
    "chunks have the non-streamed object name",
    ["test_stream_chunks_are_chunk_objects"],
)
S_IDS = _s(
    "oai-stream-ids-differ", "every chunk has its own id", ["test_stream_chunks_are_chunk_objects"]
)
S_NO_ROLE = _s(
    "oai-stream-no-role",
    "the first chat delta has no role",
    ["test_chat_stream_first_delta_carries_the_role"],
)
S_FINISH_EVERY = _s(
    "oai-stream-finish-every-chunk",
    "finish_reason is set on every chunk",
    ["test_stream_finish_reason_once_per_choice_in_its_last_chunk"],
)
S_FINISH_NEVER = _s(
    "oai-stream-finish-never",
    "no chunk carries a finish_reason",
    ["test_stream_finish_reason_once_per_choice_in_its_last_chunk"],
)
S_FINISH_EARLY = _s(
    "oai-stream-finish-first-chunk",
    "finish_reason comes in the first chunk",
    ["test_stream_finish_reason_once_per_choice_in_its_last_chunk"],
)
S_TEXT_DIFFERS = _s(
    "oai-stream-text-differs",
    "the stream drops the last word",
    ["test_stream_text_equals_the_non_streamed_text"],
)
S_SPECIAL = _s(
    "oai-stream-special-tokens",
    "streamed text keeps an end-of-sequence marker",
    ["test_stream_text_equals_the_non_streamed_text"],
)
S_USAGE_MISSING = _s(
    "oai-stream-usage-missing",
    "include_usage is ignored",
    ["test_stream_include_usage_sends_one_final_usage_chunk"],
)
S_USAGE_IN_CHOICE = _s(
    "oai-stream-usage-in-last-content-chunk",
    "usage rides on the last content chunk, choices not empty",
    ["test_stream_include_usage_sends_one_final_usage_chunk"],
)
S_USAGE_EVERY = _s(
    "oai-stream-usage-every-chunk",
    "every chunk carries usage",
    ["test_stream_include_usage_sends_one_final_usage_chunk"],
)
S_USAGE_SUM = _s(
    "oai-stream-usage-total-wrong",
    "the final usage does not add up",
    ["test_stream_include_usage_sends_one_final_usage_chunk"],
)
# errors
E_FLAT = _s("oai-error-flat", 'errors are {"error": "message"}', [ENVELOPE])
E_DETAIL = _s(
    "oai-error-detail-422",
    'schema errors answer 422 {"detail": [...]}',
    [f"{ENVELOPE}[*negative-max-tokens*]", f"{ENVELOPE}[*missing-model*]"],
)
E_NO_PARAM = _s("oai-error-no-param-code", "error objects lack param and code", [ENVELOPE])
E_PLAIN = _s("oai-error-plain-text", "errors are plain text", [ENVELOPE])
E_NO_TYPE = _s("oai-error-no-type", "error objects lack type", [ENVELOPE])
E_PARAM_500 = _s(
    "oai-bad-parameter-500",
    "bad parameter values answer 500",
    [f"{BAD}[*negative-max-tokens*]", f"{BAD}[*negative-temperature*]"],
)
E_UNKNOWN_500 = _s(
    "oai-unknown-model-500", "an unknown model answers 500", [f"{BAD}[*unknown-model*]"]
)
E_CONTEXT_500 = _s(
    "oai-context-overflow-500",
    "prompt + max_tokens beyond the context is a 500",
    [f"{BAD}[*completion-beyond-context*]"],
)
E_ENCODER_500 = _s(
    "oai-encoder-model-500",
    "completions on an encoder model crash with 500",
    [f"{BAD}[*completion-encoder-model*]"],
)
E_MALFORMED_500 = _s(
    "oai-malformed-json-500", "malformed JSON answers 500", [f"{BAD}[*malformed-json*]"]
)
E_EMPTY_OK = _s(
    "oai-empty-messages-accepted",
    "empty messages are answered 200",
    [f"{BAD}[*chat-empty-messages*]"],
)
E_ROLE_OK = _s(
    "oai-bad-role-accepted", "an unknown role is answered 200", [f"{BAD}[*chat-bad-role*]"]
)
E_N_OK = _s("oai-n-unlimited", "n above 128 is answered 200", [f"{BAD}[*n-over-limit*]"])
E_TYPE_OK = _s(
    "oai-max-tokens-string-accepted",
    'max_tokens "many" is taken as the default',
    [f"{BAD}[*max-tokens-not-a-number*]"],
)
E_INPUT_OK = _s(
    "oai-embeddings-missing-input-accepted",
    "embeddings without input answer 200",
    [f"{BAD}[*embeddings-missing-input*]"],
)
E_BREAKS = _s(
    "oai-bad-request-breaks-serving",
    "after a refused request the models list answers 503 once",
    [BAD],
)
# interoperability: strict header handling that only a real SDK trips over
SDK_HEADERS_400 = _s(
    "oai-sdk-headers-refused",
    "requests carrying the SDK's X-Stainless-* headers are refused",
    [
        "test_openai_client_completes",
        "test_openai_client_chats",
        "test_openai_client_streams",
        "test_openai_client_embeds",
    ],
)

# legal variations: unusual answers the specs allow; no check may fail under them
L_MODEL_RENAMED = _legal(
    "oai-model-field-renamed",
    'responses name the model "<requested>-resolved" (the model used, not the requested name)',
)
L_USAGE_OMITTED = _legal(
    "oai-usage-omitted", "completions and chat completions carry no usage (optional)"
)
L_ERROR_EXTRA = _legal("oai-error-extra-fields", "error bodies carry extra fields at both levels")
L_N_GREEDY = _legal(
    "oai-n-refused-when-greedy", "n > 1 at temperature 0 is refused with a 400, as vLLM does"
)
L_MISSING_MODEL_404 = _legal(
    "oai-missing-model-404",
    "a request naming no served model answers 404 (an error about the model) on a route "
    "that exists",
)
L_COMMENTS = _legal(
    "oai-stream-comments",
    "streams carry comment lines (: keep-alive) between, inside and after events",
)
L_CRLF = _legal("oai-stream-crlf", "stream lines end with CRLF")
L_UTF8_SPLIT = _legal(
    "oai-stream-utf8-split",
    "generated words carry multi-byte UTF-8 characters, sent raw and split across network "
    "chunks in the middle of each character",
)
L_CHAT_ONLY = _legal(
    "oai-chat-only",
    "no completions route (404 Not Found, as for any unknown path): a chat-only server",
)
#: the multi-byte characters the UTF-8 variation adds to every word (2, 3 and 4 bytes)
UTF8_SUFFIX = "é€𝄞"
#: pause between the pieces of a split character, so that they travel as separate reads
SPLIT_PAUSE_S = 0.002

#: one 503 owed to the models list after a refused request (E_BREAKS)
_broken_once: list[bool] = [False]
#: requests served, so that the temperature-0 switch can vary its answers
_counter: list[int] = [0]


class _Refused(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        schema: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.param = param
        self.kind = kind
        self.schema = schema


def _error(exc: _Refused) -> Response:
    if 400 <= exc.status < 500:
        _broken_once[0] = BOARD.on(E_BREAKS)
    if BOARD.on(E_PLAIN):
        return PlainTextResponse(str(exc), status_code=exc.status)
    if BOARD.on(E_FLAT):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    if exc.schema and BOARD.on(E_DETAIL):
        return JSONResponse(
            {"detail": [{"loc": ["body", exc.param], "msg": str(exc)}]}, status_code=422
        )
    error: dict[str, Any] = {"message": str(exc), "type": exc.kind}
    if BOARD.on(E_NO_TYPE):
        del error["type"]
    if not BOARD.on(E_NO_PARAM):
        error.update(param=exc.param, code=None)
    envelope: dict[str, Any] = {"error": error}
    if BOARD.on(L_ERROR_EXTRA):
        error["status"] = exc.status
        envelope["request_id"] = f"req-{_counter[0]}"
    return JSONResponse(envelope, status_code=exc.status)


def _bad(param: str, message: str, *, status: int = 400, switch_500: str | None = None) -> _Refused:
    if switch_500 is not None and BOARD.on(switch_500):
        status = 500
    return _Refused(status, message, param, schema=True)


# --- the fake models -----------------------------------------------------------------------


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _words(text: str) -> list[str]:
    return text.split() or [""]


def _generate(prompt: str, count: int, params: dict[str, Any]) -> list[str]:
    temperature = params.get("temperature")
    greedy = temperature is None or temperature == 0
    suffix = UTF8_SUFFIX if BOARD.on(L_UTF8_SPLIT) else ""
    if greedy and not BOARD.on(GREEDY_RANDOM):
        start = _hash(prompt)
        return [VOCAB[(start + 5 * i) % len(VOCAB)] + suffix for i in range(count)]
    seed = params.get("seed")
    rng = random.Random(seed if seed is not None and not BOARD.on(SEED_IGNORED) else None)
    return [rng.choice(VOCAB) + suffix for _ in range(count)]


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if not hits or BOARD.on(STOP_IGNORED):
        return text, False
    at, stop = min(hits)
    end = at + len(stop) if BOARD.on(STOP_INCLUDED) else at
    if BOARD.on(STOP_EARLY):
        end = max(text.rfind(" ", 0, max(at - 1, 0)), 0)
    return text[:end], True


def _int_param(body: dict[str, Any], name: str, default: int | None) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if BOARD.on(E_TYPE_OK) and name == "max_tokens":
            return default
        raise _bad(name, f"{name} must be an integer")
    return value


def _model(body: dict[str, Any], served: set[str], what: str) -> str:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        if BOARD.on(L_MISSING_MODEL_404):
            raise _Refused(404, "no model named: the model '' does not exist", "model")
        raise _bad("model", "you must provide a model parameter")
    if name not in served:
        known = name in models.MODELS
        status = 404
        if BOARD.on(E_UNKNOWN_500) and not known:
            status = 500
        if BOARD.on(E_ENCODER_500) and known:
            status = 500
        raise _Refused(
            status,
            f"the model {name!r} does not exist or does not serve {what}",
            "model",
            kind="invalid_request_error",
        )
    return name


def _sampling(body: dict[str, Any], default_tokens: int) -> dict[str, Any]:
    max_tokens = _int_param(body, "max_tokens", default_tokens)
    assert max_tokens is not None
    if max_tokens < 0:
        raise _bad("max_tokens", "max_tokens must be at least 0", switch_500=E_PARAM_500)
    temperature = body.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise _bad("temperature", "temperature must be between 0 and 2", switch_500=E_PARAM_500)
    n = _int_param(body, "n", 1)
    assert n is not None
    if n < 1 or (n > MAX_N and not BOARD.on(E_N_OK)):
        raise _bad("n", f"n must be between 1 and {MAX_N}")
    stop = body.get("stop") or []
    stops = [stop] if isinstance(stop, str) else list(stop)
    return {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "n": n,
        "stops": stops,
        "seed": body.get("seed"),
        "echo": bool(body.get("echo")),
    }


def _prompts(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(text, token count) per prompt."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [(prompt, len(prompt.split()))]
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return [_ids_prompt(prompt)]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = [(p, len(p.split())) for p in prompt]
        return prompts[:1] if BOARD.on(PROMPT_LIST_FIRST) else prompts
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return [_ids_prompt(p) for p in prompt]
    raise _bad("prompt", "prompt must be a string, a list of strings or token ids")


def _ids_prompt(ids: list[Any]) -> tuple[str, int]:
    if BOARD.on(TOKEN_IDS_400):
        raise _bad("prompt", "token id prompts are not supported")
    if not all(isinstance(i, int) and i >= 0 for i in ids):
        raise _bad("prompt", "token ids must be non-negative integers")
    extra = 1 if BOARD.on(TOKEN_IDS_MISCOUNT) else 0
    return " ".join(VOCAB[i % len(VOCAB)] for i in ids), len(ids) + extra


class _Choice:
    """One generated choice: its text pieces (one per token) and why it ended."""

    def __init__(self, prompt: str, prompt_tokens: int, params: dict[str, Any], index: int):
        if prompt_tokens + params["max_tokens"] > CONTEXT:
            raise _bad(
                "max_tokens",
                f"this model's maximum context length is {CONTEXT} "
                f"tokens; {prompt_tokens} in the prompt plus max_tokens "
                f"{params['max_tokens']} is more",
                switch_500=E_CONTEXT_500,
            )
        words = _generate(prompt + (f"#{index}" if index else ""), params["max_tokens"], params)
        text, stopped = _cut_at_stop("".join(" " + w for w in words), params["stops"])
        self.pieces = _pieces(text)
        self.tokens = len(self.pieces)
        self.finish = "stop" if stopped else "length"
        if self.tokens < params["max_tokens"] and not stopped:
            self.finish = "stop"
        if stopped and BOARD.on(FINISH_LENGTH_ON_STOP):
            self.finish = "length"
        if self.finish == "length" and BOARD.on(FINISH_STOP_ON_LENGTH):
            self.finish = "stop"
        self.prefix = prompt if params["echo"] and not BOARD.on(ECHO_IGNORED) else ""
        self.index = index

    @property
    def text(self) -> str:
        return self.prefix + "".join(self.pieces)


def _pieces(text: str) -> list[str]:
    """Split text into its tokens, each word keeping its leading space."""
    return re.findall(r"\s*\S+|\s+", text)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    if BOARD.on(USAGE_OVER):
        completion_tokens += 1
    if BOARD.on(USAGE_NO_PROMPT):
        prompt_tokens = 0
    total = prompt_tokens + completion_tokens + (1 if BOARD.on(USAGE_SUM) else 0)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": total,
    }


def _choices(prompts: list[tuple[str, int]], params: dict[str, Any]) -> list[_Choice]:
    n = params["n"]
    if n > 1 and params["temperature"] == 0 and BOARD.on(L_N_GREEDY):
        raise _bad("n", "n > 1 needs sampling: greedy choices would all be the same")
    if n > 1 and BOARD.on(N_500):
        raise _Refused(500, "'n' > 1 is not supported")
    if BOARD.on(N_IGNORED):
        n = 1
    out = []
    for p, (text, count) in enumerate(prompts):
        for k in range(n):
            out.append(_Choice(text, count, params, p * n + k))
    return out


# --- handlers --------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _Refused(
            500 if BOARD.on(E_MALFORMED_500) else 400,
            f"the body is not valid JSON: {exc}",
            schema=True,
        ) from None
    if not isinstance(body, dict):
        raise _Refused(400, "the body must be a JSON object", schema=True)
    if any(h.lower().startswith("x-stainless") for h in request.headers) and BOARD.on(
        SDK_HEADERS_400
    ):
        raise _Refused(400, "unexpected headers")
    return body


async def list_models(request: Request) -> Response:
    if _broken_once[0]:
        _broken_once[0] = False
        return JSONResponse(
            {
                "error": {
                    "message": "unavailable",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
            status_code=503,
        )
    cards = []
    for name in sorted(GENERATIVE | {EMBEDDING}):
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": CREATED,
            "owned_by": "servegate",
        }
        if BOARD.on(MODEL_CARD_NO_OBJECT):
            del card["object"]
        cards.append(card)
    return JSONResponse(
        {"object": "models" if BOARD.on(MODELS_NOT_LIST) else "list", "data": cards}
    )


async def retrieve_model(request: Request) -> Response:
    name = request.path_params["model"]
    served = GENERATIVE | {EMBEDDING}
    if name not in served and not BOARD.on(MODEL_UNKNOWN_200):
        status = 400 if BOARD.on(MODEL_UNKNOWN_400) else 404
        raise _Refused(status, f"the model {name!r} does not exist", "model")
    if BOARD.on(MODEL_RETRIEVE_NULL):
        return JSONResponse(None)
    shown = sorted(served - {name})[0] if BOARD.on(MODEL_RETRIEVE_OTHER) else name
    return JSONResponse(
        {"id": shown, "object": "model", "created": CREATED, "owned_by": "servegate"}
    )


def _shown(model: str) -> str:
    """The model a response names."""
    return model + "-resolved" if BOARD.on(L_MODEL_RENAMED) else model


def _with_usage(response: dict[str, Any], usage: dict[str, int]) -> dict[str, Any]:
    if not BOARD.on(L_USAGE_OMITTED):
        response["usage"] = usage
    return response


async def completions(request: Request) -> Response:
    if BOARD.on(L_CHAT_ONLY):
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    body = await _json_body(request)
    model = _model(body, GENERATIVE, "completions")
    params = _sampling(body, DEFAULT_TOKENS)
    prompts = _prompts(body)
    choices = _choices(prompts, params)
    usage = _usage(sum(c for _, c in prompts), sum(c.tokens for c in choices))
    if body.get("stream"):
        return _stream(model, choices, usage, chat=False, options=body.get("stream_options"))
    shown = [] if BOARD.on(COMPLETION_NO_CHOICES) else choices
    return JSONResponse(
        _with_usage(
            {
                "id": f"cmpl-{_hash(json.dumps(body, sort_keys=True)):x}",
                "object": "completion" if BOARD.on(WRONG_OBJECT) else "text_completion",
                "created": int(time.time()),
                "model": _shown(model),
                "choices": [
                    {
                        "index": c.index,
                        "text": c.text,
                        "finish_reason": c.finish,
                        "logprobs": None,
                    }
                    for c in shown
                ],
            },
            usage,
        )
    )


def _chat_prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages", "messages must be a list")
    if not messages and not BOARD.on(E_EMPTY_OK):
        raise _bad("messages", "messages must not be empty")
    lines = []
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES and not BOARD.on(E_ROLE_OK):
            raise _bad("messages", f"unknown role {role!r}")
        if role == "system" and BOARD.on(CHAT_SYSTEM_400):
            raise _bad("messages", "system messages are not supported")
        if role == "assistant" and BOARD.on(CHAT_ASSISTANT_400):
            raise _bad("messages", "assistant messages are not supported")
        lines.append(f"{role}: {message.get('content') or ''}")
    return "\n".join(lines) + "\nassistant:"


async def chat(request: Request) -> Response:
    if BOARD.on(CHAT_500):
        raise _Refused(500, "internal error", kind="server_error")
    body = await _json_body(request)
    model = _model(body, GENERATIVE, "chat completions")
    prompt = _chat_prompt(body)
    limits = dict(body)
    if BOARD.on(CHAT_MAX_TOKENS_IGNORED):
        limits.pop("max_tokens", None)
    if "max_completion_tokens" in limits and not BOARD.on(CHAT_MCT_IGNORED):
        limits["max_tokens"] = limits.pop("max_completion_tokens")
    params = _sampling(limits, DEFAULT_TOKENS)
    if params["n"] != 1 and BOARD.on(N_500):
        raise _Refused(500, "n != 1 is not supported")
    prompts = [(prompt, len(prompt.split()))]
    choices = _choices(prompts, {**params, "echo": False})
    usage = _usage(prompts[0][1], sum(c.tokens for c in choices))
    if body.get("stream"):
        return _stream(model, choices, usage, chat=True, options=body.get("stream_options"))
    message_role = "bot" if BOARD.on(CHAT_ROLE) else "assistant"
    return JSONResponse(
        _with_usage(
            {
                "id": f"chatcmpl-{_hash(json.dumps(body, sort_keys=True)):x}",
                "object": "chat.completion.chunk" if BOARD.on(CHAT_OBJECT) else "chat.completion",
                "created": int(time.time()),
                "model": _shown(model),
                "choices": [
                    {
                        "index": c.index,
                        "finish_reason": "done" if BOARD.on(CHAT_FINISH_BAD) else c.finish,
                        "logprobs": None,
                        "message": {"role": message_role}
                        if BOARD.on(CHAT_NO_CONTENT)
                        else {"role": message_role, "content": c.text},
                    }
                    for c in choices
                ],
            },
            usage,
        )
    )


def _stream(
    model: str, choices: list[_Choice], usage: dict[str, int], *, chat: bool, options: Any
) -> Response:
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    include_usage = include_usage and not BOARD.on(S_USAGE_MISSING)
    stream_id = f"{'chatcmpl' if chat else 'cmpl'}-{_counter[0]}"
    _counter[0] += 1
    if chat:
        obj = "chat.completion" if BOARD.on(S_OBJECT) else "chat.completion.chunk"
    else:
        obj = "completion" if BOARD.on(S_OBJECT) else "text_completion"
    chunks: list[dict[str, Any]] = []
    for choice in choices:
        pieces = ([choice.prefix] if choice.prefix else []) + list(choice.pieces)
        if BOARD.on(S_TEXT_DIFFERS) and pieces:
            pieces = pieces[:-1]
        if BOARD.on(S_SPECIAL):
            pieces.append("</s>")
        if chat:
            pieces = [""] + pieces  # the role comes in a delta of its own
        pieces = pieces or [""]
        for k, piece in enumerate(pieces):
            last = k == len(pieces) - 1
            finish = choice.finish if last else None
            if BOARD.on(S_FINISH_EVERY):
                finish = choice.finish
            if BOARD.on(S_FINISH_NEVER):
                finish = None
            if BOARD.on(S_FINISH_EARLY):
                finish = choice.finish if k == 0 else None
            if chat:
                delta: dict[str, Any] = {"content": piece}
                if k == 0 and not BOARD.on(S_NO_ROLE):
                    delta["role"] = "assistant"
                entry: dict[str, Any] = {"index": choice.index, "delta": delta}
            else:
                entry = {"index": choice.index, "text": piece, "logprobs": None}
            entry["finish_reason"] = finish
            chunks.append(
                {
                    "id": stream_id,
                    "object": obj,
                    "created": int(time.time()),
                    "model": _shown(model),
                    "choices": [entry],
                }
            )
    for pos, chunk in enumerate(chunks):
        if BOARD.on(S_IDS):
            chunk["id"] = f"{stream_id}-{pos}"
        if include_usage:
            chunk["usage"] = usage if BOARD.on(S_USAGE_EVERY) else None
    if include_usage:
        final = dict(usage)
        if BOARD.on(S_USAGE_SUM):
            final["total_tokens"] += 1
        if BOARD.on(S_USAGE_IN_CHOICE):
            chunks[-1]["usage"] = final
        else:
            chunks.append(
                {
                    "id": stream_id,
                    "object": obj,
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": final,
                }
            )
    return StreamingResponse(
        _events(chunks),
        media_type="application/json" if BOARD.on(S_CONTENT_TYPE) else "text/event-stream",
    )


def _events(chunks: list[dict[str, Any]]) -> Iterator[bytes]:
    """The stream's bytes, one event a write (or one piece of a split character a write)."""
    for text in _event_texts(chunks):
        if BOARD.on(L_CRLF):
            text = text.replace("\n", "\r\n")
        data = text.encode()
        if not BOARD.on(L_UTF8_SPLIT):
            yield data
            continue
        # cut one byte into every multi-byte character and send the halves apart
        start = 0
        for at, byte in enumerate(data):
            if byte >= 0xC0:  # the lead byte of a multi-byte character
                yield data[start : at + 1]
                time.sleep(SPLIT_PAUSE_S)
                start = at + 1
        yield data[start:]


def _event_texts(chunks: list[dict[str, Any]]) -> Iterator[str]:
    separator = "\n" if BOARD.on(S_NO_BLANK) else "\n\n"
    prefix = "" if BOARD.on(S_NO_DATA) else "data: "
    comments = BOARD.on(L_COMMENTS)
    # the UTF-8 variation sends characters raw, not as JSON \u escapes
    ascii_only = not BOARD.on(L_UTF8_SPLIT)
    if comments:
        yield ": keep-alive\n\n"
    for chunk in chunks:
        inside = ": ping\n" if comments else ""
        yield f"{inside}{prefix}{json.dumps(chunk, ensure_ascii=ascii_only)}{separator}"
        if comments:
            yield ":\n\n"
    if not BOARD.on(S_NO_DONE):
        yield f"{prefix}[DONE]" + ("\n" if BOARD.on(S_UNTERMINATED) else separator)
    if BOARD.on(S_AFTER_DONE):
        yield f"{prefix}{json.dumps(chunks[-1])}{separator}"
    if comments:
        yield ": bye\n"


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    vec = [b / 255.0 + 0.01 for b in digest[: models.HIDDEN]]
    norm = math.sqrt(sum(v * v for v in vec))
    # float32 values, so that the base64 form (float32) is the same vector exactly
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vec]


def _pack(vector: list[float]) -> str:
    fmt = "d" if BOARD.on(B64_FLOAT64) else "f"
    return base64.b64encode(struct.pack(f"<{len(vector)}{fmt}", *vector)).decode()


async def embeddings(request: Request) -> Response:
    body = await _json_body(request)
    model = _model(body, {EMBEDDING}, "embeddings")
    inputs = body.get("input")
    if inputs is None and BOARD.on(E_INPUT_OK):
        inputs = [""]
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise _bad("input", "input must be a string or a non-empty list of strings")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise _bad("encoding_format", "encoding_format must be float or base64")
    if BOARD.on(EMB_ONE):
        inputs = inputs[:1]
    data = []
    for i, text in enumerate(inputs):
        vector = _embedding(text)
        if BOARD.on(EMB_RAGGED) and i == len(inputs) - 1 and len(inputs) > 1:
            vector = vector[:-1]
        if BOARD.on(EMB_NAN) and i == 0:
            vector[0] = math.inf
        value: Any = vector
        if fmt == "base64" and not BOARD.on(B64_IGNORED):
            value = _pack(_embedding(text + "!") if BOARD.on(B64_OTHER) else vector)
        index = len(inputs) - 1 - i if BOARD.on(EMB_ORDER) else i
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = 0 if BOARD.on(EMB_USAGE_ZERO) else sum(max(1, len(t.split())) for t in inputs)
    total = tokens + (1 if BOARD.on(EMB_USAGE_TOTAL) else 0)
    # JSON has no infinity: a non-finite value is sent as a huge literal, as some servers do
    text = json.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": total},
        }
    )
    return Response(text.replace("Infinity", "1e999"), media_type="application/json")


def _guard(handler):
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except _Refused as exc:
            return _error(exc)

    return wrapped


def routes(base: str = BASE) -> list[Route]:
    """The OpenAI routes below ``base`` (KServe's /openai/v1 by default; /v1 elsewhere)."""
    base = "/" + base.strip("/")
    return [
        Route(f"{base}/models", _guard(list_models)),
        Route(f"{base}/models/{{model}}", _guard(retrieve_model)),
        Route(f"{base}/completions", _guard(completions), methods=["POST"]),
        Route(f"{base}/chat/completions", _guard(chat), methods=["POST"]),
        Route(f"{base}/embeddings", _guard(embeddings), methods=["POST"]),
    ]


def reset() -> None:
    _broken_once[0] = False
    _counter[0] = 0
