"""The SSE reader: events as the HTML standard dispatches them, whatever the network chunking,
and the framing facts the streaming checks judge a server by."""

from __future__ import annotations

import time

import pytest

from servegate.protocols.sse import Framing, iter_lines, parse_events


def parse(*chunks: bytes) -> tuple[list[str], Framing]:
    framing = Framing()
    return [e.data for e in parse_events(chunks, framing)], framing


def test_events_end_with_a_blank_line_whatever_the_chunking():
    data, framing = parse(b'data: {"a": 1}\n', b"\ndata: [DO", b"NE]\n\n")
    assert data == ['{"a": 1}', "[DONE]"]
    assert not framing.unterminated and not framing.unknown_fields


@pytest.mark.parametrize(
    "chunks",
    [
        (b"data: x\r\n\r\ndata: y\r\r",),
        (b"data: x\r", b"\n\r", b"\ndata: y\r", b"\r"),  # CRLF split between chunks
        (b"data: x\n\ndata: y\r\n\r\n",),
    ],
    ids=["crlf-and-cr", "crlf-split", "lf-and-crlf"],
)
def test_crlf_cr_and_lf_are_line_ends(chunks: tuple[bytes, ...]):
    data, framing = parse(*chunks)
    assert data == ["x", "y"]
    assert not framing.unterminated


def test_a_cr_then_lf_in_the_next_chunk_is_one_line_end_not_two():
    # were the LF taken as a second line end, the blank line would dispatch "x" alone
    data, _ = parse(b"data: x\r", b"\ndata: y\n\n")
    assert data == ["x\ny"]


def test_data_lines_of_one_event_are_joined_with_a_newline():
    data, _ = parse(b'data: {"a": 1}\ndata: {"b": 2}\n\n')
    assert data == ['{"a": 1}\n{"b": 2}']


def test_comment_lines_are_ignored_and_dispatch_nothing():
    data, framing = parse(b": keep-alive\n\ndata: a\n: ping in an event\n\n:\n\n")
    assert data == ["a"]
    assert framing.comments == 3
    assert not framing.unknown_fields and not framing.unterminated


def test_a_line_without_a_colon_is_a_field_with_an_empty_value():
    # "data" alone is a data field with an empty value: the event carries "" and is dispatched
    data, framing = parse(b"data\n\ndata\ndata: x\n\n")
    assert data == ["", "\nx"]
    assert not framing.unknown_fields


def test_unknown_fields_are_ignored_and_recorded():
    data, framing = parse(b'{"bare": true}\n\nretry: 10\nevent: e\nid: 7\ndata: ok\n\n')
    assert data == ["ok"]
    assert framing.unknown_fields == ['{"bare": true}']


def test_one_space_after_the_colon_is_dropped_and_no_more():
    data, _ = parse(b"data:x\n\ndata:  y\n\n")
    assert data == ["x", " y"]


def test_a_stream_ending_inside_an_event_does_not_dispatch_it():
    data, framing = parse(b"data: x\n\ndata: [DONE]\n")
    assert data == ["x"]
    assert framing.unterminated and framing.incomplete == ["data: [DONE]"]


def test_a_stream_ending_after_a_comment_is_not_unterminated():
    data, framing = parse(b"data: x\n\n: bye\n")
    assert data == ["x"] and not framing.unterminated


def test_a_leading_byte_order_mark_is_ignored_once():
    data, framing = parse(b"\xef\xbb\xbfdata: x\n\n")
    assert data == ["x"] and framing.bom
    # a BOM anywhere else is content
    data, _ = parse(b"data: \xef\xbb\xbfx\n\n")
    assert data == ["\ufeffx"]


def test_a_byte_order_mark_alone_in_the_first_chunk_is_ignored():
    data, framing = parse(b"\xef\xbb", b"\xbfdata: x\n\n")
    assert data == ["x"] and framing.bom


@pytest.mark.parametrize("char", ["é", "€", "𝄞"], ids=["2-bytes", "3-bytes", "4-bytes"])
def test_utf8_split_at_every_byte_offset_decodes_whole(char: str):
    encoded = char.encode()
    stream = f'data: {{"t": "a{char}b"}}\n\n'.encode()
    at = stream.index(encoded)
    for cut in range(at + 1, at + len(encoded)):
        data, _ = parse(stream[:cut], stream[cut:])
        assert data == [f'{{"t": "a{char}b"}}'], cut
    # and one byte a chunk
    data, _ = parse(*(stream[i : i + 1] for i in range(len(stream))))
    assert data == [f'{{"t": "a{char}b"}}']


def test_unicode_line_separators_are_not_sse_line_ends():
    data, _ = parse("data: a\u2028b\u0085c\x0bd\n\n".encode())
    assert data == ["a\u2028b\u0085c\x0bd"]


def test_invalid_utf8_is_replaced_not_raised():
    data, _ = parse(b"data: \xff\n\n")
    assert data == ["\ufffd"]


def test_iter_lines_yields_a_last_line_without_a_line_end():
    assert list(iter_lines([b"a\nb"])) == ["a", "b"]


def test_a_200_kb_line_in_64_byte_chunks_is_read_whole():
    """Read in linear time: the figure is printed (run with -s), never asserted."""
    line = b"data: " + b"x" * 200_000 + b"\n\n"
    chunks = [line[i : i + 64] for i in range(0, len(line), 64)]
    started = time.perf_counter()
    data, framing = parse(*chunks)
    elapsed = time.perf_counter() - started
    print(f"\n200 KB line in {len(chunks)} chunks of 64 bytes: {elapsed * 1000:.1f} ms")
    assert data == ["x" * 200_000]
    assert not framing.unterminated
