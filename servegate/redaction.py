"""Keeping secrets out of reports and logs.

Two nets: patterns that catch anything shaped like a credential (bearer tokens, HuggingFace and
OpenAI keys, ``api_key=`` parameters, passwords in URLs), and the exact values the run was given
(``--header`` values, HF_TOKEN from the environment), caught wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
)
#: a header whose name says it carries a credential, whatever the exact name
_SENSITIVE_HEADER_NAME = re.compile(r"(?i)(auth|token|secret|passw|api[-_]?key|cookie|session)")
REDACTED = "***"

#: environment variables whose values are credentials; their values are redacted wherever seen
SECRET_ENV_VARS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_TOKEN",
    "OPENAI_API_KEY",
    "KSERVE_TOKEN",
    "SERVEGATE_TOKEN",
)

# In this order; each pattern keeps group 1 (the label) when it has one and replaces the rest.
_SECRET_PATTERNS = (
    re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{8,}\b"),
    re.compile(r"(?i)\b((?:HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_TOKEN|OPENAI_API_KEY)=)\S+"),
    # query parameters and form fields: ?api_key=..., &token=..., access_token=...
    re.compile(r"(?i)([?&;](?:api[-_]?key|key|token|access_token|password|secret)=)[^&#\s\"']+"),
    # JSON or YAML fields: "api_key": "...", authorization: ...
    re.compile(
        r"(?i)([\"']?(?:api[-_]?key|authorization|access[-_]?token|password|secret|hf[-_]?token)"
        r"[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)(?:(?:bearer|basic)\s+)?[^\"',}\s]+"
    ),
    re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]{4,}"),
    # credentials in a URL: https://user:pass@host
    re.compile(r"(://[^/\s:@]+:)[^/\s@]+(?=@)"),
)

#: shorter known values are not replaced: they would blank out ordinary words and numbers
MIN_SECRET_LENGTH = 6


def is_sensitive_header(name: str) -> bool:
    lower = name.lower()
    return lower in SENSITIVE_HEADERS or bool(_SENSITIVE_HEADER_NAME.search(lower))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Copy of headers with the values of credential-bearing headers replaced."""
    return {k: (REDACTED if is_sensitive_header(k) else v) for k, v in headers.items()}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text with the known ``secrets`` and anything that looks like a token or key replaced."""
    for secret in sorted(
        {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    ):
        text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_data(data: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of JSON-like data with sensitive mapping keys blanked and every string redacted."""
    secrets = tuple(secrets)
    if isinstance(data, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and is_sensitive_header(k) and v
                else redact_data(v, secrets)
            )
            for k, v in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [redact_data(v, secrets) for v in data]
    if isinstance(data, str):
        return redact_text(data, secrets)
    return data


def secrets_from(headers: Mapping[str, str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values a run was given that must never be written: credential header values (and
    the token after a scheme such as "Bearer"), and the credential environment variables."""
    out: list[str] = []
    for name, value in headers.items():
        if is_sensitive_header(name) and value:
            out.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                out.append(token.strip())
    out += [environ[v] for v in SECRET_ENV_VARS if environ.get(v)]
    return tuple(s for s in dict.fromkeys(out) if len(s) >= MIN_SECRET_LENGTH)
