"""A loopback HTTP server that answers from a script, standing in for Amplitude in client tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from amp_sync.sandbox import _form  # the sandbox's own form reader: url-encoded or multipart

DROP = "drop"  # close the connection without answering


@dataclass
class Scripted:
    """Answers each request with the next scripted (status, body), then 200 'success' forever."""

    script: list[tuple[int, str] | str] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> tuple[int, str] | str:
        with self.lock:
            return self.script.pop(0) if self.script else (200, "success")


def serve(scripted: Scripted) -> tuple[ThreadingHTTPServer, str]:
    """Start the server in a thread; returns it and its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            form = {k: [v] for k, v in _form(body).items()}
            with scripted.lock:
                scripted.received.append({"path": self.path, "form": form, "size": len(body)})
            answer = scripted.next_answer()
            if answer == DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, text = answer
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
