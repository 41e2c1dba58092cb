"""A fake OpenAI-compatible chat-completions server for tests (stdlib only, 127.0.0.1, port 0).

The server reads the movie title from the ``Title: ...`` line of the first user message and
answers by a per-title script of behaviours, falling back to ``default``:

- ``good``: valid ``{"queries": [...], "paraphrases": [...]}`` with ``n`` entries each;
- ``fenced``: the same inside a Markdown code fence, after some prose;
- ``malformed``: text that is not JSON;
- ``short``: one query too few;
- ``title``: valid JSON whose first query contains the title;
- ``timeout``: sleeps ``slow_s`` seconds, then answers ``good`` (the client gave up by then);
- a status code such as ``429`` (sent with ``Retry-After``), ``500``, ``401``: that status;
- ``no-json-mode``: HTTP 400 if the request has ``response_format``, else ``good``.

Every request is recorded (title, behaviour, request body) for assertions.

Run standalone (``python tests/llm_server.py --port 8765``) to point the CLI at it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_TITLE = re.compile(r"^Title: (.*)$", re.M)


@dataclass
class Request:
    """One request the server received."""

    title: str
    behaviour: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class FakeLLM:
    """Scripted behaviour and the record of requests; shared by the handler threads."""

    n: int = 3
    default: str = "good"
    scripts: dict[str, list[str]] = field(default_factory=dict)
    slow_s: float = 0.5
    delay_s: float = 0.0
    retry_after: str = "0"
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_behaviour(self, title: str) -> str:
        with self.lock:
            script = self.scripts.get(title)
            return script.pop(0) if script else self.default

    def record(self, request: Request) -> None:
        with self.lock:
            self.requests.append(request)

    def titles(self) -> list[str]:
        with self.lock:
            return [r.title for r in self.requests]

    def answer(self, title: str, fenced: bool = False, with_title: bool = False) -> str:
        tag = hashlib.md5(title.encode()).hexdigest()[:6]
        queries = [f"zorblax query {i} {tag}" for i in range(self.n)]
        paraphrases = [f"zorblax restated {i} {tag}" for i in range(self.n)]
        if with_title:
            queries[0] = f"watch {title} tonight"
        text = json.dumps({"queries": queries, "paraphrases": paraphrases})
        return f"Here you go:\n```json\n{text}\n```" if fenced else text


def _completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like real endpoints

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        first = next((m["content"] for m in body.get("messages", []) if m["role"] == "user"), "")
        match = _TITLE.search(first)
        title = match.group(1).strip() if match else ""
        behaviour = fake.next_behaviour(title)
        fake.record(Request(title, behaviour, body, dict(self.headers)))
        if fake.delay_s:
            time.sleep(fake.delay_s)
        if behaviour == "timeout":
            time.sleep(fake.slow_s)
            behaviour = "good"
        if behaviour.isdigit():
            headers = {"Retry-After": fake.retry_after} if behaviour == "429" else None
            self._send(int(behaviour), {"error": {"message": f"scripted {behaviour}"}}, headers)
        elif behaviour == "no-json-mode" and "response_format" in body:
            self._send(400, {"error": {"message": "response_format is not supported"}})
        elif behaviour == "malformed":
            self._send(200, _completion('{"queries": ["unterminated'))
        elif behaviour == "short":
            obj = json.loads(fake.answer(title))
            obj["queries"] = obj["queries"][:-1]
            self._send(200, _completion(json.dumps(obj)))
        else:
            content = fake.answer(
                title, fenced=behaviour == "fenced", with_title=behaviour == "title"
            )
            self._send(200, _completion(content))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (timeout, kill) is not an error here

    fake: FakeLLM


class FakeServer:
    """Context manager: a :class:`FakeLLM` served on ``127.0.0.1`` at a free port."""

    def __init__(self, fake: FakeLLM | None = None, port: int = 0) -> None:
        self.fake = fake or FakeLLM()
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.fake = self.fake
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--n", type=int, default=10, help="Queries per list.")
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds per request.")
    parser.add_argument("--log", help="Append the title of every request to this file.")
    args = parser.parse_args()
    fake = FakeLLM(n=args.n, delay_s=args.delay)
    if args.log:
        log = open(args.log, "a", encoding="utf-8")  # noqa: SIM115
        record = fake.record

        def record_and_log(request: Request) -> None:
            record(request)
            with fake.lock:
                log.write(request.title + "\n")
                log.flush()

        fake.record = record_and_log  # type: ignore[method-assign]
    server = FakeServer(fake, args.port)
    print(f"serving {server.base_url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        print(f"{len(fake.requests)} requests", flush=True)


if __name__ == "__main__":
    main()
