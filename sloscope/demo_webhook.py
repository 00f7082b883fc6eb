"""The demo's notification receiver: a webhook on 127.0.0.1 that appends each delivery to a file.

`sloscope serve --demo` starts it and hands its URL to the notification policy as
``SLOSCOPE_DEMO_WEBHOOK_URL`` (examples/demo/policy.yaml), so a newcomer sees the notification a
burning SLO sends without configuring a real receiver: one JSON document per line in
``<data-dir>/demo-webhook.log``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1 << 20


class WebhookLog:
    """Accepts POSTs and appends their JSON bodies, one per line, to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_BODY:
                    self.send_response(413 if length else 400)
                    self.end_headers()
                    return
                body = self.rfile.read(length)
                try:
                    line = json.dumps(json.loads(body), separators=(",", ":"))
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with lock, path.open("a", encoding="utf-8") as log:
                    log.write(line + "\n")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:  # the server's own log says enough
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-webhook", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
