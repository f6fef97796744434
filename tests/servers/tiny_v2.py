"""A minimal V2 server (standard library only) for the launcher's and plugin's own tests.

Behaviour is set on the command line: how long until ready, whether to exit while starting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = {"tiny-text-classification": "text-classification"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument(
        "--exit-after",
        type=float,
        default=None,
        help="exit with code 3 after this many seconds, before being ready",
    )
    parser.add_argument("--never-listen", action="store_true")
    args = parser.parse_args()
    print("tiny_v2 starting", flush=True)
    if args.never_listen:
        time.sleep(3600)
    if args.exit_after is not None:
        time.sleep(args.exit_after)
        print("tiny_v2: fatal: cannot load model 'broken'", flush=True)
        sys.exit(3)
    ready_at = time.monotonic() + args.ready_after

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def _send(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            ready = time.monotonic() >= ready_at
            if self.path == "/v2/health/live":
                self._send(200, {})
            elif self.path == "/v2/health/ready" or (
                self.path.startswith("/v2/models/") and self.path.endswith("/ready")
            ):
                self._send(200 if ready else 503, {} if ready else {"error": "not ready"})
            elif self.path == "/v2":
                self._send(200, {"name": "tiny", "version": "0", "extensions": []})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self.path == "/v2/repository/index":
                self._send(200, [{"name": m, "state": "READY"} for m in MODELS])
            else:
                self._send(404, {"error": f"no route {self.path}"})

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"tiny_v2 listening on {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
