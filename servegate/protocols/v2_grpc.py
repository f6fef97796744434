"""Open Inference Protocol (V2) over gRPC (inference.GRPCInferenceService).

The message and stub classes come from tritonclient, whose service is a superset of the
protocol's under the same package and service names, so the bytes on the wire are the ones any
V2 server expects.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from servegate.checks import RuleViolation
from servegate.errors import BadTarget, Unreachable
from servegate.protocols import binary_tensor
from servegate.protocols.exchange import Exchange, excerpt
from servegate.targets import Connection, Target

#: V2 datatype -> (InferTensorContents field, numpy dtype for raw contents)
CONTENTS_FIELD: dict[str, tuple[str, str | None]] = {
    "BOOL": ("bool_contents", "bool"),
    "UINT8": ("uint_contents", "uint8"),
    "UINT16": ("uint_contents", "uint16"),
    "UINT32": ("uint_contents", "uint32"),
    "UINT64": ("uint64_contents", "uint64"),
    "INT8": ("int_contents", "int8"),
    "INT16": ("int_contents", "int16"),
    "INT32": ("int_contents", "int32"),
    "INT64": ("int64_contents", "int64"),
    "FP16": ("", "float16"),  # no typed field: FP16 travels only as raw contents
    "FP32": ("fp32_contents", "float32"),
    "FP64": ("fp64_contents", "float64"),
    "BF16": ("", None),  # raw only too, and no numpy type: the binary tensor codec has it
    "BYTES": ("bytes_contents", None),
}


@dataclass
class GrpcReply:
    """A gRPC call's outcome: the response message, or the status code and details."""

    code: grpc.StatusCode
    details: str
    message: Any
    exchange: Exchange

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    @property
    def status(self) -> str:
        """The code's name ("INVALID_ARGUMENT"), as an HTTP reply's status says how it ended."""
        return self.code.name

    def describe(self) -> str:
        return self.exchange.describe()


#: channel options every client sets: messages as large as the protocol's tensors may be
MESSAGE_LIMITS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def uses_tls(target: Target) -> bool:
    """Whether the target's gRPC endpoint speaks TLS: it does when its HTTP endpoint does
    (one server, one certificate), as ``--target https://...`` says."""
    return target.http_url.lower().startswith("https://")


def call_metadata(connection: Connection) -> tuple[tuple[str, str], ...]:
    """The connection's extra headers as gRPC call metadata (keys must be lowercase)."""
    return tuple((name.lower(), value) for name, value in connection.headers.items())


@dataclass(frozen=True)
class TlsSettings:
    """What a secure gRPC channel needs: the roots to trust and the name to check."""

    root_certificates: bytes | None
    #: the certificate name to check instead of the address's host (``--insecure``)
    name_override: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def options(self) -> list[tuple[str, str]]:
        if self.name_override is None:
            return []
        return [("grpc.ssl_target_name_override", self.name_override)]


def tls_settings(address: str, verify: bool | str, timeout: float = 10.0) -> TlsSettings:
    """The TLS settings for a gRPC channel to ``address`` under a Connection's ``verify``.

    - True: the system's (grpc's) trusted roots; the host name is checked.
    - A CA bundle path: those roots; the host name is checked.
    - False (``--insecure``): grpc cannot turn verification off, so servegate fetches the
      certificate the server presents and trusts that one certificate under its own name:
      the channel is encrypted but the server is not authenticated. This works for a
      self-signed certificate; one issued by a CA needs that CA as ``--ca-bundle``.
    """
    if verify is True:
        return TlsSettings(None)
    if isinstance(verify, str):
        try:
            return TlsSettings(Path(verify).read_bytes())
        except OSError as exc:
            raise BadTarget(f"--ca-bundle {verify!r}: {exc.strerror or exc}") from None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        pem = ssl.get_server_certificate((host, int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise Unreachable(f"gRPC {address}: no TLS certificate could be read ({exc})") from None
    return TlsSettings(pem.encode(), _certificate_name(host, int(port), pem, address, timeout))


def _certificate_name(host: str, port: int, pem: str, address: str, timeout: float) -> str:
    """A name the certificate holds (a DNS or IP subjectAltName, else its common name), read
    by trusting the certificate itself: only a self-signed one verifies that way."""
    context = ssl.create_default_context(cadata=pem)
    context.check_hostname = False
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            cert: dict[str, Any] = dict(tls.getpeercert() or {})
    except ssl.SSLCertVerificationError:
        raise BadTarget(
            f"gRPC {address}: --insecure cannot apply to gRPC here: grpc always verifies "
            "certificates, and this one is not self-signed; pass its CA with --ca-bundle"
        ) from None
    except OSError as exc:
        raise Unreachable(f"gRPC {address}: {exc}") from None
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address"):
            return str(value)
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    raise BadTarget(f"gRPC {address}: the server's certificate names no host")


class V2GrpcClient:
    """Every V2 gRPC RPC; each call returns a GrpcReply for the caller to judge.

    ``connection`` adds its headers to every call's metadata; ``tls`` makes the channel
    secure under the connection's ``verify`` (see :func:`tls_settings`).
    """

    def __init__(
        self,
        address: str,
        timeout: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
        *,
        connection: Connection | None = None,
        tls: bool = False,
    ):
        self.address = address
        self.timeout = timeout
        self.metadata = tuple(metadata) + (call_metadata(connection) if connection else ())
        #: what is sent, for exchange records (reports redact credentials)
        self._headers = dict(self.metadata)
        if tls:
            settings = tls_settings(address, connection.verify if connection else True, timeout)
            self._channel = grpc.secure_channel(
                address, settings.credentials(), options=MESSAGE_LIMITS + settings.options()
            )
        else:
            self._channel = grpc.insecure_channel(address, options=MESSAGE_LIMITS)
        self.scheme = "grpcs" if tls else "grpc"
        self.stub = pb_grpc.GRPCInferenceServiceStub(self._channel)

    @classmethod
    def for_target(cls, target: Target, timeout: float | None = None) -> V2GrpcClient:
        """A client for the target's gRPC endpoint with its headers and TLS settings."""
        if not target.grpc_address:
            raise BadTarget(f"{target.name} has no gRPC address (--grpc-target)")
        return cls(
            target.grpc_address,
            timeout=target.connection.timeout if timeout is None else timeout,
            connection=target.connection,
            tls=uses_tls(target),
        )

    def close(self) -> None:
        self._channel.close()

    def call(self, rpc: str, request: Any) -> GrpcReply:
        exchange = Exchange(
            protocol="v2-grpc",
            method="RPC",
            url=f"{self.scheme}://{self.address}/inference.GRPCInferenceService/{rpc}",
            request_headers=dict(self._headers),
            request_body=excerpt(text_format.MessageToString(request, as_one_line=True)),
        )
        try:
            message = getattr(self.stub, rpc)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            details = err.details() or ""  # type: ignore[attr-defined]
            if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
                raise Unreachable(f"gRPC {self.address}: {details}") from None
            exchange.status = code.name
            exchange.response_body = excerpt(details)
            return GrpcReply(code, details, None, exchange)
        exchange.status = "OK"
        exchange.response_body = excerpt(text_format.MessageToString(message, as_one_line=True))
        return GrpcReply(grpc.StatusCode.OK, "", message, exchange)

    def live(self) -> GrpcReply:
        return self.call("ServerLive", pb.ServerLiveRequest())

    def ready(self) -> GrpcReply:
        return self.call("ServerReady", pb.ServerReadyRequest())

    def model_ready(self, model: str, version: str = "") -> GrpcReply:
        return self.call("ModelReady", pb.ModelReadyRequest(name=model, version=version))

    def server_metadata(self) -> GrpcReply:
        return self.call("ServerMetadata", pb.ServerMetadataRequest())

    def model_metadata(self, model: str, version: str = "") -> GrpcReply:
        return self.call("ModelMetadata", pb.ModelMetadataRequest(name=model, version=version))

    def infer(self, request: pb.ModelInferRequest) -> GrpcReply:
        return self.call("ModelInfer", request)


def infer_input(
    name: str, datatype: str, shape: Sequence[int], data: Sequence[Any], *, raw: bool = False
) -> tuple[pb.ModelInferRequest.InferInputTensor, bytes | None]:
    """Build a request tensor from flat data: typed contents, or raw bytes when ``raw``.

    Returns the tensor and, for raw, the bytes to append to raw_input_contents.
    """
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    field, np_dtype = CONTENTS_FIELD[datatype]
    if raw or not field:
        return tensor, encode_raw(datatype, data)
    values = [v.encode() if isinstance(v, str) else v for v in data]
    getattr(tensor.contents, field).extend(values)
    return tensor, None


def encode_raw(datatype: str, data: Sequence[Any]) -> bytes:
    """Raw tensor bytes: little-endian elements; BYTES as 4-byte length prefixes + bytes."""
    if datatype == "BYTES":
        out = bytearray()
        for item in data:
            b = item.encode() if isinstance(item, str) else bytes(item)
            out += len(b).to_bytes(4, "little") + b
        return bytes(out)
    if datatype == binary_tensor.BF16:
        return binary_tensor.encode_tensor(datatype, data)
    np_dtype = CONTENTS_FIELD[datatype][1]
    return np.asarray(data, dtype=np_dtype).astype(np.dtype(np_dtype).newbyteorder("<")).tobytes()


def decode_raw(datatype: str, raw: bytes) -> list[Any]:
    """Inverse of encode_raw, flat."""
    if datatype == "BYTES":
        out, pos = [], 0
        while pos < len(raw):
            size = int.from_bytes(raw[pos : pos + 4], "little")
            out.append(raw[pos + 4 : pos + 4 + size])
            pos += 4 + size
        return out
    if datatype == binary_tensor.BF16:
        return binary_tensor.decode_tensor(datatype, raw)
    np_dtype = np.dtype(CONTENTS_FIELD[datatype][1]).newbyteorder("<")
    return np.frombuffer(raw, dtype=np_dtype).tolist()


#: grpc_predict_v2.proto, ModelInferResponse.raw_output_contents
RAW_OUTPUTS_RULE = (
    "to use the raw representation 'raw_output_contents' must be initialized with data for each "
    "tensor in the same order as 'outputs'"
)


def output_values(response: pb.ModelInferResponse, index: int) -> list[Any]:
    """Flat values of response output ``index``, from raw contents or typed contents."""
    out = response.outputs[index]
    if response.raw_output_contents:
        # paired by index, a missing entry would give an output another output's bytes
        count, outputs = len(response.raw_output_contents), len(response.outputs)
        if count != outputs:
            names = ", ".join(o.name for o in response.outputs)
            raise RuleViolation(
                RAW_OUTPUTS_RULE,
                f"raw_output_contents has {count} entries for {outputs} outputs ({names})",
            )
        return decode_raw(out.datatype, response.raw_output_contents[index])
    field = CONTENTS_FIELD.get(out.datatype, ("", None))[0]
    if not field:
        return []
    return list(getattr(out.contents, field))


def build_request(
    model: str,
    inputs: Sequence[tuple[str, str, Sequence[int], Sequence[Any]]],
    *,
    raw: bool = False,
    request_id: str = "",
    version: str = "",
    outputs: Sequence[str] = (),
) -> pb.ModelInferRequest:
    """A ModelInferRequest from (name, datatype, shape, flat data) tuples."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    raws: list[bytes] = []
    for name, datatype, shape, data in inputs:
        tensor, raw_bytes = infer_input(name, datatype, shape, data, raw=raw)
        request.inputs.append(tensor)
        if raw_bytes is not None:
            raws.append(raw_bytes)
    if raws:
        if len(raws) != len(request.inputs):
            # raw and typed contents cannot be mixed in one request: send all raw
            request.ClearField("inputs")
            raws = []
            for name, datatype, shape, data in inputs:
                tensor, raw_bytes = infer_input(name, datatype, shape, data, raw=True)
                request.inputs.append(tensor)
                raws.append(raw_bytes or b"")
        request.raw_input_contents.extend(raws)
    for name in outputs:
        request.outputs.append(pb.ModelInferRequest.InferRequestedOutputTensor(name=name))
    return request
