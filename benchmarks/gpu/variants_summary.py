"""Summarise `h100.sh variants`: per KV-cache variant on the GPU, the KV cache predicted vs llama.cpp's own figure,
the predicted vs NVML-measured VRAM, and the measured decode speed beside this machine's target estimate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

MiB = 2**20


def main(out: str) -> None:
    d = Path(out)
    run = json.loads((d / "variants-gpu.json").read_text())
    for r in run["results"]:
        mem = r.get("memory") or {}
        pred, rep, meas = mem.get("predicted") or {}, mem.get("reported") or {}, mem.get("measured") or {}
        kv_p, kv_r = pred.get("kv_bytes"), rep.get("kv_bytes")
        print(f"{r['label']}: KV predicted {kv_p / MiB if kv_p else 0:.2f} MiB, llama.cpp {kv_r / MiB if kv_r else 0:.2f} MiB "
              f"(by device {rep.get('by_device')}); VRAM NVML {(r.get('gpu_mem_bytes') or 0) / MiB:.0f} MiB; "
              f"decode {r.get('decode_tok_s') or 0:.1f} tok/s over {r.get('completion_tokens')} tokens; "
              f"measured {json.dumps(meas)}; error {r.get('error')}")
    targets = json.loads((d / "targets-gpu.json").read_text())
    here = next((t for t in (targets if isinstance(targets, list) else targets.get("targets", [])) if t.get("name") == "this machine"), None)
    print("this machine:", json.dumps(here)[:800])
    fit = json.loads((d / "targets-fit-gpu.json").read_text())
    print("estimate here:", json.dumps(fit)[:1500])


if __name__ == "__main__":
    main(sys.argv[1])
