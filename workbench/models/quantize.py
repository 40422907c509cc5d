"""Make one quantization of a GGUF with llama.cpp's own quantizer, in a child process.

The quantizer runs in its own process so that a crash inside llama.cpp cannot take the caller
(the app) down, and it writes to a temporary name that is renamed only on success, so an
interrupted quantization never leaves a half file that looks usable.

Run as `python -m workbench.models.quantize SRC DST TYPE [THREADS]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.engine.pool import describe_exit

# Quantization types llama.cpp can produce, by the short name users know.
QUANT_TYPES = (
    "F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "IQ4_NL", "IQ4_XS",
)


class QuantizeError(RuntimeError):
    pass


def ftype_for(quant_type: str) -> int:
    """llama.cpp's LLAMA_FTYPE constant for a short type name such as "Q4_K_M"."""
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if quant_type == "F32" else f"LLAMA_FTYPE_MOSTLY_{quant_type}"
    if quant_type not in QUANT_TYPES or not hasattr(llama_cpp, name):
        raise QuantizeError(f"unknown quantization type {quant_type!r}; choose from {', '.join(QUANT_TYPES)}")
    return int(getattr(llama_cpp, name))


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], quant_type: str, threads: int | None = None) -> Path:
    """Write `dst` as `quant_type` of `src` (requantizing allowed); raises QuantizeError with the cause."""
    if quant_type not in QUANT_TYPES:
        raise QuantizeError(f"unknown quantization type {quant_type!r}; choose from {', '.join(QUANT_TYPES)}")
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".partial")
    cmd = [sys.executable, "-m", "workbench.models.quantize", str(src), str(tmp), quant_type, str(threads or os.cpu_count() or 1)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        reason, _ = describe_exit(proc.returncode)
        detail = (proc.stderr.strip().splitlines() or [reason])[-1]
        raise QuantizeError(f"quantizing {src} to {quant_type} failed: {detail}")
    os.replace(tmp, dst)
    return dst


def _main(argv: list[str]) -> int:
    import ctypes

    import llama_cpp

    src, dst, quant_type = argv[0], argv[1], argv[2]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype_for(quant_type)
    params.allow_requantize = True
    params.nthread = int(argv[3]) if len(argv) > 3 else 0
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        print(f"llama_model_quantize returned {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
