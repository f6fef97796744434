"""A record of one request and its response, so a failure can say what was sent and seen."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from servegate.redaction import redact_headers

#: how much of a body a report keeps; enough to read, small enough for a CI summary
BODY_EXCERPT = 2000


def excerpt(data: bytes | str | None, limit: int = BODY_EXCERPT) -> str:
    """A printable excerpt of a body: text as it is, binary as a length and a hex prefix."""
    if data is None:
        return ""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(data)} bytes of binary data: {data[:32].hex()}...>"
    else:
        text = data
    if len(text) > limit:
        return text[:limit] + f"... <{len(text) - limit} more characters>"
    return text


@dataclass
class Exchange:
    """One request and what came back (status None when no response arrived)."""

    protocol: str
    method: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: str = ""
    status: int | str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""

    def describe(self) -> str:
        """The exchange as a reader of a failed check wants it."""
        lines = [f"request: {self.method} {self.url}"]
        if self.request_body:
            lines.append(f"  body: {self.request_body}")
        if self.status is None:
            lines.append("response: none")
        else:
            ctype = self.response_headers.get("content-type", "")
            lines.append(f"response: {self.status}" + (f" ({ctype})" if ctype else ""))
            if self.response_body:
                lines.append(f"  body: {self.response_body}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "method": self.method,
            "url": self.url,
            "request_headers": redact_headers(self.request_headers),
            "request_body": self.request_body,
            "status": self.status,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
        }


def json_excerpt(payload: Any) -> str:
    try:
        return excerpt(json.dumps(payload, default=str))
    except (TypeError, ValueError):
        return excerpt(repr(payload))
