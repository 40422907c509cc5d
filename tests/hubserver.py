"""A small Hugging Face Hub look-alike on 127.0.0.1, so tests run huggingface_hub's real client code offline.

It implements only what `huggingface_hub` 2.x calls for listing and downloading:

* `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}`: model info with `siblings`
  (size, blobId, lfs{size, sha256, pointerSize} when `?blobs=true`) and the `gguf` summary;
* `HEAD/GET /{repo}/resolve/{rev}/{path}`: LFS files answer 302 to a "CDN" on another origin
  (http://localhost:port/cdn/...) with X-Repo-Commit, X-Linked-Etag and X-Linked-Size, as the Hub does;
  small non-LFS files answer 200 with ETag (git blob id), X-Repo-Commit and Content-Length;
* the CDN serves bytes with Range support (206 + Content-Range);
* errors carry the Hub's X-Error-Code header: RepoNotFound (404), GatedRepo (401 without a token,
  403 with one), RevisionNotFound, EntryNotFound.

A branch can move: `push(repo_id, {...})` makes a new commit with changed files and points `main` at it;
the files of earlier commits stay reachable by their sha, as on the Hub.

Switches for failure tests: `cut_once` (send half the body then drop the connection, once per file),
`drop_always` (headers then nothing, every time), `corrupt` (flip a byte: sha256 mismatch).
Every request is recorded in `requests` (method, path, host, Range and whether Authorization was sent).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import gguf
import numpy as np


@dataclass
class FakeFile:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    gated: bool = False
    n_params: int | None = None
    history: dict[str, dict[str, FakeFile]] = field(default_factory=dict)  # earlier commits: sha -> files

    def at(self, rev: str) -> tuple[str, dict[str, FakeFile]] | None:
        """(commit sha, files) that `rev` names ("main", the head's sha or an earlier commit's), else None."""
        if rev in ("main", self.commit):
            return self.commit, self.files
        return (rev, self.history[rev]) if rev in self.history else None


@dataclass
class Seen:
    method: str
    path: str
    host: str
    range: str | None
    auth: str | None


class HubServer:
    """Start with `HubServer().start()`; `url` is the HF_ENDPOINT to use; `stop()` shuts it down."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.requests: list[Seen] = []
        self.cut_once: set[str] = set()
        self.drop_always: set[str] = set()
        self.corrupt: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # ---- setup --------------------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False, n_params: int | None = None) -> FakeRepo:
        """Files ending in .gguf/.safetensors/.bin are LFS files (as on the Hub); others are plain git files."""
        repo = FakeRepo(
            repo_id,
            {name: FakeFile(data, name.endswith((".gguf", ".safetensors", ".bin"))) for name, data in files.items()},
            gated=gated,
            n_params=n_params,
        )
        self.repos[repo_id] = repo
        return repo

    def push(self, repo_id: str, files: dict[str, bytes]) -> str:
        """A new commit on `main` replacing/adding `files`; the old commit stays reachable by sha. Returns the new sha."""
        repo = self.repos[repo_id]
        with self._lock:
            repo.history[repo.commit] = repo.files
            changed = {n: FakeFile(d, n.endswith((".gguf", ".safetensors", ".bin"))) for n, d in files.items()}
            repo.files, repo.commit = {**repo.files, **changed}, secrets.token_hex(20)
        return repo.commit

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        """Another origin (same socket), like the Hub's LFS CDN: the client must not send the token there."""
        return f"http://localhost:{self.port}"

    def seen(self, method: str | None = None, contains: str = "") -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format: str, *args) -> None:  # keep test output quiet
        return

    # ---- plumbing -----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, head: bool, extra: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message, **(extra or {})}, head)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        hub = self.server_hub
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        hub.record(Seen(self.command, path, self.headers.get("Host", ""), self.headers.get("Range"), self.headers.get("Authorization")))
        segs = path.strip("/").split("/")
        if segs[:2] == ["api", "models"] and len(segs) >= 4:
            repo_id = "/".join(segs[2:4])
            rev = segs[5] if len(segs) >= 6 and segs[4] == "revision" else "main"
            return self._model_info(repo_id, rev, parse_qs(parts.query), head)
        if len(segs) >= 5 and segs[2] == "resolve":
            return self._resolve("/".join(segs[:2]), segs[3], "/".join(segs[4:]), head)
        if segs[0] == "cdn" and len(segs) >= 4:
            commit = parse_qs(parts.query).get("commit", ["main"])[0]
            return self._cdn("/".join(segs[1:3]), "/".join(segs[3:]), commit, head)
        self._error(404, "NotFound", "Not found", head)

    # ---- endpoints ----------------------------------------------------------------------------------------
    def _model_info(self, repo_id: str, rev: str, query: dict, head: bool) -> None:
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        found = repo.at(rev)
        if found is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev, head)
        commit, files = found
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for name, f in sorted(files.items()):
            s: dict = {"rfilename": name}
            if blobs:
                s["size"] = 134 if f.lfs else len(f.data)
                s["blobId"] = f.git_oid
                if f.lfs:
                    s["lfs"] = {"size": len(f.data), "sha256": f.sha256, "pointerSize": 134}
            siblings.append(s)
        info = {
            "_id": commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": ["gguf"],
            "siblings": siblings,
        }
        if repo.n_params:
            info["gguf"] = {"total": repo.n_params, "architecture": "llama", "context_length": 256}
        self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)

    def _resolve(self, repo_id: str, rev: str, filename: str, head: bool) -> None:
        repo = self.server_hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        if repo.gated:
            if self.headers.get("Authorization"):
                return self._error(403, "GatedRepo", "Access to model is restricted and you are not in the authorized list.", head)
            return self._error(401, "GatedRepo", "Access to model is restricted. You must have access to it and be authenticated to access it. Please log in.", head)
        found = repo.at(rev)
        if found is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id: " + rev, head)
        sha, files = found
        f = files.get(filename)
        commit = {"X-Repo-Commit": sha}
        if f is None:
            return self._error(404, "EntryNotFound", "Entry not found", head, commit)
        if f.lfs:
            location = f"{self.server_hub.cdn_url}/cdn/{repo_id}/{filename}?sig={f.sha256[:8]}&commit={sha}"
            return self._send(302, b"", {
                **commit,
                "Location": location,
                "ETag": f'"{f.git_oid}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(len(f.data)),
            }, head)
        self._send(200, f.data, {**commit, "ETag": f'"{f.git_oid}"', "Content-Type": "text/plain", "Accept-Ranges": "bytes"}, head)

    def _cdn(self, repo_id: str, filename: str, commit: str, head: bool) -> None:
        hub = self.server_hub
        repo = hub.repos.get(repo_id)
        found = repo.at(commit) if repo else None
        f = found[1].get(filename) if found else None
        if f is None:
            return self._send(404, b"no such object", head=head)
        data = f.data
        if filename in hub.corrupt:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        start, status = 0, 200
        headers = {"ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[len("bytes="):].partition("-")
            start = int(first)
            end = int(last) if last else len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        if head:
            return self._send(status, data, headers, head=True)
        if filename in hub.drop_always or filename in hub.cut_once:
            keep = 0 if filename in hub.drop_always else len(data) // 2
            hub.cut_once.discard(filename)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:keep])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._send(status, data, headers)


# ---- GGUF files for the fake repos -----------------------------------------------------------------------------


def make_gguf(path: Path, *, file_type: int = 7, n_embd: int = 64, n_layers: int = 2, n_vocab: int = 128,
              extra_bytes: int = 0, n_head: int = 4, n_head_kv: int = 2, ctx: int = 256, name: str = "Tiny",
              metadata: dict[str, str | int] | None = None) -> Path:
    """A tiny llama-architecture GGUF made with gguf's GGUFWriter: real header, small F32 tensors.

    `file_type` is llama.cpp's LLAMA_FTYPE (7 = Q8_0, 15 = Q4_K_M …); the tensors stay F32, which is all the
    listing, download and header tests need. `extra_bytes` adds a padding tensor to make files differ in size;
    `metadata` adds string/integer keys (e.g. llama-quantize's `quantize.imatrix.*`).
    """
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(name)
    w.add_block_count(n_layers)
    w.add_context_length(ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_embd * 2)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(file_type)
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_int32(key, value)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"tok{i}" for i in range(n_vocab)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([1] * n_vocab)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((n_vocab, n_embd), dtype=np.float32))
    for i in range(n_layers):
        w.add_tensor(f"blk.{i}.attn_q.weight", rng.standard_normal((n_embd, n_embd), dtype=np.float32))
    if extra_bytes:
        w.add_tensor("pad.weight", np.zeros(max(1, extra_bytes // 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
