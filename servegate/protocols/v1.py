"""KServe V1 (TensorFlow Serving style) protocol over REST."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from servegate.protocols.http import HttpSession, Reply, Transport
from servegate.targets import Connection


class ModelStatus(BaseModel):
    """``GET /v1/models/{m}``: ``{"name": ..., "ready": ...}``."""

    model_config = ConfigDict(extra="allow")
    name: str
    ready: bool


class ModelList(BaseModel):
    """``GET /v1/models``: ``{"models": [names]}``."""

    model_config = ConfigDict(extra="allow")
    models: list[str]


class PredictResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    predictions: list[Any]


class V1Client:
    def __init__(
        self,
        base_url: str,
        connection: Connection | None = None,
        transport: Transport | None = None,
    ):
        self.http = HttpSession(base_url, connection, protocol="v1", transport=transport)

    def close(self) -> None:
        self.http.close()

    def models(self) -> Reply:
        return self.http.get("/v1/models")

    def model(self, model: str) -> Reply:
        return self.http.get(f"/v1/models/{quote(model, safe='')}")

    def predict(
        self,
        model: str,
        body: dict[str, Any] | None = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        path = f"/v1/models/{quote(model, safe='')}:predict"
        if content is not None:
            return self.http.post(path, content=content, headers=headers)
        return self.http.post(path, json=body, headers=headers)
