"""On a GPU machine: automatic offload sizes every contestant as if it ran alone, the warm pool stays within its
budget and evicts least-recently-used workers, and each result says its layers, VRAM and CPU contention.

    python3 benchmarks/gpu/pool_check.py FILE.gguf ...    (run by `bash benchmarks/gpu/h100.sh pool`)
"""

from __future__ import annotations

import json
import os
import sys

from workbench.core import hardware
from workbench.engine.pool import WorkerPool
from workbench.runs.compare import run_comparison
from workbench.runs.contestants import Contestant, RunSettings

GiB = 2**30


def show(pool: WorkerPool, title: str) -> dict:
    g = hardware.gpus()
    alone = pool.gpus_as_if_alone()
    used = pool.memory_in_use()
    budget = pool.budget()
    row = {"when": title, "gpu_free_mib": [x.free_bytes // 2**20 for x in g],
           "as_if_alone_free_mib": [x.free_bytes // 2**20 for x in alone],
           "pool_ram_mib": used.ram_bytes // 2**20, "pool_vram_mib": {k: v // 2**20 for k, v in used.vram_bytes.items()},
           "budget_ram_mib": budget.ram_bytes // 2**20, "budget_source": budget.source,
           "warm": [(w["file"], w["ram_bytes"] // 2**20, w["vram_bytes"] // 2**20) for w in pool.warm_models()]}
    print(json.dumps(row))
    return row


def run(pool: WorkerPool, files: list[str], settings: RunSettings, title: str) -> list[dict]:
    cs = [Contestant(os.path.basename(f).split(".")[-2], f, is_reference=(i == 0)) for i, f in enumerate(files)]
    out = []
    for r in run_comparison(pool, cs, "The history of the printing press", settings).results:
        d = (r.measurement or {}).get("decode") or {}
        row = {"run": title, "label": r.label, "gpu_layers": r.gpu_layers, "vram_mib": (r.gpu_mem_bytes or 0) // 2**20,
               "decode_tok_s": round(r.decode_tok_s or 0, 1), "contention": d.get("contention"),
               "disturbed": r.disturbed, "warm": r.warm, "error": r.error}
        print(json.dumps(row))
        out.append(row)
    return out


def main() -> int:
    files = sys.argv[1:]
    pool = WorkerPool()
    record: dict = {"gpus": [g.__dict__ for g in hardware.gpus()], "rows": [], "state": []}
    try:
        settings = RunSettings(max_tokens=64, gpu_offload="auto")
        record["state"].append(show(pool, "empty pool"))
        record["layers_for"] = {os.path.basename(f): {"alone": settings.gpu_layers_for(f)} for f in files}
        record["rows"] += run(pool, files, settings, "auto offload, all warm")
        record["state"].append(show(pool, "after a comparison, all warm"))
        for f in files:  # sized as if alone even with every other file warm
            record["layers_for"][os.path.basename(f)]["with_pool_warm"] = settings.gpu_layers_for(f, pool)
        print(json.dumps({"layers_for": record["layers_for"]}))
        # a host-RAM budget that holds about two offloaded workers: the rest must be evicted, LRU first
        pool.set_memory_budget(int(1.2 * GiB))
        record["rows"] += run(pool, files, settings, "budget 1.2 GiB")
        record["state"].append(show(pool, "after a comparison under a 1.2 GiB budget"))
        pool.set_memory_budget(int(0.2 * GiB))
        record["rows"] += run(pool, files[:1], settings, "budget 0.2 GiB (too small for any)")
    finally:
        pool.shutdown()
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "pool-check.json"), "w") as fh:
        json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
