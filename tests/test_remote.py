"""Remote contestants: a real llama-cpp-python server on 127.0.0.1, and tiny stdlib fakes for failures.

The real server (started once for this module) serves the demo ladder's Q4_K_M; a comparison puts
it beside a local Q8_0. Each failure a network can produce (refused, silent, malformed JSON, a
stream cut off midway, a refused API key) must become that one contestant's error while the local
contestant in the same comparison completes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workbench.runs.compare import run_comparison
from workbench.runs.contestants import Contestant, RemoteEndpoint, RunSettings
from workbench.runs.remote import contestant_for, run_remote, run_remote_batch

SECRET = "sk-test-secret-never-shown-0123456789"
PROMPT = "Name three colours."


# ---- fakes -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sse(obj: Any) -> bytes:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def chat_chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class FakeHandler(BaseHTTPRequestHandler):
    """Plays one misbehaviour (or good behaviour) chosen by the server's `mode`."""

    protocol_version = "HTTP/1.0"  # close-delimited bodies, so a fake can cut a stream off
    cut_payload = b""

    def log_message(self, *args: Any) -> None:
        pass

    def _stream_headers(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        mode = self.server.mode
        if mode == "silent":
            time.sleep(3)
            return
        if mode == "unauthorized":
            # echoes the header back, as careless servers do: the client must not print it
            return self._json(401, {"error": {"message": f"invalid key in {self.headers.get('Authorization')}"}})
        if mode == "server_error":
            return self._json(500, {"error": {"message": "model exploded"}})
        if mode == "malformed":
            self._stream_headers()
            self.wfile.write(sse(chat_chunk("Hello")) + b"data: {\"choices\": [oops\n\n")
            return
        if mode == "drop":
            self._stream_headers()
            self.wfile.write(sse(chat_chunk("Hel")) + sse(chat_chunk("lo")))
            self.wfile.flush()
            return  # connection closes without a finish reason or [DONE]
        if mode == "cut_inside":
            self._stream_headers()
            self.wfile.write(self.cut_payload)
            return
        if mode == "usage":
            self._stream_headers()
            self.wfile.write(sse({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}))
            for piece in ("Red", ", green", " and blue"):  # 3 chunks, but the server says 6 tokens
                time.sleep(0.02)
                self.wfile.write(sse(chat_chunk(piece)))
                self.wfile.flush()
            self.wfile.write(sse(chat_chunk(None, "stop")))
            self.wfile.write(sse({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}}))
            self.wfile.write(sse("[DONE]"))
            return
        if mode == "no_logprobs":  # refuses log-probs, answers greedy text otherwise
            if body.get("logprobs"):
                return self._json(400, {"error": {"message": "logprobs are not supported"}})
            return self._json(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."},
                                                 "finish_reason": "stop"}],
                                    "usage": {"prompt_tokens": 0, "completion_tokens": 2}})
        if mode == "llamacpp":
            if self.path == "/apply-template":
                return self._json(200, {"prompt": "<|user|>" + body["messages"][-1]["content"] + "<|assistant|>"})
            if self.path != "/completion":
                return self._json(404, {"error": "not found"})
            self._stream_headers()
            for i, piece in enumerate(("Red", ",", " blue")):
                probs = [{"id": 100 + i, "token": piece, "logprob": -0.1, "bytes": list(piece.encode()),
                          "top_logprobs": [{"id": 100 + i, "token": piece, "logprob": -0.1},
                                           {"id": 7, "token": "x", "logprob": -2.5}]}]
                self.wfile.write(sse({"content": piece, "tokens": [100 + i], "stop": False,
                                      "completion_probabilities": probs if body.get("n_probs") else None}))
            self.wfile.write(sse({"content": "", "stop": True, "stop_type": "limit", "tokens_evaluated": 12,
                                  "tokens_predicted": 3,
                                  "timings": {"prompt_n": 12, "prompt_ms": 24.0, "prompt_per_second": 500.0,
                                              "predicted_n": 3, "predicted_ms": 30.0, "predicted_per_second": 100.0}}))
            return
        self._json(404, {"error": "unknown fake mode"})


class FakeServer:
    def __init__(self, mode: str) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeHandler)
        self.httpd.daemon_threads = True
        self.httpd.mode = mode
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.httpd.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake() -> Iterator[Any]:
    servers: list[FakeServer] = []

    def start(mode: str) -> FakeServer:
        servers.append(FakeServer(mode))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


# ---- the real server --------------------------------------------------------------------------------
class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on one port; `serve(path)` (re)starts it on another file under
    the same model name (`alias`, else the server's own).

    Flash attention on: the workbench's workers let llama.cpp choose (it turns it on for CPU),
    llama-cpp-python turns it off by default, and the two give slightly different numbers.
    """

    def __init__(self, log_dir: Path, alias: str | None = None) -> None:
        self.port, self.log_dir, self.alias, self.proc = free_port(), log_dir, alias, None
        self.url = f"http://127.0.0.1:{self.port}"

    def serve(self, model_path: str) -> None:
        self.stop()
        log = self.log_dir / f"server-{Path(model_path).stem}.log"
        alias = ["--model_alias", self.alias] if self.alias else []
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, *alias,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "1024", "--n_threads", "1",
               "--n_threads_batch", "1", "--logits_all", "True", "--flash_attn", "True"]
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                pytest.fail(f"llama_cpp.server exited with {code} (a negative code is a signal: "
                            f"{-code if code < 0 else '-'}):\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within 90 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None



@pytest.fixture(scope="module")
def llama_server(demo_ladder, tmp_path_factory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the demo Q4_K_M, started once for the module."""
    pytest.importorskip("fastapi", reason="llama-cpp-python's server extra is not installed")
    server = LlamaServer(tmp_path_factory.mktemp("llama_server"))
    try:
        server.serve(demo_ladder.by_label("Q4_K_M").path)
        yield server.url
    finally:
        server.stop()


def endpoint(url: str, **kw: Any) -> RemoteEndpoint:
    return RemoteEndpoint(url, model="smollm2", **{"label": "remote", **kw})


# ---- the endpoint description never carries the key ----------------------------------------------
def test_api_key_stays_out_of_repr_dict_and_errors(monkeypatch, fake):
    monkeypatch.setenv("WB_TEST_KEY", SECRET)
    ep = endpoint("http://127.0.0.1:1/v1", api_key_env="WB_TEST_KEY", api_key=SECRET)
    assert SECRET not in repr(ep) and SECRET not in json.dumps(ep.to_dict())
    assert ep.to_dict()["has_api_key"] is True
    with pytest.raises(ValueError, match="credential"):
        RemoteEndpoint("http://user:pw@127.0.0.1:1")
    with pytest.raises(ValueError, match="http://host:port"):
        RemoteEndpoint("127.0.0.1:8080")
    with pytest.raises(ValueError, match="unknown API"):
        RemoteEndpoint("http://127.0.0.1:1", api="grpc")
    spec = RemoteEndpoint.from_spec("http://127.0.0.1:8080/v1,model=qwen,label=prod,api=llamacpp,key_env=WB_TEST_KEY")
    assert (spec.base_url, spec.model, spec.label, spec.api, spec.api_key_env) == (
        "http://127.0.0.1:8080/v1", "qwen", "prod", "llamacpp", "WB_TEST_KEY")
    with pytest.raises(ValueError, match="unknown endpoint field"):
        RemoteEndpoint.from_spec("http://x:1,colour=red")

    server = fake("unauthorized")
    events: list[tuple[str, str, dict[str, Any]]] = []
    s = RunSettings(max_tokens=8, n_ctx=256)
    r = run_remote(contestant_for(endpoint(server.url, api_key_env="WB_TEST_KEY")), s, s.messages(PROMPT),
                   lambda *e: events.append(e))
    assert server.requests[0]["auth"] == f"Bearer {SECRET}"  # it was sent ...
    assert "API key is missing or wrong" in r.error and "WB_TEST_KEY" in r.error
    assert SECRET not in json.dumps(r.to_dict()) and SECRET not in json.dumps(events, default=str)  # ... never shown
    monkeypatch.delenv("WB_TEST_KEY")
    r = run_remote(contestant_for(endpoint(server.url, api_key_env="WB_TEST_KEY")), s, s.messages(PROMPT))
    assert r.error.endswith("the API key variable $WB_TEST_KEY is not set")
    r = run_remote(contestant_for(endpoint(server.url)), s, s.messages(PROMPT))
    assert "no API key was sent" in r.error


# ---- measurements from the stream ------------------------------------------------------------------
def test_usage_tokens_drive_the_client_side_decode_rate(fake):
    server = fake("usage")
    s = RunSettings(max_tokens=16, n_ctx=256, temperature=0.0, seed=7)
    r = run_remote(contestant_for(endpoint(server.url + "/v1")), s, s.messages(PROMPT))
    assert r.ok, r.error
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["stream"] is True and sent["body"]["stream_options"] == {"include_usage": True}
    assert (sent["body"]["max_tokens"], sent["body"]["temperature"], sent["body"]["seed"]) == (16, 0.0, 7)
    assert r.text == "Red, green and blue" and r.stop_reason == "eos"
    assert (r.prompt_tokens, r.completion_tokens, r.decode_steps) == (11, 6, 5)  # tokens from usage, not chunks
    assert r.decode_tok_s == pytest.approx(5 / r.decode_s)
    assert r.ttft_s > 0 and r.total_s >= r.ttft_s
    assert r.load_s is None and r.peak_rss_bytes is None and r.gpu_mem_bytes is None and r.prefill_tok_s is None
    m = r.settings["measurement"]
    assert m["where"] == "client" and "usage" in m["decode_tok_s"] and "network" in m["ttft_s"]


def test_llamacpp_native_api_reports_server_timings_and_token_ids(fake):
    server = fake("llamacpp")
    s = RunSettings(max_tokens=3, n_ctx=256)
    ep = endpoint(server.url, api="llamacpp")
    r = run_remote(contestant_for(ep), s, s.messages(PROMPT))
    assert r.ok, r.error
    paths = [q["path"] for q in server.requests]
    assert paths == ["/apply-template", "/completion"]
    assert server.requests[1]["body"]["n_predict"] == 3 and server.requests[1]["body"]["prompt"].startswith("<|user|>")
    assert r.text == "Red, blue" and r.token_ids == [100, 101, 102] and r.stop_reason == "max_tokens"
    assert (r.prompt_tokens, r.completion_tokens) == (12, 3)
    assert r.prefill_tok_s == 500.0 and r.decode_tok_s == 100.0  # the server's own figures ...
    m = r.settings["measurement"]
    assert m["decode_tok_s"].startswith("server-measured") and m["prefill_tok_s"].startswith("server-measured")
    assert "client_decode_tok_s" in m  # ... with the client-side rate kept beside them

    from workbench.runs.remote import request_completion

    c = request_completion(ep, s.messages(PROMPT), max_tokens=3, top_logprobs=2, stream=True)
    assert server.requests[-1]["body"]["n_probs"] == 2
    assert [lp.id for lp in c.logprobs] == [100, 101, 102] and c.logprobs[0].top_ids == [100, 7]


# ---- failures stay in their own column --------------------------------------------------------------
def test_each_network_failure_is_one_contestants_error_while_local_completes(demo_ladder, pool, store, fake):
    closed = free_port()  # nothing listens here
    bad = {
        "refused": endpoint(f"http://127.0.0.1:{closed}", label="refused"),
        "silent": endpoint(fake("silent").url, label="silent", read_timeout_s=0.5),
        "malformed": endpoint(fake("malformed").url, label="malformed"),
        "dropped": endpoint(fake("drop").url, label="dropped"),
        "unauthorized": endpoint(fake("unauthorized").url, label="unauthorized"),
        "server_error": endpoint(fake("server_error").url, label="server_error"),
    }
    local = Contestant.from_ladder_file(demo_ladder.by_label("Q8_0"), is_reference=True)
    contestants = [local] + [contestant_for(ep) for ep in bad.values()]
    events: list[tuple[str, str]] = []
    t0 = time.monotonic()
    comp = run_comparison(pool, contestants, PROMPT, RunSettings(max_tokens=8, n_ctx=256, n_threads=1), store=store,
                          on_event=lambda label, status, payload: events.append((label, status)))
    assert time.monotonic() - t0 < 30
    by = {r.label: r for r in comp.results}
    assert by["Q8_0"].ok and by["Q8_0"].text and by["Q8_0"].completion_tokens > 0
    expected = {
        "refused": "connection refused",
        "silent": "within 0.5 s (timed out)",
        "malformed": "malformed JSON",
        "dropped": "dropped midway after 2 chunk(s)",
        "unauthorized": "API key is missing or wrong",
        "server_error": "HTTP 500 Internal Server Error",
    }
    for label, phrase in expected.items():
        r = by[label]
        assert not r.ok and phrase in r.error, (label, r.error)
        assert "\n" not in r.error and r.error.startswith(f"{label}: ")
        assert r.stop_reason == "error"
        assert (label, "connecting") in events and (label, "error") in events
    assert "model exploded" in by["server_error"].error
    assert by["dropped"].text == "Hello"  # what streamed before the drop stays visible
    assert store.get_run(comp.run_id) is not None  # the run and its results were kept
    assert comp.to_dict()["results"][1]["settings"]["endpoint"]["base_url"].startswith("http://127.0.0.1:")


def test_remote_batch_runs_concurrently_and_keeps_order(fake):
    slow = [fake("usage") for _ in range(3)]
    s = RunSettings(max_tokens=8, n_ctx=256)
    cs = [contestant_for(endpoint(f.url, label=f"r{i}")) for i, f in enumerate(slow)]
    cs.insert(1, contestant_for(endpoint(f"http://127.0.0.1:{free_port()}", label="down")))
    results = run_remote_batch(cs, s, s.messages(PROMPT), concurrent=True)
    assert [r.label for r in results] == ["r0", "down", "r1", "r2"]
    assert [r.ok for r in results] == [True, False, True, True]


# ---- the real llama-cpp-python server -----------------------------------------------------------------
def test_real_server_streams_into_a_comparison_with_client_side_labels(demo_ladder, pool, store, llama_server):
    ep = endpoint(llama_server, label="Q4_K_M @ server", api_key=SECRET, extra_body={"repeat_penalty": 1.0})
    local = Contestant.from_ladder_file(demo_ladder.by_label("Q8_0"), is_reference=True)
    events: list[tuple[str, str, dict[str, Any]]] = []
    comp = run_comparison(pool, [local, contestant_for(ep)], PROMPT, RunSettings(max_tokens=24, n_ctx=512, n_threads=1),
                          store=store, on_event=lambda *e: events.append(e))
    ref, remote = comp.results
    assert ref.ok and remote.ok, (ref.error, remote.error)
    statuses = [s for label, s, _ in events if label == ep.label]
    assert statuses[:3] == ["queued", "connecting", "generating"] and statuses[-1] == "done"
    streamed = "".join(p["text"] for label, s, p in events if label == ep.label and s == "tokens")
    assert streamed == remote.text and remote.text.strip()
    assert remote.stop_reason in ("max_tokens", "eos")
    assert remote.ttft_s > 0 and remote.decode_tok_s > 0 and remote.completion_tokens > 1
    assert remote.load_s is None and remote.peak_rss_bytes is None and remote.gpu_mem_bytes is None
    m = remote.settings["measurement"]
    assert m["where"] == "client"
    # llama-cpp-python's server sends no usage in streams: the count is of chunks, and it says so
    assert "stream chunks" in m["completion_tokens"] and "chunk" in m["decode_tok_s"]
    # the key never reaches the database or the events
    db_bytes = b"".join(p.read_bytes() for p in store.path.parent.glob(store.path.name + "*"))
    assert SECRET.encode() not in db_bytes and SECRET not in json.dumps(events, default=str)


def test_real_server_stream_cancels(llama_server):
    ep = endpoint(llama_server)
    cancel = threading.Event()
    got: list[str] = []

    def on_event(label: str, status: str, payload: dict[str, Any]) -> None:
        if status == "tokens":
            got.append(payload["text"])
            cancel.set()

    s = RunSettings(max_tokens=400, n_ctx=1024)
    t0 = time.monotonic()
    r = run_remote(contestant_for(ep), s, s.messages("Write a long story about a lighthouse."), on_event, cancel)
    assert r.stop_reason == "cancelled" and r.error is None
    assert got and len(r.text) < 400 and time.monotonic() - t0 < 15


def test_a_stream_cut_inside_an_event_reads_as_dropped_not_malformed(fake):
    server = fake("drop")
    server.httpd.mode = "cut_inside"
    FakeHandler.cut_payload = sse(chat_chunk("Hel")) + b'data: {"choices": [{"index": 0, "delta": {"cont'
    s = RunSettings(max_tokens=8, n_ctx=256)
    r = run_remote(contestant_for(endpoint(server.url)), s, s.messages(PROMPT))
    assert "dropped midway after 1 chunk(s)" in r.error and r.text == "Hel"


# ---- a credential in the endpoint URL is refused, never kept (issue 24) ---------------------------------
URL_KEY = "qs-secret-key-in-the-url-0123456789"


@pytest.mark.parametrize("mode", ["usage", "server_error"])  # whether the endpoint answers or fails
def test_a_key_in_the_endpoint_url_is_refused_and_never_stored_printed_or_exported(fake, tmp_path, monkeypatch, capsys,
                                                                                   mode):
    """Some providers document `?api_key=…` in the URL: the workbench refuses such a URL (it would land in the
    stored run, its export and --json output) and points at key_env=; the database, the export and every line
    printed are free of the key, for compare, fingerprint and the endpoint itself."""
    from workbench.cli.main import main

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    server = fake(mode)
    printed = ""
    for argv in (["compare", "--endpoint", f"{server.url}/v1?api_key={URL_KEY},model=m", "--prompt", PROMPT,
                  "--max-tokens", "4", "--json"],
                 ["compare", "--endpoint", f"{server.url}/v1?foo=1&access_token={URL_KEY}", "--prompt", PROMPT],
                 ["compare", "--endpoint", f"http://user:{URL_KEY}@127.0.0.1:9/v1", "--prompt", PROMPT, "--json"],
                 ["fingerprint", "--endpoint", f"{server.url}/v1?key={URL_KEY}", "--demo", "--json"]):
        code = main(argv)
        out, err = capsys.readouterr()
        printed += out + err
        assert code == 2 and "key_env" in err and "credential" in err, err
    assert main(["export", "--format", "json", "--out", str(tmp_path / "export.json")]) == 0
    printed += "".join(capsys.readouterr())
    assert URL_KEY not in printed
    assert URL_KEY not in (tmp_path / "export.json").read_text(encoding="utf-8")
    for f in tmp_path.iterdir():  # the database and its WAL, whatever was written
        assert URL_KEY.encode() not in f.read_bytes(), f
    assert not server.requests  # nothing was sent either


def test_an_endpoint_url_error_never_repeats_a_credential():
    for url in (f"htp://127.0.0.1:1/v1?api_key={URL_KEY}", f"http://127.0.0.1:99999/v1?token={URL_KEY}",
                f"127.0.0.1:1/v1?x=1&apikey={URL_KEY}", f"http://u:{URL_KEY}@127.0.0.1:1",
                f"http://127.0.0.1:1/v1?subscription-key={URL_KEY}", f"http://127.0.0.1:1/v1?sv=1&sig={URL_KEY}",
                f"http://127.0.0.1:1/v1#access_token={URL_KEY}"):
        with pytest.raises(ValueError) as err:
            RemoteEndpoint(url)
        assert URL_KEY not in str(err.value) and ("credential" in str(err.value) or "http://host:port" in str(err.value))
    ok = RemoteEndpoint("http://127.0.0.1:1/v1?api-version=2024-06-01")  # a query string without a credential stays
    assert ok.base_url.endswith("?api-version=2024-06-01")
    assert RemoteEndpoint("http://127.0.0.1:1/v1?design=plain&monkeys=2").base_url  # words that merely contain one


def test_a_query_string_without_a_credential_is_kept_after_the_route(fake):
    """Azure-style `?api-version=…` is not a key: it stays, and goes after the API route, not inside the query."""
    server = fake("usage")
    s = RunSettings(max_tokens=8, n_ctx=256)
    r = run_remote(contestant_for(endpoint(f"{server.url}/v1?api-version=2024-06-01")), s, s.messages(PROMPT))
    assert r.ok, r.error
    assert server.requests[0]["path"] == "/v1/chat/completions?api-version=2024-06-01"
    assert r.file == f"{server.url}/v1"  # what is stored and shown drops the query string
    failing = fake("server_error")
    r = run_remote(contestant_for(endpoint(f"{failing.url}/v1?opaque-thing=2024")), s, s.messages(PROMPT))
    assert "HTTP 500" in r.error and "opaque-thing" not in r.error  # an error (stored) never repeats the query
