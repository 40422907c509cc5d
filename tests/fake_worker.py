"""A worker without llama.cpp, for protocol tests: the real request loop (worker.main) around a fake engine.

Why: the cancel race lives in the request loop and the parent's event handling, not in inference; a fake
model makes the timing controllable (a load that takes FAKE_LOAD_S, FAKE_TOKEN_S per token) and the tests
fast. Run as `python tests/fake_worker.py`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's workbench, not an installed one

from workbench.engine import worker  # noqa: E402

COMMAND = [sys.executable, str(Path(__file__).resolve())]


class FakeEngine:
    """Answers like worker.Engine: a slow, uninterruptible load, and one token per FAKE_TOKEN_S."""

    def __init__(self, out: Any, cancel: threading.Event) -> None:
        self.out, self.cancel = out, cancel
        self.loaded = False

    def load(self, req: dict[str, Any]) -> None:
        time.sleep(float(os.environ.get("FAKE_LOAD_S") or 0))  # like llama.cpp: deaf to cancel while loading
        self.loaded = True
        self.out.send(event="loaded", id=req.get("id"), load_s=0.0, gpu_layers=0, n_layers=1, rss_bytes=0,
                      gpu_mem_bytes=None, use_extra_bufts=False, n_ctx=int(req.get("n_ctx") or 512), n_threads=1,
                      system_info="fake")

    def unload(self, quiet: bool = False) -> None:
        self.loaded = False
        if not quiet:
            self.out.send(event="unloaded")

    def _prompt(self, req: dict[str, Any]) -> str:
        if req.get("messages"):
            return " ".join(m["content"] for m in req["messages"])
        return str(req.get("text", ""))

    def generate(self, req: dict[str, Any]) -> None:
        rid, prompt = req.get("id"), self._prompt(req)
        max_tokens = int(req.get("max_tokens") or 16)
        self.out.send(event="started", id=rid, prompt_tokens=len(prompt), template="none")
        ids: list[int] = []
        stop = "max_tokens"
        for i in range(max_tokens):
            if self.cancel.is_set():
                stop = "cancelled"
                break
            time.sleep(float(os.environ.get("FAKE_TOKEN_S") or 0.01))
            ids.append(i)
            self.out.send(event="tokens", id=rid, ids=[i], text=f"{i} ")
        metrics = {"completion_tokens": len(ids), "prompt_tokens": len(prompt), "stop_reason": stop,
                   "settings": {"max_tokens": max_tokens}}
        self.out.send(event="done", id=rid, metrics=metrics, token_ids=ids, text="".join(f"{i} " for i in ids),
                      echo=prompt)

    def tokenize(self, req: dict[str, Any]) -> None:
        self.out.send(event="tokenized", id=req.get("id"), tokens=[ord(c) for c in self._prompt(req)], template="none")

    def score(self, req: dict[str, Any]) -> None:
        raise RuntimeError("the fake worker does not score")


if __name__ == "__main__":
    worker.main(FakeEngine)
