"""Open Inference Protocol (V2) over REST."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from servegate.protocols.http import HttpSession, Reply, Transport
from servegate.targets import Connection


def _model_path(model: str, version: str | None = None) -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{quote(version, safe='')}"
    return path


class V2RestClient:
    """Every V2 REST endpoint; each call returns the raw Reply for the caller to judge."""

    def __init__(
        self,
        base_url: str,
        connection: Connection | None = None,
        transport: Transport | None = None,
    ):
        self.http = HttpSession(base_url, connection, protocol="v2-rest", transport=transport)

    def close(self) -> None:
        self.http.close()

    def live(self) -> Reply:
        return self.http.get("/v2/health/live")

    def ready(self) -> Reply:
        return self.http.get("/v2/health/ready")

    def server_metadata(self) -> Reply:
        return self.http.get("/v2")

    def model_metadata(self, model: str, version: str | None = None) -> Reply:
        return self.http.get(_model_path(model, version))

    def model_ready(self, model: str, version: str | None = None) -> Reply:
        return self.http.get(_model_path(model, version) + "/ready")

    def infer(
        self,
        model: str,
        request: dict[str, Any] | None = None,
        *,
        version: str | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """POST an inference request: a JSON dict, or raw ``content`` (binary extension)."""
        path = _model_path(model, version) + "/infer"
        if content is not None:
            return self.http.post(path, content=content, headers=headers)
        return self.http.post(path, json=request, headers=headers)

    def repository_index(self) -> Reply:
        """MLServer's and Triton's model repository extension."""
        return self.http.post("/v2/repository/index", json={})
