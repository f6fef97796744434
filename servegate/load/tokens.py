"""The served model's tokenizer, for counting and making prompts of an exact token length.

Read with the ``tokenizers`` library (installed with ``servegate[load]``) from a model folder that
holds ``tokenizer.json`` or from that file itself, so no model code and no network is needed.
Counts never include the special tokens a server may add around a prompt (BOS, a chat
template): the server's own ``usage.prompt_tokens`` says what it saw.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servegate.errors import ServegateError

TOKENIZER_FILE = "tokenizer.json"
#: decode/re-encode rounds before a synthetic prompt gives up on the exact length
_FIT_ROUNDS = 8


class TokenizerError(ServegateError):
    """A --tokenizer that cannot be read."""


def tokenizer_file(path: str | Path) -> Path:
    """The tokenizer.json a --tokenizer names (the file, or a folder holding it)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / TOKENIZER_FILE
    if not p.is_file():
        raise TokenizerError(
            f"--tokenizer {path}: no {TOKENIZER_FILE} there (give a model folder that holds "
            f"one, or the file itself)"
        )
    return p


@dataclass
class TokenCounter:
    """A loaded tokenizer: counts tokens and builds prompts of a given length."""

    path: Path
    tokenizer: Any

    @classmethod
    def load(cls, path: str | Path) -> TokenCounter:
        file = tokenizer_file(path)
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerError(
                "--tokenizer needs the tokenizers library: pip install 'servegate[load]'"
            ) from None
        try:
            return cls(path=file, tokenizer=Tokenizer.from_file(str(file)))
        except Exception as exc:  # noqa: BLE001 - the library raises plain Exceptions
            raise TokenizerError(f"--tokenizer {path}: {file} is not a tokenizer ({exc})") from None

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        """Tokens of ``text``, without special tokens."""
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def ordinary_ids(self) -> list[int]:
        """Ids of the vocabulary that are no special or added token and stand alone as text:
        each decodes to printable text without a broken character and encodes back to itself
        (a byte-level piece of a multi-byte character would decode to U+FFFD and re-encode as
        several tokens)."""
        added = set(self.tokenizer.get_added_tokens_decoder())
        out = []
        for i in range(self.tokenizer.get_vocab_size()):
            if i in added:
                continue
            text = self.decode([i])
            if text and text.isprintable() and "\ufffd" not in text and self.encode(text) == [i]:
                out.append(i)
        if not out:
            raise TokenizerError(f"{self.path}: no ordinary token to make prompts from")
        return out

    def prompt(self, length: int, rng: random.Random, pool: list[int] | None = None) -> str:
        """Text of ``length`` tokens (as this tokenizer counts it) from random ordinary tokens.

        Random ids decode to text that may re-encode to another count (merges across the
        joins), so the ids are re-encoded, cut or extended and decoded again until they agree;
        a draw that does not settle is replaced by a new one.
        """
        pool = pool or self.ordinary_ids()
        best = ""
        for _ in range(_FIT_ROUNDS):
            ids = [rng.choice(pool) for _ in range(length)]
            for _ in range(_FIT_ROUNDS):
                text = self.decode(ids)
                got = self.encode(text)
                if len(got) == length:
                    return text
                best = text
                if len(got) > length:
                    ids = got[:length]
                else:
                    ids = got + [rng.choice(pool) for _ in range(length - len(got))]
        return best
