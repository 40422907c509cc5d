"""Typed worker requests (engine.protocol): one place writes the wire format, and what it writes is what the worker
checks and reads. No callers above engine/ build request dicts by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from workbench.engine import protocol
from workbench.engine.protocol import (
    BatchItem,
    Cancel,
    Generate,
    GenerateBatch,
    Load,
    Score,
    Shutdown,
    Tokenize,
    check_request,
)

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("request_, wire", [
    (Load("m.gguf", 512, 2, 0, None, n_seq=2), {"op": "load", "id": 7, "model_path": "m.gguf", "n_ctx": 512,
                                                "n_threads": 2, "n_gpu_layers": 0, "n_seq": 2}),
    (Generate(MESSAGES, max_tokens=8, temperature=0.0, top_p=1.0, seed=0),
     {"op": "generate", "id": 7, "messages": MESSAGES, "max_tokens": 8, "temperature": 0.0, "top_p": 1.0, "seed": 0}),
    (Generate(prompt_tokens=[1, 2], max_tokens=1, ignore_eos=True),
     {"op": "generate", "id": 7, "prompt_tokens": [1, 2], "max_tokens": 1, "ignore_eos": True}),
    (GenerateBatch((BatchItem(MESSAGES, 4), BatchItem(None, 3, [5, 6])), 2, 0.0, 1.0, 0, False),
     {"op": "generate_batch", "id": 7, "items": [{"max_tokens": 4, "messages": MESSAGES},
                                                 {"max_tokens": 3, "prompt_tokens": [5, 6]}],
      "n_seq": 2, "temperature": 0.0, "top_p": 1.0, "seed": 0, "ignore_eos": False}),
    (Score([1, 2], [3], 5, save_logprobs="/tmp/r.npy"),
     {"op": "score", "id": 7, "prompt_tokens": [1, 2], "target_tokens": [3], "top_k": 5, "save_logprobs": "/tmp/r.npy"}),
    (Tokenize(text=""), {"op": "tokenize", "id": 7, "text": ""}),
    (Tokenize(messages=MESSAGES), {"op": "tokenize", "id": 7, "messages": MESSAGES}),
    (Shutdown(), {"op": "shutdown", "id": 7}),
])
def test_typed_requests_write_the_wire_the_worker_reads(request_: protocol.Request, wire: dict) -> None:
    out = request_.to_wire(7)
    assert out == wire
    assert out["op"] in protocol.OPS
    check_request(out)  # what the worker checks first
    assert protocol.decode(protocol.encode(out)) == wire  # survives the JSON line


def test_cancel_names_its_target_as_the_id() -> None:
    assert Cancel(12).to_wire() == {"op": "cancel", "id": 12}


def test_a_typed_request_with_bad_values_is_still_refused() -> None:
    with pytest.raises(protocol.BadRequest, match="max_tokens"):
        check_request(Generate(MESSAGES, max_tokens=0).to_wire(1))
    with pytest.raises(protocol.BadRequest, match="n_batch"):
        check_request(Load("m.gguf", n_batch=-1).to_wire(1))


def test_no_module_above_the_engine_writes_a_request_dict_by_hand() -> None:
    hand_built = re.compile(r"""["']op["']\s*:""")
    above = [ROOT / "workbench" / layer for layer in ("models", "runs", "quality", "people", "decide", "cli")]
    offenders = [str(p.relative_to(ROOT)) for folder in [*above, ROOT / "ui", ROOT / "pages"]
                 for p in folder.rglob("*.py") if hand_built.search(p.read_text(encoding="utf-8"))]
    assert offenders == [], f"request dicts built by hand (use engine.protocol's typed requests): {offenders}"


def test_every_op_has_a_typed_request_but_unload() -> None:
    typed = {cls.op for cls in (Load, Generate, GenerateBatch, Score, Tokenize, Cancel, Shutdown)}
    assert protocol.OPS - typed == {"unload"}  # the parent never sends one: a load replaces the model
    assert json.dumps(Load("m.gguf").to_wire(1))  # plain JSON, nothing left typed
