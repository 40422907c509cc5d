"""The bounded GGUF header parser (issue 14, finding 2): hostile headers are one clear GgufError, fast, in little
memory; real headers read as before, a 256k-token vocabulary in a fraction of a second.

Each hostile file is parsed in a child process under a memory cap and a timeout, so that a parser without limits
fails these tests (killed or timed out) instead of taking the machine down with it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from gguf_factory import big_vocab_gguf, hostile_files

from workbench.files import gguf_header
from workbench.files.gguf_info import GgufError, read_header

CHILD = """
import json, sys, time, tracemalloc
from workbench.files.gguf_info import GgufError, read_header
tracemalloc.start()
t0 = time.perf_counter()
try:
    read_header(sys.argv[1])
    out = {"error": None}
except GgufError as exc:
    out = {"error": str(exc)}
except BaseException as exc:
    out = {"error": None, "other": f"{type(exc).__name__}: {exc}"[:300]}
out["seconds"] = time.perf_counter() - t0
out["peak"] = tracemalloc.get_traced_memory()[1]
print(json.dumps(out))
"""


def _capped() -> None:
    cap = 3 * 2**30  # address space: numpy and the interpreter need well under this; an unbounded parser does not
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return hostile_files(tmp_path_factory.mktemp("hostile"))


HOSTILE = ["huge array", "huge string", "huge key", "huge string in array", "duplicate key", "too many keys",
           "too many tensors", "too many dims", "deep nesting", "past the header cap", "truncated", "unknown type"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_header_is_one_clear_error_fast_and_small(hostile, kind):
    path, phrase = hostile[kind]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=30,
                              preexec_fn=_capped, env=env, cwd=os.getcwd())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind}: parsing did not finish within 30 s")
    assert proc.returncode == 0, f"{kind}: the parser died ({proc.returncode}): {proc.stderr[-500:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"], f"{kind}: no GgufError ({out.get('other')})"
    msg = out["error"]
    assert str(path) in msg and phrase in msg and "\n" not in msg, msg
    if kind == "huge array":  # the whole line: the file, what it declares, the limit
        assert msg == f"{path}: header declares an array of 1,073,741,824 entries for key 'x' (limit 16,777,216)"
    assert out["seconds"] < 1.0, out
    assert out["peak"] < 50 * 2**20, out  # tracemalloc peak


def test_time_limit(hostile, monkeypatch, tmp_path):
    big = big_vocab_gguf(tmp_path / "big.gguf", n_vocab=20_000)
    monkeypatch.setattr(gguf_header, "MAX_PARSE_SECONDS", 0.0)
    with pytest.raises(GgufError, match=r"longer than 0 s to parse \(limit\)"):
        with big.open("rb") as fh:
            gguf_header.parse_header(gguf_header.file_fetch(fh), str(big))


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory) -> Path:
    return big_vocab_gguf(tmp_path_factory.mktemp("big") / "big-vocab.gguf")


def test_256k_vocab_header_is_read_quickly_without_materialising_tokens(big_vocab):
    from workbench.files import gguf_info

    gguf_info._read_header_cached.cache_clear()
    t0 = time.perf_counter()
    info = read_header(big_vocab, check_arch=False)
    seconds = time.perf_counter() - t0
    assert info.vocab_size == 256_000 and info.block_count == 2 and info.quant_type == "F32"
    assert info.head_count_kv == 2 and info.has_chat_template
    assert info.n_params == 64 + 2 * 64 * 64 and info.tensor_bytes == 4 * info.n_params
    assert not any(k.startswith("tokenizer.ggml.") and k != "tokenizer.ggml.model" for k in info.metadata)
    assert seconds < 1.0, seconds  # ~0.07 s on a quiet core (gguf.GGUFReader: ~8 s); slack for the shared machine

    gguf_info._read_header_cached.cache_clear()
    tracemalloc.start()
    try:
        read_header(big_vocab, check_arch=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # the 6 MB header went through a 1 MiB window


def test_real_header_reads_as_the_gguf_package_does(demo_ladder):
    """Same sizes, counts and metadata as gguf.GGUFReader gives for files of the demo ladder."""
    import gguf

    for label in ("Q8_0", "Q4_K_M"):  # GGUFReader takes ~2 s a file
        path = demo_ladder.by_label(label).path
        info = read_header(path)
        reader = gguf.GGUFReader(path)
        assert info.n_params == sum(int(t.n_elements) for t in reader.tensors)
        assert info.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
        assert info.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
                continue
            value = field.contents()
            if isinstance(value, list) and len(value) > 64:
                assert key not in info.metadata
            else:
                assert info.metadata[key] == value, key


def test_duplicate_key_in_a_real_file_is_a_gguf_error(tmp_path, demo_ladder):
    """gguf.GGUFReader raised KeyError here (not caught by the callers)."""
    import struct

    data = Path(demo_ladder.by_label("Q8_0").path).read_bytes()[: 4 << 20]
    n_kv = struct.unpack_from("<Q", data, 16)[0]
    key = b"general.architecture"
    i = data.index(key) - 8  # the key's length field
    end = i + 8 + len(key) + 4 + 8 + struct.unpack_from("<Q", data, i + 8 + len(key) + 4)[0]
    dup = data[:16] + struct.pack("<Q", n_kv + 1) + data[24:end] + data[i:end] + data[end:]
    p = tmp_path / "dup.gguf"
    p.write_bytes(dup)
    with pytest.raises(GgufError, match="repeats the key 'general.architecture'"):
        read_header(p)


def test_hostile_remote_header_is_a_hub_error_after_one_small_range(hostile, tmp_path, monkeypatch):
    """A Hub file whose header declares a 2^30-entry array: one line, after one range read, nothing more."""
    from tests.hubserver import HubServer, make_gguf
    from workbench.models import hub
    from workbench.models.hub import HubError

    path, _ = hostile["huge array"]
    good = make_gguf(tmp_path / "Good-Q8_0.gguf", file_type=7, n_vocab=2000, extra_bytes=100_000).read_bytes()
    s = HubServer()
    s.add_repo("tester/Hostile-GGUF", {"Evil-Q4_K_M.gguf": path.read_bytes() + b"\0" * 100_000,
                                       "Dup-Q8_0.gguf": hostile["duplicate key"][0].read_bytes(),
                                       "Good-Q8_0.gguf": good})
    s.start()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", s.url)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    try:
        with pytest.raises(HubError) as err:
            hub.read_remote_header("tester/Hostile-GGUF", "Evil-Q4_K_M.gguf")
        assert str(err.value) == ("tester/Hostile-GGUF/Evil-Q4_K_M.gguf: header declares an array of 1,073,741,824 "
                                  "entries for key 'x' (limit 16,777,216)")
        assert len(s.seen("GET", "/cdn/tester/Hostile-GGUF/")) == 1
        with pytest.raises(HubError, match="repeats the key 'llama.block_count'"):
            hub.read_remote_header("tester/Hostile-GGUF", "Dup-Q8_0.gguf")
        info = hub.read_remote_header("tester/Hostile-GGUF", "Good-Q8_0.gguf")
        assert info.vocab_size == 2000 and info.quant_type == "Q8_0" and info.size_bytes == len(good)
    finally:
        s.stop()
