"""A do-nothing stand-in for the API and S3 on loopback, to show the harness itself is not the bottleneck.

It answers presign with a grant pointing back at itself and swallows upload bodies, so what is measured is the
harness: its threads, its HTTP client, reading the corpus, building multipart bodies.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the harness's sessions expect

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        remaining = length
        while remaining > 0:  # drain the body without keeping it
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
        if self.path == "/uploads":
            image_id = str(uuid.uuid4())
            upload_url = f"http://{self.headers.get('Host', '127.0.0.1')}/bucket"
            body = json.dumps({"upload_url": upload_url, "image_id": image_id, "fields": {"key": image_id}}).encode()
            self._answer(201, body)
        else:
            self._answer(204, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _SinkServer(ThreadingHTTPServer):
    request_queue_size = 512  # the stdlib's 5 refuses connections when many uploads open at once


class UploadSink:
    def __init__(self) -> None:
        self._server = _SinkServer(("127.0.0.1", 0), _SinkHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="upload-sink", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> UploadSink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
