"""A servegate run in a process of its own, for the container backend's cleanup tests.

``python tests/container_run_child.py STATE_DIR IMAGE READY_TIMEOUT`` starts MLServer's layout
on IMAGE (a test image that never gets ready) and waits; the test then signals or kills it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servegate.reference_servers.base import ServerSpec  # noqa: E402
from servegate.reference_servers.containers import start_container  # noqa: E402
from tests.test_containers import make_fake_fixtures  # noqa: E402


def main(state_dir: Path, image: str, ready_timeout: float) -> None:
    fixtures = make_fake_fixtures(state_dir / f"fake-fixtures-{os.getpid()}")
    spec = ServerSpec(
        runtime="mlserver",
        models=("tiny-fill-mask",),
        options={"image": image},
        ready_timeout=ready_timeout,
    )
    start_container(
        "mlserver", spec, fixtures, state_dir=state_dir, logs_dir=state_dir / "logs",
        log=lambda line: print(line, flush=True),
    )  # fmt: skip


if __name__ == "__main__":
    # Ctrl-C as a terminal delivers it, even when this test run was started as a background job
    # (which starts its children with SIGINT ignored, and Python then raises nothing on it)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]))
