"""Encoder tasks (classification, fill-mask, embeddings) as a kserve.Model.

Answers V1 ``:predict``, V2 REST and V2 gRPC infer through the SDK's own data plane; only the
pre/post-processing is ours, written to give what huggingfaceserver 0.14.1 gives:

- input: V1 ``instances`` (strings), V2 ``inputs[0]`` only (BYTES strings); every other input
  is ignored;
- sequence_classification: the arg-max class id per row (V2: ``output-0`` INT64 [N]);
- token_classification: the arg-max label id per token, nested [[ids]] per row
  (V2: INT64 [N, 1, padded_len]);
- fill_mask: the decoded arg-max token(s) at the mask position(s) (V2: BYTES [N]);
- text_embedding: mean-pooled, L2-normalised last hidden state (V2: FP64 [N, hidden]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from kserve import Model
from kserve.errors import InferenceError
from kserve.protocol.infer_type import InferRequest
from kserve.utils.utils import get_predict_input, get_predict_response
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from .tasks import AUTO_CLASS, GENERATIVE, Task, context_length, try_infer_task

log = logging.getLogger("kserve")

#: what upstream adds when a tokenizer has no pad token
FALLBACK_PAD = "[PAD]"


def pick_device() -> torch.device:
    """Upstream has no device option: CUDA whenever torch sees a GPU, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EncoderModel(Model):
    """One encoder model directory served for one encoder task."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        task: Task | None = None,
        config: PretrainedConfig | None = None,
        dtype: torch.dtype = torch.float32,
        max_length: int | None = None,
        do_lower_case: bool = True,
        add_special_tokens: bool = True,
        return_token_type_ids: bool | None = None,
    ):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.config = config or AutoConfig.from_pretrained(self.model_dir)
        inferred = try_infer_task(self.config)
        self.task = task or inferred
        if self.task is None:
            # same refusal (and message) as when nothing matches
            from .tasks import infer_task

            infer_task(self.config)
        if task and inferred and inferred != task:
            log.warning(f"Inferred task is '{inferred.value}' but task is set to '{task.value}'")
        if self.task in GENERATIVE:
            raise RuntimeError(f"Encoder model does not support generative task: {self.task.value}")
        self.dtype = dtype
        self.max_length = max_length
        self.do_lower_case = do_lower_case
        self.add_special_tokens = add_special_tokens
        self.return_token_type_ids = return_token_type_ids
        self.device = pick_device()
        self.tokenizer: Any = None
        self.model: Any = None

    def load(self) -> bool:
        self.max_length = context_length(self.config, self.max_length)
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.model_dir, do_lower_case=self.do_lower_case
        )
        model = AUTO_CLASS[self.task].from_pretrained(self.model_dir, torch_dtype=self.dtype)
        model.eval()
        self.model = model.to(self.device)
        if not self.tokenizer.pad_token:
            log.warning(f"Tokenizer has no padding token; adding {FALLBACK_PAD}")
            self.tokenizer.add_special_tokens({"pad_token": FALLBACK_PAD})
            self.model.resize_token_embeddings(len(self.tokenizer))
        log.info(f"Loaded encoder model {self.name} ({self.task.value}) from {self.model_dir}")
        self.ready = True
        return self.ready

    def preprocess(self, payload: dict | InferRequest, context: dict[str, Any]) -> Any:
        texts = get_predict_input(payload)
        encoded = self.tokenizer(
            texts,
            max_length=self.max_length,
            add_special_tokens=self.add_special_tokens,
            return_tensors="pt",
            return_token_type_ids=self.return_token_type_ids,
            padding=True,
            truncation=True,
        )
        context["payload"] = payload
        context["input_ids"] = encoded["input_ids"]
        context["attention_mask"] = encoded.get("attention_mask")
        return encoded

    async def predict(self, encoded: Any, context: dict[str, Any]) -> torch.Tensor:
        try:
            with torch.no_grad():
                out = self.model(**encoded.to(self.device))
        except Exception as exc:  # upstream reports any model failure as an InferenceError (500)
            raise InferenceError(str(exc)) from exc
        return out.last_hidden_state if self.task == Task.text_embedding else out.logits

    def postprocess(self, outputs: torch.Tensor, context: dict[str, Any]) -> Any:
        payload = context["payload"]
        outputs = outputs.float().cpu()
        if self.task == Task.sequence_classification:
            rows: list[Any] = [int(row.argmax()) for row in outputs]
        elif self.task == Task.token_classification:
            rows = [[row.argmax(dim=-1).tolist()] for row in outputs]
        elif self.task == Task.fill_mask:
            rows = self._fill_masks(outputs, context["input_ids"].cpu())
        elif self.task == Task.text_embedding:
            rows = self._embed(outputs, context["attention_mask"].cpu()).tolist()
        else:
            raise ValueError(f"Unsupported task {self.task}. Please check the `task` option.")
        return get_predict_response(payload, rows, self.name)

    def _fill_masks(self, logits: torch.Tensor, input_ids: torch.Tensor) -> list[str]:
        words = []
        for row_logits, row_ids in zip(logits, input_ids, strict=True):
            positions = (row_ids == self.tokenizer.mask_token_id).nonzero(as_tuple=True)[0]
            # every mask of the row is decoded together, as one string
            words.append(self.tokenizer.decode(row_logits[positions].argmax(dim=-1)))
        return words

    @staticmethod
    def _embed(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)
