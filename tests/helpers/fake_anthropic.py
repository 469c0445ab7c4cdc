"""A local stand-in for the Anthropic API on 127.0.0.1: Messages (JSON and SSE streaming) and Models.

Real clients (the anthropic SDK over TCP, the ``claude`` CLI through ``ANTHROPIC_BASE_URL``) talk to it.
Each ``POST /v1/messages`` takes the next scripted step (a reply, an HTTP error such as 529 or 401,
or a delay before either); when the script is empty it answers with ``default_text``. Every request
is logged (method, path, headers, JSON body), including any proxy ``CONNECT`` to another host, which
is refused: a test points ``HTTPS_PROXY`` here to prove that nothing else is contacted.

    cd tests && python -m helpers.fake_anthropic --port 8765     # serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS: dict[str, dict[str, Any]] = {
    "claude-opus-5-5": {"lifecycle": "active", "line": "opus"},
    "claude-sonnet-5-5": {"lifecycle": "active", "line": "sonnet"},
    "claude-sonnet-4-5": {"lifecycle": "deprecated", "line": "sonnet", "retires_at": "2026-11-30T00:00:00Z"},
    "claude-opus-4-1": {"lifecycle": "retired", "line": "opus", "retires_at": "2026-01-05T00:00:00Z"},
    "claude-test": {"lifecycle": "active", "line": None},
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up (a timeout test) closes its socket mid-answer: not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@dataclass
class Step:
    """One scripted answer: ``status`` 200 replies with ``text``; other statuses answer an API error."""

    status: int = 200
    text: str = "OK"
    delay_s: float = 0.0
    stop_reason: str = "end_turn"
    model: str | None = None  # None: echo the requested model
    input_tokens: int = 1000
    output_tokens: int = 50
    message: str = "scripted failure"


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    at: float = field(default_factory=time.time)


class FakeAnthropic:
    """The server. ``url`` is its base URL; ``log`` holds every request; ``script`` the next answers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, default_text: str = "OK") -> None:
        self.default_text = default_text
        self.script: deque[Step] = deque()
        self.log: list[LoggedRequest] = []
        self.api_keys: set[str] | None = None  # None: any key is accepted
        self.models = {k: dict(v) for k, v in MODELS.items()}
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def push(self, *steps: Step) -> None:
        with self._lock:
            self.script.extend(steps)

    def messages(self) -> list[LoggedRequest]:
        """The logged ``POST /v1/messages`` requests."""
        return [r for r in self.log if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"]

    def start(self) -> FakeAnthropic:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_step(self) -> Step:
        with self._lock:
            return self.script.popleft() if self.script else Step(text=self.default_text)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the log list is the record
                return

            def _record(self, body: Any = None) -> LoggedRequest:
                entry = LoggedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.log.append(entry)
                return entry

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_fake_{len(fake.log)}")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                kind = ERROR_TYPES.get(status, "api_error")
                self._send_json(
                    status,
                    {"type": "error", "error": {"type": kind, "message": message}},
                    {"retry-after-ms": "10"} if status in (429, 529) else None,
                )

            def _authorised(self) -> bool:
                key = self.headers.get("x-api-key") or (self.headers.get("authorization") or "").removeprefix("Bearer ")
                if fake.api_keys is None or key in fake.api_keys:
                    return True
                self._error(401, "invalid x-api-key")
                return False

            def do_CONNECT(self) -> None:  # a proxied request to another host: logged and refused
                self._record()
                self.send_response(403)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                self._record()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._record()
                path = self.path.split("?")[0]
                if not path.startswith("/v1/models"):
                    self._error(404, f"no route {path}")
                    return
                if not self._authorised():
                    return
                if path == "/v1/models":
                    data = [self._model_info(name) for name in fake.models]
                    self._send_json(200, {"data": data, "has_more": False, "first_id": None, "last_id": None})
                    return
                name = path.removeprefix("/v1/models/")
                if name not in fake.models:
                    self._error(404, f"model: {name}")
                    return
                self._send_json(200, self._model_info(name))

            def _model_info(self, name: str) -> dict[str, Any]:
                info = fake.models[name]
                deprecated = info["lifecycle"] != "active"
                return {
                    "type": "model",
                    "id": name,
                    "display_name": name.replace("-", " ").title(),
                    "created_at": "2026-01-01T00:00:00Z",
                    "lifecycle": info["lifecycle"],
                    "line": info.get("line"),
                    "deprecated_at": "2026-06-01T00:00:00Z" if deprecated else None,
                    "retires_at": info.get("retires_at"),
                    "max_tokens": 64000,
                    "max_input_tokens": 200000,
                }

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw.decode("utf-8", errors="replace")
                self._record(body)
                path = self.path.split("?")[0]
                if path == "/v1/messages/count_tokens":
                    self._send_json(200, {"input_tokens": 100})
                    return
                if path != "/v1/messages":
                    self._error(404, f"no route {path}")
                    return
                if not self._authorised():
                    return
                step = fake._next_step()
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.status != 200:
                    self._error(step.status, step.message)
                    return
                request = body if isinstance(body, dict) else {}
                message = {
                    "id": f"msg_fake_{len(fake.log)}",
                    "type": "message",
                    "role": "assistant",
                    "model": step.model or request.get("model", "claude-test"),
                    "content": [{"type": "text", "text": step.text}],
                    "stop_reason": step.stop_reason,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": step.input_tokens,
                        "output_tokens": step.output_tokens,
                        "cache_read_input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                    },
                }
                if request.get("stream"):
                    self._stream(message)
                else:
                    self._send_json(200, message)

            def _stream(self, message: dict[str, Any]) -> None:
                """The same message as Server-Sent Events, in the order the real API sends them."""
                text = message["content"][0]["text"]
                usage = message["usage"]
                start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
                half = len(text) // 2
                events = [
                    ("message_start", {"type": "message_start", "message": start}),
                    (
                        "content_block_start",
                        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    ),
                    *(
                        (
                            "content_block_delta",
                            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}},
                        )
                        for part in (text[:half], text[half:])
                        if part
                    ),
                    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    (
                        "message_delta",
                        {
                            "type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                            "usage": {"output_tokens": usage["output_tokens"]},
                        },
                    ),
                    ("message_stop", {"type": "message_stop"}),
                ]
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("request-id", f"req_fake_{len(fake.log)}")
                self.send_header("connection", "close")
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default="OK", help="the reply to every message")
    args = parser.parse_args(argv)
    server = FakeAnthropic(port=args.port, default_text=args.text)
    print(server.url, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
