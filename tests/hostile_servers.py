"""Hostile HTTP endpoints on 127.0.0.1 for the limit tests: endless streams, pings, bad fields, huge bodies."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def chunk(content: str | None = None, finish: Any = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))  # drain the request; every reply ignores it
        mode = self.server.mode
        if mode == "answer":  # a well-behaved server, whose answer is set by the test
            text = self.server.answer
            data = json.dumps({"choices": [{"index": 0, "message": {"content": text}, "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 5, "completion_tokens": 3}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        stop = self.server.stop_event
        try:
            if mode == "endless_tokens":
                while not stop.is_set():
                    self.wfile.write(sse(chunk("again ")))
                    self.wfile.flush()
                    time.sleep(0.001)
            elif mode == "pings":
                while not stop.is_set():
                    self.wfile.write(b": ping\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif mode == "bad_fields":
                self.wfile.write(sse(chunk("Red, green and blue.")))
                self.wfile.write(sse(chunk(None, {})))  # finish_reason as an object
                self.wfile.write(sse({"choices": [], "usage": {"prompt_tokens": "11", "completion_tokens": "6"}}))
                self.wfile.write(b"data: [DONE]\n\n")
            elif mode == "bad_usage":
                self.wfile.write(sse(chunk("Red.")))
                self.wfile.write(sse(chunk(None, "stop")))
                self.wfile.write(sse({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": "6"}}))
                self.wfile.write(b"data: [DONE]\n\n")
            elif mode == "huge":
                line = sse(chunk("x" * 60_000))
                for _ in range(200):  # ~12 MB
                    self.wfile.write(line)
            elif mode == "padded":  # over 8 MiB of SSE comments and not one byte of answer
                line = b": " + b"p" * 60_000 + b"\n\n"
                for _ in range(200):
                    self.wfile.write(line)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server:
    def __init__(self, mode: str, answer: str = "") -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
        self.httpd.daemon_threads = True
        self.httpd.mode, self.httpd.answer, self.httpd.stop_event = mode, answer, threading.Event()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def serve() -> Iterator[Any]:
    servers: list[Server] = []

    def start(mode: str, answer: str = "") -> Server:
        servers.append(Server(mode, answer))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


