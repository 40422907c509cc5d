"""Our importance matrix against llama-imatrix's on the same text and chunking (docs/quality.md).

    llama-imatrix -m F16.gguf -f prompts/reference_text.txt -c 512 -t 2 -o /tmp/theirs.imatrix.gguf
    workbench imatrix F16.gguf --reference-text --chunks 6 --out /tmp/ours.imatrix.gguf
    python benchmarks/imatrix_check.py /tmp/ours.imatrix.gguf /tmp/theirs.imatrix.gguf

Prints, over tensors, the max and median of each tensor's relative difference of `importance()` (what the
quantizer receives), two ways: the largest element-wise |ours - theirs| / |theirs|, and the largest difference
over the tensor's largest value; and how many tensors have equal token counts and bit-identical sums.
"""

from __future__ import annotations

import sys

import numpy as np

from workbench.files.imatrix_file import read_imatrix


def main(ours_path: str, theirs_path: str) -> int:
    ours, theirs = read_imatrix(ours_path), read_imatrix(theirs_path)
    if set(ours.entries) != set(theirs.entries):
        print(f"different weights: only ours {sorted(set(ours.entries) - set(theirs.entries))[:5]}, "
              f"only theirs {sorted(set(theirs.entries) - set(ours.entries))[:5]}")
        return 1
    a, b = ours.importance(), theirs.importance()
    elementwise, scaled, equal_counts, identical = [], [], 0, 0
    for name in sorted(b):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        nz = y != 0
        elementwise.append(float(np.max(np.abs(x[nz] - y[nz]) / np.abs(y[nz]))) if nz.any() else 0.0)
        scaled.append(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)))
        equal_counts += bool(np.array_equal(ours.entries[name].counts, theirs.entries[name].counts))
        identical += bool(np.array_equal(ours.entries[name].sums, theirs.entries[name].sums))
    print(f"{len(b)} tensors; chunks ours {ours.chunk_count}×{ours.chunk_size}, theirs {theirs.chunk_count}×"
          f"{theirs.chunk_size}; tokens ours {ours.n_tokens}, theirs {theirs.n_tokens}")
    print(f"element-wise relative difference: max {max(elementwise):.2e}, median {np.median(elementwise):.2e}")
    print(f"difference / tensor's largest value: max {max(scaled):.2e}, median {np.median(scaled):.2e}")
    print(f"token counts equal: {equal_counts} of {len(b)} tensors; sums bit-identical: {identical} of {len(b)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
