"""Example inputs per task, the same ones the runtimes document."""

from __future__ import annotations

import base64
import io
import struct
import zlib

SENTIMENT = "I really enjoyed this movie, the acting was wonderful."
NER = "Apple Inc. was founded by Steve Jobs in Cupertino, California."
QUESTION = "Where was Apple founded?"
CONTEXT = "Apple Inc. was founded by Steve Jobs in Cupertino, California, in 1976."
FILL_MASK = "The capital of france is [MASK]."
PROMPT = "Once upon a time"
TEXT2TEXT = "translate English to German: The house is wonderful."
EMBED = "The quick brown fox jumps over the lazy dog."


def png_image(width: int = 32, height: int = 32) -> bytes:
    """A deterministic RGB PNG (a colour gradient), built without PIL."""
    rows = b"".join(
        b"\x00"
        + bytes(channel for x in range(width) for channel in (x * 8 % 256, y * 8 % 256, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def png_base64() -> str:
    return base64.b64encode(png_image()).decode()


def is_png(data: bytes) -> bool:
    return io.BytesIO(data).read(8) == b"\x89PNG\r\n\x1a\n"
