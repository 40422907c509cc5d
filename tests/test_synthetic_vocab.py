"""The GPU recipe's vocab file: the demo model's tokenizer alone, small enough to carry, and enough to build from."""

from __future__ import annotations

from workbench.files.gguf_header import file_fetch, parse_header
from workbench.files.synthetic import write_vocab_only
from workbench.models.ladder import demo_source


def test_vocab_only_file_keeps_the_tokenizer_and_no_weights(tmp_path):
    out = write_vocab_only(demo_source(), tmp_path / "vocab.gguf")
    with open(out, "rb") as fh:
        header = parse_header(file_fetch(fh), out.name)
    assert out.stat().st_size < 8 * 2**20 < demo_source().stat().st_size
    assert header.tensors == []
    assert header.metadata["tokenizer.ggml.model"] == "gpt2"
    assert header.array_lengths["tokenizer.ggml.tokens"] == 49152
