"""Generative tasks (text_generation, text2text_generation) on the SDK's OpenAI layer.

The model is an ``OpenAIChatAdapterModel``: the SDK maps chat requests onto completions, owns the
routes, the request/response types and the SSE framing. What is ours is generation, written to
answer as huggingfaceserver 0.14.1 does:

- greedy decoding (``temperature``/``top_p`` reach the GenerationConfig but nothing samples);
- ``max_tokens`` missing (chat) means "the rest of the context"; prompt + max_tokens above the
  context is a ValueError (HTTP 500);
- ``n`` > 1, ``best_of`` > 1, ``frequency_penalty`` > 0 and ``echo`` on encoder-decoder models
  are ValueErrors (500); chat ``n`` != 1 is the SDK's InvalidInput (400);
- ``finish_reason`` is "stop" only when a ``stop`` sequence ended generation, else "length",
  also when the model emitted its end-of-sequence token, and on every streamed chunk;
- one request at a time per model, on a background thread, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from kserve.protocol.rest.openai import ChatPrompt, CompletionRequest, OpenAIChatAdapterModel
from kserve.protocol.rest.openai.types import (
    ChatCompletionRequestMessage,
    Completion,
    CompletionChoice,
    CompletionUsage,
    CreateCompletionRequest,
)
from kserve.utils.utils import generate_uuid
from transformers import (
    AutoConfig,
    AutoTokenizer,
    GenerationConfig,
    PretrainedConfig,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
    set_seed,
)

from .encoder import FALLBACK_PAD, pick_device
from .tasks import AUTO_CLASS, GENERATIVE, Task, context_length, infer_task

log = logging.getLogger("kserve")


class StopOnSequences(StoppingCriteria):
    """Stops when the newest tokens of any row equal one of the stop sequences; remembers it did."""

    def __init__(self, prompt_length: int, sequences: list[torch.Tensor]):
        self.prompt_length = prompt_length
        self.sequences = sequences
        self.triggered = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        generated = input_ids.shape[-1] - self.prompt_length
        for seq in self.sequences:
            n = seq.shape[-1]
            if n > generated:
                continue
            if bool((input_ids[:, -n:] == seq.to(input_ids.device)).all(dim=1).any()):
                self.triggered = True
                return True
        return False


def finish_reason(stopper: StopOnSequences | None) -> str:
    return "stop" if stopper is not None and stopper.triggered else "length"


@dataclass
class _Job:
    kwargs: dict[str, Any]
    params: CreateCompletionRequest
    loop: asyncio.AbstractEventLoop
    results: asyncio.Queue = field(default_factory=asyncio.Queue)
    usage: dict[str, int] = field(default_factory=dict)


class _ChunkStream:
    """Streamed text pieces as ``text_completion`` chunks; one id for the whole stream."""

    def __init__(self, job: _Job, stopper: StopOnSequences | None, fingerprint: str | None):
        self.job = job
        self.stopper = stopper
        self.fingerprint = fingerprint
        self.id = generate_uuid()

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> Completion:
        text = await self.job.results.get()
        if text is None:
            raise StopAsyncIteration
        if isinstance(text, Exception):
            raise text
        choice = CompletionChoice(
            index=0, text=text, logprobs=None, finish_reason=finish_reason(self.stopper)
        )
        return Completion(
            id=self.id,
            created=int(time.time()),
            model=self.job.params.model,
            choices=[choice],
            object="text_completion",
            system_fingerprint=self.fingerprint,
        )


class GenerativeModel(OpenAIChatAdapterModel):
    """One causal or sequence-to-sequence model answering OpenAI completions and chat."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        task: Task | None = None,
        config: PretrainedConfig | None = None,
        dtype: torch.dtype = torch.float16,
        max_length: int | None = None,
        do_lower_case: bool = True,
        system_fingerprint: str | None = None,
    ):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.config = config or AutoConfig.from_pretrained(self.model_dir)
        self.task = task or infer_task(self.config)
        if self.task not in GENERATIVE:
            raise RuntimeError(
                f"Generative model does not support encoder-only task: {self.task.value}"
            )
        self.dtype = dtype
        self.max_length = max_length
        self.do_lower_case = do_lower_case
        self.system_fingerprint = system_fingerprint
        self.device = pick_device()
        self.tokenizer: Any = None
        self.model: Any = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()

    @property
    def is_encoder_decoder(self) -> bool:
        return self.task == Task.text2text_generation

    def load(self) -> bool:
        self.max_length = context_length(self.config, self.max_length)
        extra = {} if self.config.is_encoder_decoder else {"padding_side": "left"}
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_dir, do_lower_case=self.do_lower_case, **extra
        )
        model = AUTO_CLASS[self.task].from_pretrained(self.model_dir, torch_dtype=self.dtype)
        model.eval()
        self.model = model.to(self.device)
        if not self.tokenizer.pad_token:
            log.warning(f"Tokenizer has no padding token; adding {FALLBACK_PAD}")
            self.tokenizer.add_special_tokens({"pad_token": FALLBACK_PAD})
            self.model.resize_token_embeddings(len(self.tokenizer))
        threading.Thread(target=self._serve_jobs, name=f"generate-{self.name}", daemon=True).start()
        log.info(f"Loaded generative model {self.name} ({self.task.value}) from {self.model_dir}")
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self._jobs.put(None)
        self.ready = False

    # --- the generation thread -------------------------------------------------------------

    @torch.no_grad()
    def _serve_jobs(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._run(job)
            except Exception as exc:  # keep the thread alive for the next request
                log.exception("generation failed")
                self._send(job, exc)
                self._send(job, None)

    def _send(self, job: _Job, item: Any) -> None:
        job.loop.call_soon_threadsafe(job.results.put_nowait, item)

    def _run(self, job: _Job) -> None:
        params = job.params
        if params.seed is not None:
            set_seed(params.seed)
        echo = bool(params.echo)
        prompt_len = job.kwargs["input_ids"].shape[-1]
        if params.stream:
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=not echo)
            worker = threading.Thread(
                target=self.model.generate, kwargs={**job.kwargs, "streamer": streamer}
            )
            worker.start()
            for piece in streamer:
                if piece:
                    self._send(job, piece)
            worker.join()
            self._send(job, None)
            return
        out = self.model.generate(**job.kwargs)
        rows = out.shape[0]
        if self.is_encoder_decoder:
            # the decoder output holds no prompt, but counts its start token
            job.usage["completion_tokens"] = out.shape[-1] * rows
            start = 0
        else:
            job.usage["completion_tokens"] = (out.shape[-1] - prompt_len) * rows
            start = 0 if echo else prompt_len
        self._send(job, self.tokenizer.batch_decode(out[:, start:], skip_special_tokens=True))

    # --- the OpenAI side --------------------------------------------------------------------

    def apply_chat_template(self, messages: Iterable[ChatCompletionRequestMessage]) -> ChatPrompt:
        text = self.tokenizer.apply_chat_template(
            [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True
        )
        return ChatPrompt(prompt=cast(str, text))

    def _check_params(self, params: CreateCompletionRequest) -> None:
        if params.frequency_penalty is not None and params.frequency_penalty > 0:
            raise ValueError("'frequency_penalty' is not supported")
        if params.best_of is not None and params.best_of > 1:
            raise ValueError("'best_of' > 1 is not supported")
        if params.n is not None and params.n > 1:
            raise ValueError("'n' > 1 is not supported")
        if params.echo and self.is_encoder_decoder:
            raise ValueError("'echo' is not supported by encoder-decoder models")

    def _generation_config(self, params: CreateCompletionRequest) -> GenerationConfig:
        options: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "top_p": params.top_p,
            "temperature": params.temperature,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.presence_penalty and params.presence_penalty > 0:
            options["repetition_penalty"] = params.presence_penalty
        if params.logit_bias is not None:
            options["sequence_bias"] = {
                tuple(token): bias for token, bias in params.logit_bias.items()
            }
        return GenerationConfig(**options)

    def _encode_prompt(self, prompt: Any) -> dict[str, torch.Tensor]:
        many = isinstance(prompt, list) and not isinstance(prompt[0], int)
        prompts = prompt if many else [prompt]
        if isinstance(prompts[0][0], int):
            return {"input_ids": torch.tensor(prompts, dtype=torch.int64).to(self.device)}
        return dict(self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device))

    async def create_completion(
        self, request: CompletionRequest
    ) -> Completion | AsyncIterator[Completion]:
        params = request.params
        if params.prompt is None:
            raise ValueError("prompt is required")
        inputs = self._encode_prompt(params.prompt)
        rows, prompt_len = inputs["input_ids"].shape
        if params.max_tokens is None:
            params.max_tokens = self.max_length - prompt_len
        if prompt_len + params.max_tokens > self.max_length:
            raise ValueError(
                f"This model's maximum context length is {self.max_length} tokens. "
                f"However, you requested {params.max_tokens + prompt_len} tokens "
                f"({prompt_len} in the messages, {params.max_tokens} in the completion). "
                "Please reduce the length of the messages or completion."
            )
        self._check_params(params)
        stopper = None
        if params.stop is not None:
            stops = params.stop if isinstance(params.stop, list) else [params.stop]
            sequences = [
                self.tokenizer.encode(s, return_tensors="pt", add_special_tokens=False)[0]
                for s in stops
            ]
            stopper = StopOnSequences(0 if self.is_encoder_decoder else prompt_len, sequences)
        job = _Job(
            kwargs={
                **inputs,
                "stopping_criteria": StoppingCriteriaList([stopper]) if stopper else None,
                "generation_config": self._generation_config(params),
            },
            params=params,
            loop=asyncio.get_running_loop(),
        )
        self._jobs.put(job)
        if params.stream:
            return _ChunkStream(job, stopper, self.system_fingerprint)
        texts = await job.results.get()
        if isinstance(texts, Exception):
            raise texts
        prompt_tokens = rows * prompt_len
        completion_tokens = job.usage["completion_tokens"]
        return Completion(
            id=generate_uuid(),
            choices=[
                CompletionChoice(
                    index=i, text=text, logprobs=None, finish_reason=finish_reason(stopper)
                )
                for i, text in enumerate(texts)
            ],
            created=int(time.time()),
            object="text_completion",
            model=params.model,
            system_fingerprint=self.system_fingerprint,
            usage=CompletionUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )
