"""Composes the deviation server: the route modules, the gRPC services and the control endpoint.

A REST route module exposes ``routes() -> list[Route]``; a gRPC module exposes
``add_to_server(server)``; either may expose ``reset()`` to clear its state when switches are
set. Add a protocol area by writing its module and naming it in :data:`REST_MODULES` /
:data:`GRPC_MODULES`; its switches register themselves on import.

Control endpoint (not part of any protocol):

- ``GET /_deviation/switches``: ``{"on": [...], "switches": [{name, area, description, checks}]}``
- ``PUT /_deviation/switches`` with ``{"on": [names]}``: exactly those switches on (400 for an
  unknown name); every module's state is reset.
"""

from __future__ import annotations

import importlib
from concurrent import futures
from dataclasses import asdict
from types import ModuleType

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.deviation_server.switches import BOARD, REGISTRY

PACKAGE = "tests.deviation_server"
REST_MODULES = ("v2_rest", "v1", "openai")
GRPC_MODULES = ("v2_grpc",)
CONTROL_PATH = "/_deviation/switches"


def _modules(names: tuple[str, ...]) -> list[ModuleType]:
    return [importlib.import_module(f"{PACKAGE}.{name}") for name in names]


def load_all() -> None:
    """Import every module so that every switch is registered."""
    _modules(REST_MODULES + GRPC_MODULES)


def _reset() -> None:
    for module in _modules(REST_MODULES + GRPC_MODULES):
        reset = getattr(module, "reset", None)
        if reset is not None:
            reset()


async def _control(request: Request) -> Response:
    if request.method == "PUT":
        try:
            body = await request.json()
            names = body["on"]
            if not isinstance(names, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"on": [switch names]}'}, status_code=400)
        try:
            BOARD.set(names)
        except KeyError as exc:
            return JSONResponse({"error": f"unknown switch(es): {exc.args[0]}"}, status_code=400)
        _reset()
    return JSONResponse(
        {
            "on": BOARD.active,
            "switches": [asdict(s) for s in REGISTRY.values()],
        }
    )


def build_app() -> Starlette:
    """The REST application: every route module plus the control endpoint."""
    routes: list[Route] = [Route(CONTROL_PATH, _control, methods=["GET", "PUT"])]
    for module in _modules(REST_MODULES):
        routes.extend(module.routes())
    return Starlette(routes=routes)


def build_grpc_server(port: int, host: str = "127.0.0.1") -> grpc.Server:
    """The gRPC server with every gRPC module's services, bound but not started."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    for module in _modules(GRPC_MODULES):
        module.add_to_server(server)
    server.add_insecure_port(f"{host}:{port}")
    return server
