"""Server-sent events: the one reader for conformance checks and load tests.

Parsing follows the HTML living standard's "event stream interpretation":

- the stream is UTF-8, decoded incrementally, so a character split across network chunks
  decodes whole; one leading BOM is ignored;
- lines end with CRLF, LF or CR (a CR at the end of a chunk may be the first half of a CRLF);
- a line starting with ``:`` is a comment and is ignored;
- ``name: value`` sets a field (one space after the colon is dropped); a line without a colon
  is a field name with an empty value;
- ``data`` lines of one event are joined with LF; a blank line dispatches the event, unless no
  ``data`` field was seen (a comment-only block such as ``: keep-alive`` dispatches nothing);
- an event the stream ends inside (no blank line after it) is not dispatched.

Bytes are decoded with the standard library's incremental UTF-8 decoder rather than httpx's
``iter_lines``: that one splits on every Unicode line boundary (U+2028, U+0085...), which SSE
does not, and the load tests hand over bytes from another HTTP engine. Every byte is looked at
a bounded number of times, so a long line arriving in small chunks is read in linear time.

Besides the events, the reader keeps the framing facts a conformance check judges a server by
(see :class:`Framing`).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

#: the fields the standard gives a meaning to; any other field is ignored
FIELDS = frozenset({"data", "event", "id", "retry"})
_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass
class Event:
    data: str
    event: str | None = None
    id: str | None = None
    #: the raw lines of the event (comments included), for failure messages
    lines: list[str] = field(default_factory=list)


@dataclass
class Framing:
    """Facts about the stream's framing, filled in as it is read."""

    #: True when the stream ended inside an event (no blank line after it); that event is not
    #: dispatched, as the standard says, and is kept in ``incomplete``
    unterminated: bool = False
    #: the lines of the event the stream ended inside, if any
    incomplete: list[str] = field(default_factory=list)
    #: lines naming a field the standard does not define (the standard ignores them)
    unknown_fields: list[str] = field(default_factory=list)
    #: comment lines seen (``: keep-alive``); legal and ignored
    comments: int = 0
    #: True when the stream started with a byte order mark (legal and ignored)
    bom: bool = False


def iter_lines(chunks: Iterable[bytes], framing: Framing | None = None) -> Iterator[str]:
    """The stream's lines, decoded as UTF-8 across chunk boundaries, without their line ends.

    A final line without a line end is yielded too (the caller decides what an unterminated
    line means)."""
    framing = framing if framing is not None else Framing()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []  # pieces of the line being read, joined once it ends
    skip_lf = False  # the previous piece ended with CR: a leading LF completes that CRLF
    first = True

    def pieces() -> Iterator[str]:
        for chunk in chunks:
            text = decoder.decode(chunk)
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    for text in pieces():
        if first:
            first = False
            if text.startswith(_BOM):
                framing.bom = True
                text = text[1:]
        if skip_lf and text.startswith("\n"):
            text = text[1:]
        skip_lf = False
        start = 0
        for match in _LINE_END.finditer(text):
            pending.append(text[start : match.start()])
            yield "".join(pending)
            pending.clear()
            start = match.end()
        if start < len(text):
            pending.append(text[start:])
        elif text.endswith("\r"):
            skip_lf = True
    if pending:
        yield "".join(pending)


def parse_events(chunks: Iterable[bytes], framing: Framing | None = None) -> Iterator[Event]:
    """Yield events from a byte stream as they complete."""
    framing = framing if framing is not None else Framing()
    data: list[str] = []
    has_data = False
    lines: list[str] = []
    event_name: str | None = None
    event_id: str | None = None
    for line in iter_lines(chunks, framing):
        if line == "":
            if has_data:
                yield Event("\n".join(data), event_name, event_id, lines)
            data, has_data, lines, event_name = [], False, [], None
            continue
        lines.append(line)
        if line.startswith(":"):
            framing.comments += 1
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
            has_data = True
        elif name == "event":
            event_name = value
        elif name == "id":
            if "\0" not in value:
                event_id = value
        elif name not in FIELDS:
            framing.unknown_fields.append(line)
    if lines and any(not line.startswith(":") for line in lines):
        framing.unterminated = True
        framing.incomplete = lines
