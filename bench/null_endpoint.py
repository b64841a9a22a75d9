"""`python -m bench.null_endpoint PORT`: an Amplitude endpoint that does nothing but say success.

It reads each request and answers what Amplitude answers when all is well ("success" on /identify
and /groupidentify, the HTTP V2 success body on /2/httpapi and /batch), without parsing,
validating or keeping anything. A backfill against it measures the client alone: the ceiling of
each client, not a target. Keep-alive, one write per answer and Nagle off, as the sandbox, so
neither client waits on the server or on TCP.

It counts requests and items (occurrences of `"user_id"`: one per item in the benchmark's rows)
so that the benchmark can check every row left the client; GET /received reads the counts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

EVENT_PATHS = ("/2/httpapi", "/batch")
ITEM_MARK = b'"user_id"'


class _Counts:
    """Requests and items received; a lock, as each connection has its own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.items = 0

    def add(self, items: int) -> None:
        with self._lock:
            self.requests += 1
            self.items += items

    def reset(self) -> None:
        with self._lock:
            self.requests = self.items = 0

    def read(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "items": self.items}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Write nothing."""

    def do_GET(self) -> None:
        if self.path == "/received":
            self._answer(json.dumps(_counts(self).read()).encode(), "application/json")
        else:  # /health and anything else
            self._answer(b"ok", "text/plain")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/received/reset":
            _counts(self).reset()
            self._answer(b"ok", "text/plain")
            return
        items = body.count(ITEM_MARK)
        _counts(self).add(items)
        if self.path in EVENT_PATHS:
            # What Amplitude answers; events_ingested is the count above, as nothing is parsed.
            answer = {
                "code": 200,
                "events_ingested": items,
                "payload_size_bytes": len(body),
                "server_upload_time": int(time.time() * 1000),
            }
            self._answer(json.dumps(answer).encode(), "application/json")
        else:  # /identify and /groupidentify
            self._answer(b"success", "text/plain")

    def _answer(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _counts(handler: BaseHTTPRequestHandler) -> _Counts:
    return cast(_Server, handler.server).counts


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # as the sandbox: several senders connect at once

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.counts = _Counts()


def main(argv: list[str]) -> int:
    """Serve on 127.0.0.1:PORT until terminated."""
    server = _Server(int(argv[0]))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
