"""The outside world on loopback: a fake OpenAI-compatible provider and a webhook receiver."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {"prompt_tokens": 120, "completion_tokens": 30}


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _json(self, code: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def fake_openai() -> ThreadingHTTPServer:
    class Handler(_Quiet):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            tin, tout = USAGE["prompt_tokens"], USAGE["completion_tokens"]
            self._json(200, {"id": "chatcmpl-e2e", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}})

    return _serve(Handler)


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.refused = 0  # attempts answered 503 while down
        self.up = True
        receiver = self

        class Handler(_Quiet):
            def do_POST(self):  # noqa: N802
                data = self.rfile.read(int(self.headers.get("content-length", 0)))
                if not receiver.up:
                    receiver.refused += 1
                    self._json(503, {"error": "down"})
                    return
                receiver.received.append(json.loads(data))
                receiver.headers.append(dict(self.headers))
                self._json(200, {"ok": True})

        self.server = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
