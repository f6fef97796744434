"""The SSE parser: events, and the framing facts the streaming checks judge a server by."""

from __future__ import annotations

from servegate.protocols.sse import Framing, parse_events


def parse(*chunks: bytes) -> tuple[list[str], Framing]:
    framing = Framing()
    return [e.data for e in parse_events(chunks, framing)], framing


def test_events_end_with_a_blank_line_whatever_the_chunking():
    data, framing = parse(b'data: {"a": 1}\n', b"\ndata: [DO", b"NE]\n\n")
    assert data == ['{"a": 1}', "[DONE]"]
    assert not framing.unterminated and not framing.malformed_lines


def test_crlf_and_cr_line_ends_are_line_ends():
    data, _ = parse(b"data: x\r\n\r\ndata: y\r\r")
    assert data == ["x", "y"]


def test_a_missing_blank_line_joins_two_data_lines_into_one_event():
    data, _ = parse(b'data: {"a": 1}\ndata: {"b": 2}\n\n')
    assert data == ['{"a": 1}\n{"b": 2}']


def test_a_stream_ending_inside_an_event_is_unterminated():
    data, framing = parse(b"data: x\n\ndata: [DONE]\n")
    assert data == ["x", "[DONE]"]
    assert framing.unterminated


def test_lines_without_a_field_name_are_malformed_and_comments_are_not():
    data, framing = parse(b': keep-alive\n\n{"bare": true}\n\ndata: ok\n\n')
    assert framing.malformed_lines == ['{"bare": true}']
    assert data[-1] == "ok"
