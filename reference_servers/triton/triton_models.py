"""The models servegate binds into Triton through PyTriton, and the script that serves them.

Runs inside the Triton env (``python triton_models.py --http-port P --grpc-port G
--metrics-port M``); imports pytriton and numpy only.

PyTriton's workspace (model store and the Unix sockets between Triton's Python-backend stubs
and this process) lives in a short temporary folder, removed at exit: a socket path may not
exceed 107 bytes, which a workspace under a deep state dir does.

- ``numeric-echo`` keeps servegate's numeric-echo contract as far as a Triton model config can
  say it: one optional input per V2 datatype, named by the lower-case datatype (``int32``...),
  shape [-1]; for each input given, an output of the same name, datatype, shape and values, and
  for each numeric one ``<name>_sum`` (FP64 [1], ``math.fsum``; BOOL counts the true elements).
  Triton itself honours the request ``outputs`` list. What a config cannot say: any other input
  name, another datatype under a known name, and any rank but 1 (Triton refuses them before the
  model runs).
- ``identity``: FP32, batched (max_batch_size 8), ``input`` [-1,-1] -> ``output``.
- ``bytes-echo``: BYTES ``text`` [-1] -> ``text`` (the same strings) and ``length`` (INT64,
  bytes in each string).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.bytes_,
}
SUM_SUFFIX = "_sum"
NUMERIC_MODEL = "numeric-echo"
IDENTITY_MODEL = "identity"
BYTES_MODEL = "bytes-echo"
MODELS = (NUMERIC_MODEL, IDENTITY_MODEL, BYTES_MODEL)


def _sum(values: np.ndarray) -> float:
    floats = [float(v) for v in values.ravel().tolist()]
    try:
        return math.fsum(floats)
    except (ValueError, OverflowError):
        # fsum refuses inf + -inf and overflowing partial sums; IEEE addition gives these
        return float(np.sum(np.asarray(floats, dtype=np.float64)))


def numeric_echo(requests: list[Any]) -> list[dict[str, np.ndarray]]:
    """Each input back unchanged, plus the FP64 sum of each numeric input."""
    responses = []
    for request in requests:
        if len(request) == 0:
            # every input is optional, so Triton lets an empty request through
            raise ValueError("the request has no inputs")
        produced: dict[str, np.ndarray] = {}
        for name, array in request.items():
            produced[name] = array
            if array.dtype.kind not in "OSU":
                produced[name + SUM_SUFFIX] = np.array([_sum(array)], dtype=np.float64)
        responses.append(produced)
    return responses


def identity(requests: list[Any]) -> list[dict[str, np.ndarray]]:
    return [{"output": request["input"]} for request in requests]


def bytes_echo(requests: list[Any]) -> list[dict[str, np.ndarray]]:
    responses = []
    for request in requests:
        text = request["text"]
        lengths = np.array([len(v) for v in text.ravel().tolist()], dtype=np.int64)
        responses.append({"text": text, "length": lengths.reshape(text.shape)})
    return responses


def bind(triton: Triton) -> None:
    """Bind the three models."""
    inputs = [
        Tensor(name=dt.lower(), dtype=t, shape=(-1,), optional=True)
        for dt, t in NUMPY_DTYPES.items()
    ]
    sums = [
        Tensor(name=dt.lower() + SUM_SUFFIX, dtype=np.float64, shape=(1,))
        for dt in NUMPY_DTYPES
        if dt != "BYTES"
    ]
    echoes = [Tensor(name=dt.lower(), dtype=t, shape=(-1,)) for dt, t in NUMPY_DTYPES.items()]
    triton.bind(
        model_name=NUMERIC_MODEL,
        infer_func=numeric_echo,
        inputs=inputs,
        outputs=echoes + sums,
        config=ModelConfig(batching=False),
    )
    triton.bind(
        model_name=IDENTITY_MODEL,
        infer_func=identity,
        inputs=[Tensor(name="input", dtype=np.float32, shape=(-1,))],
        outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
        config=ModelConfig(batching=True, max_batch_size=8),
    )
    triton.bind(
        model_name=BYTES_MODEL,
        infer_func=bytes_echo,
        inputs=[Tensor(name="text", dtype=np.bytes_, shape=(-1,))],
        outputs=[
            Tensor(name="text", dtype=np.bytes_, shape=(-1,)),
            Tensor(name="length", dtype=np.int64, shape=(-1,)),
        ],
        config=ModelConfig(batching=False),
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (the launcher's stop) leaves through the `with Triton` block, as Ctrl-C does,
    # so tritonserver is stopped and the workspace removed
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    config = TritonConfig(
        http_address=args.address,
        http_port=args.http_port,
        grpc_address=args.address,
        grpc_port=args.grpc_port,
        metrics_address=args.address,
        metrics_port=args.metrics_port,
        # CPU only: no GPU metrics to poll (the NVML/DCGM warnings are harmless either way)
        allow_gpu_metrics=False,
    )
    folder = Path(tempfile.mkdtemp(prefix="servegate-triton-"))
    try:
        # PyTriton makes the workspace folder itself and refuses an existing one
        with Triton(config=config, workspace=folder / "ws") as triton:
            bind(triton)
            # blocks until SIGINT/SIGTERM; leaving the block stops tritonserver and the stubs
            triton.serve()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
