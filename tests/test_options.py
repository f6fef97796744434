"""Option parsing: every bad value is named in a one-line error."""

from __future__ import annotations

import pytest

from servegate.entry.options import build_run_options
from servegate.errors import BadTarget

BASE = dict(
    target=None,
    grpc_target=None,
    models=[],
    openai_base="/openai/v1",
    headers=[],
    insecure=False,
    ca_bundle=None,
    request_timeout=30.0,
    servers="mlserver,kserve",
    backend="local",
    device="cpu",
    state_dir=".servegate",
    reports_dir="reports",
    ready_timeout=60.0,
)


def opts(**kw):
    return build_run_options(**{**BASE, **kw})


def test_defaults_start_both_reference_servers():
    options = opts()
    assert options.target is None
    assert options.servers == ("mlserver", "kserve")


def test_all_starts_every_reference_implementation():
    from servegate.reference_servers.registry import RUNTIMES

    options = opts(servers="all")
    assert options.servers == tuple(RUNTIMES)
    assert {"mlserver", "kserve", "triton"} <= set(options.servers)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"target": "localhost:8080"}, "expected an http:// or https:// URL"),
        ({"target": "http://"}, "no host name"),
        ({"target": "http://host:99999"}, "Port out of range"),
        ({"target": "http://host:8080/?x=1"}, "no query"),
        ({"target": "http://h:1", "grpc_target": "h"}, "expected host:port"),
        ({"grpc_target": "h:1"}, "--grpc-target needs --target"),
        ({"target": "http://h:1", "models": ["m="]}, "expected NAME or NAME=TASK"),
        ({"target": "http://h:1", "models": ["m=summarize-poems"]}, "unknown task"),
        ({"servers": "mlserver,torchserve"}, "unknown server(s) torchserve"),
        ({"servers": ""}, "(none given)"),
        ({"headers": ["Authorization"]}, "expected 'Name: value'"),
        ({"request_timeout": 0}, "positive number"),
        ({"ca_bundle": "/no/such/ca.pem"}, "no such file"),
        ({"features": "v2-rest,warp-drive"}, "unknown feature(s) warp-drive"),
    ],
)
def test_bad_values_are_named(kw, message):
    with pytest.raises(BadTarget) as err:
        opts(**kw)
    assert message in str(err.value)


def test_target_options_build_a_target():
    options = opts(
        target="https://models.example.com:8443/",
        grpc_target="models.example.com:9000",
        models=["bert=fill-mask"],
        headers=["Authorization: Bearer abc"],
        insecure=True,
    )
    target = options.target
    assert target is not None
    assert target.http_url == "https://models.example.com:8443"
    assert target.grpc_address == "models.example.com:9000"
    assert target.connection.headers == {"Authorization": "Bearer abc"}
    assert target.connection.verify is False
    assert options.model_tasks == {"bert": "fill-mask"}
    assert options.servers == ()
