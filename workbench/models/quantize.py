"""Make one quantization of a GGUF with llama.cpp's own quantizer, in a child process.

The quantizer runs in its own process so that a crash inside llama.cpp cannot take the caller
(the app) down, and it writes to a temporary name that is renamed only on success, so an
interrupted quantization never leaves a half file that looks usable.

With an importance matrix (`imatrix=`), the child reads the file (either of llama.cpp's formats, through
`files.imatrix_file`), hands the per-weight values to `llama_model_quantize` as llama-quantize does, and writes
the same `quantize.imatrix.*` keys into the new file's metadata, plus the workbench's `workbench.calibration.*`
provenance keys, so any tool reading the file can tell it was made with one, and from what.

Run as `python -m workbench.models.quantize SRC DST TYPE [THREADS] [IMATRIX]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from workbench.engine.pool import describe_exit

# Quantization types llama.cpp can produce, by the short name users know.
QUANT_TYPES = (
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_NL", "IQ4_XS", "IQ3_M", "IQ3_XXS", "IQ2_M", "IQ2_XXS",
)

#: Types llama.cpp refuses to make without an importance matrix (its `tensor_requires_imatrix`: IQ3_XXS, IQ2_XXS,
#: and Q2_K inside a Q2_K_S file) or, for IQ2_M, whose 2-bit IQ tensors are unusable without one.
NEEDS_IMATRIX = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_M", "Q2_K_S"})

#: IQ types: quantizations designed for an importance matrix; they work without one (the IQ4s, IQ3_M) but worse.
IQ_TYPES = tuple(t for t in QUANT_TYPES if t.startswith("IQ"))

#: The metadata keys llama-quantize writes for a file made with an importance matrix (quantize.cpp).
IMATRIX_FILE_KEY, IMATRIX_DATASET_KEY = "quantize.imatrix.file", "quantize.imatrix.dataset"
IMATRIX_ENTRIES_KEY, IMATRIX_CHUNKS_KEY = "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count"


class QuantizeError(RuntimeError):
    pass


def ftype_for(quant_type: str) -> int:
    """llama.cpp's LLAMA_FTYPE constant for a short type name such as "Q4_K_M"."""
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if quant_type == "F32" else f"LLAMA_FTYPE_MOSTLY_{quant_type}"
    if quant_type not in QUANT_TYPES or not hasattr(llama_cpp, name):
        raise QuantizeError(f"unknown quantization type {quant_type!r}; choose from {', '.join(QUANT_TYPES)}")
    return int(getattr(llama_cpp, name))


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], quant_type: str, threads: int | None = None,
             imatrix: str | os.PathLike[str] | None = None) -> Path:
    """Write `dst` as `quant_type` of `src` (requantizing allowed), with the importance matrix in the file
    `imatrix` when given; raises QuantizeError with the cause."""
    if quant_type not in QUANT_TYPES:
        raise QuantizeError(f"unknown quantization type {quant_type!r}; choose from {', '.join(QUANT_TYPES)}")
    if imatrix is None and quant_type in NEEDS_IMATRIX:
        raise QuantizeError(f"{quant_type} needs an importance matrix: llama.cpp cannot make a usable {quant_type} "
                            "without one (choose or compute one, or pick a K-quant such as Q3_K_M)")
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".partial")
    cmd = [sys.executable, "-m", "workbench.models.quantize", str(src), str(tmp), quant_type, str(threads or os.cpu_count() or 1)]
    if imatrix is not None:
        cmd.append(str(imatrix))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        reason, _ = describe_exit(proc.returncode)
        detail = (proc.stderr.strip().splitlines() or [reason])[-1]
        raise QuantizeError(f"quantizing {src} to {quant_type} failed: {detail}")
    os.replace(tmp, dst)
    return dst


def _kv_overrides(pairs: list[tuple[str, str | int]]) -> Any:
    """A terminated llama_model_kv_override array (strings cut to llama.cpp's 127 bytes, as llama-quantize does)."""
    import llama_cpp

    arr = (llama_cpp.llama_model_kv_override * (len(pairs) + 1))()
    for slot, (key, value) in zip(arr, pairs, strict=False):
        slot.key = key.encode()[:127]
        if isinstance(value, int):
            slot.tag, slot.value.val_i64 = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, value
        else:
            slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            slot.value.val_str = value.encode("utf-8")[:127].decode("utf-8", "ignore").encode()
    return arr


def _imatrix_params(path: str) -> tuple[Any, Any, list[Any]]:
    """(imatrix array, kv overrides, buffers to keep alive) for `path`, as llama-quantize builds them."""
    import ctypes

    import llama_cpp
    import numpy as np

    from workbench.files.imatrix_file import read_imatrix

    data = read_imatrix(path)
    values = {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in data.importance().items()}
    arr = (llama_cpp.llama_model_imatrix_data * (len(values) + 1))()
    keep: list[Any] = []
    for slot, (name, v) in zip(arr, sorted(values.items()), strict=False):
        encoded = name.encode()
        keep += [encoded, v]
        slot.name, slot.data, slot.size = encoded, v.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), v.size
    pairs: list[tuple[str, str | int]] = [(IMATRIX_FILE_KEY, os.path.basename(path))]
    if data.datasets:
        pairs.append((IMATRIX_DATASET_KEY, data.datasets[0]))
    pairs.append((IMATRIX_ENTRIES_KEY, len(values)))
    if data.chunk_count > 0:
        pairs.append((IMATRIX_CHUNKS_KEY, data.chunk_count))
    pairs += sorted(data.metadata.items())
    return arr, _kv_overrides(pairs), keep


def _main(argv: list[str]) -> int:
    import ctypes

    import llama_cpp

    from workbench.files.imatrix_file import ImatrixError

    src, dst, quant_type = argv[0], argv[1], argv[2]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_for(quant_type)
    params.allow_requantize = True
    params.nthread = int(argv[3]) if len(argv) > 3 else 0
    keep: list[Any] = []
    if len(argv) > 4:
        try:
            imatrix, overrides, keep = _imatrix_params(argv[4])
        except ImatrixError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        params.imatrix, params.kv_overrides = imatrix, overrides
        keep += [imatrix, overrides]
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"llama_model_quantize returned {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
