"""Server-sent events, parsed strictly enough to judge a server's framing.

Per the HTML living standard: events are separated by a blank line; ``data:`` lines of one
event are joined with newlines; lines starting with ``:`` are comments. The parser also keeps
what a conformance check needs to know about the framing itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class Event:
    data: str
    event: str | None = None
    id: str | None = None
    #: the raw lines of the event, for failure messages
    lines: list[str] = field(default_factory=list)


@dataclass
class Framing:
    """Facts about the stream's framing, filled in as it is parsed."""

    #: True when the stream ended in the middle of an event (no blank line after it)
    unterminated: bool = False
    #: lines that are neither fields nor comments nor blank
    malformed_lines: list[str] = field(default_factory=list)


def parse_events(chunks: Iterable[bytes], framing: Framing | None = None) -> Iterator[Event]:
    """Yield events from a byte stream as they complete."""
    framing = framing if framing is not None else Framing()
    buffer = ""
    data: list[str] = []
    lines: list[str] = []
    event_name: str | None = None
    event_id: str | None = None
    for chunk in chunks:
        buffer += chunk.decode("utf-8", errors="replace")
        while True:
            cut = _next_line_end(buffer)
            if cut is None:
                break
            line, buffer = buffer[: cut[0]], buffer[cut[1] :]
            if line == "":
                if lines:
                    yield Event("\n".join(data), event_name, event_id, lines)
                data, lines, event_name, event_id = [], [], None, None
                continue
            lines.append(line)
            if line.startswith(":"):
                continue
            name, sep, value = line.partition(":")
            if not sep:
                framing.malformed_lines.append(line)
                continue
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event_name = value
            elif name == "id":
                event_id = value
            elif name != "retry":
                framing.malformed_lines.append(line)
    if buffer.strip() or lines:
        framing.unterminated = True
        if buffer.strip():
            lines.append(buffer)
            name, sep, value = buffer.partition(":")
            if name == "data" and sep:
                data.append(value[1:] if value.startswith(" ") else value)
        yield Event("\n".join(data), event_name, event_id, lines)


def _next_line_end(buffer: str) -> tuple[int, int] | None:
    """Position of the first line terminator (CRLF, LF or CR) and the index after it."""
    for i, ch in enumerate(buffer):
        if ch == "\n":
            return i, i + 1
        if ch == "\r":
            if i + 1 < len(buffer):
                return (i, i + 2) if buffer[i + 1] == "\n" else (i, i + 1)
            return None  # a CR at the end may be the first half of CRLF: wait for more
    return None
