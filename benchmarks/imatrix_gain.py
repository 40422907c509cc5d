"""docs/quality.md's "Static vs imatrix on held-out text": the demo ladder's types, static vs imatrix, measured by
workbench.quality.imatrix_gain on the held-out half of product-support (both directions of the split) and on the
bundled reference text.

Usage: python benchmarks/imatrix_gain.py DIR [A.imatrix.gguf B.imatrix.gguf TOKENS_A TOKENS_B] > out.json
A is computed from the split's calibration half, B from its held-out half (the swapped split). Without the four
arguments the workbench computes both (`compute_imatrix`, each prompt rendered through the chat template, as the
Models page does); with them, matrices made elsewhere (e.g. by llama.cpp's llama-imatrix) are measured instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workbench.engine.pool import WorkerPool
from workbench.files.gguf_info import read_header
from workbench.models.ladder import Ladder, LadderFile, ensure_demo_ladder
from workbench.models.quantize import quantize
from workbench.quality.imatrix_gain import measure_gain
from workbench.runs.calibration import from_prompt_set, prompt_set_digest, split_prompts
from workbench.runs.contestants import RunSettings
from workbench.runs.imatrix import compute_imatrix
from workbench.runs.prompt_sets import load_prompt_set

TYPES = ("Q4_K_M", "IQ4_XS", "Q3_K_M", "IQ3_M", "Q2_K")


def main(out: str, matrix_a: str, matrix_b: str, tokens_a: int, tokens_b: int) -> None:
    demo = ensure_demo_ladder()
    ref = demo.reference
    prompts = load_prompt_set(Path(__file__).resolve().parents[1] / "prompts" / "sets" / "product-support.toml")
    split = split_prompts(len(prompts.prompts))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(ref.path).name.split(".")[0]

    def made(path: Path, qt: str, matrix: str | None = None) -> Path:
        if not path.exists():
            quantize(ref.path, path, qt, 2, imatrix=matrix)
        return path

    statics = [LadderFile.from_info(read_header(str(made(folder / f"{stem}.{qt}.gguf", qt))), qt) for qt in TYPES]
    results = {}
    for name, matrix, sp, tokens in (("A", matrix_a, split, tokens_a), ("B", matrix_b, split.swapped(), tokens_b)):
        prov = {"name": prompts.name, "kind": "prompt set", "sha256": prompt_set_digest(prompts), "tokens": tokens,
                "split": str(sp), "file": Path(matrix).name}
        imx = []
        for qt in TYPES:
            f = LadderFile.from_info(read_header(str(made(folder / f"{stem}.{qt}.imatrix-{name}.gguf", qt, matrix))),
                                     f"{qt} · imatrix ({prompts.name})")
            f.imatrix = prov
            imx.append(f)
        ladder = Ladder(f"demo + imatrix {name}", [ref, *statics, *imx], directory=str(folder))
        pool = WorkerPool()
        try:
            def say(d: int, t: int, m: str, name: str = name) -> None:
                print(f"[{name}] {d}/{t} {m}", file=sys.stderr)

            held = measure_gain(pool, ladder, prompt_set=prompts, settings=RunSettings(max_tokens=128, n_threads=2),
                                on_progress=say)
            results[name] = {"held_out": held.to_dict()}
            if name == "A":
                text = measure_gain(pool, ladder, text=True, settings=RunSettings(n_ctx=2048, n_threads=2),
                                    chunk_tokens=256, on_progress=say)
                results[name]["text"] = text.to_dict()
        finally:
            pool.shutdown()
    print(json.dumps(results, indent=1))


def our_matrices(folder: Path) -> tuple[str, str, int, int]:
    """Both directions' matrices made by the workbench from product-support (seed 0)."""
    ref = ensure_demo_ladder().reference.path
    prompts = load_prompt_set(Path(__file__).resolve().parents[1] / "prompts" / "sets" / "product-support.toml")
    folder.mkdir(parents=True, exist_ok=True)
    made = [compute_imatrix(ref, from_prompt_set(prompts, use=use), folder / f"{name}.imatrix.gguf", threads=2)
            for name, use in (("A", "calibration"), ("B", "held_out"))]
    for m in made:
        print(f"{m.path.name}: {m.n_tokens} tokens in {m.seconds:.1f} s", file=sys.stderr)
    return str(made[0].path), str(made[1].path), made[0].n_tokens, made[1].n_tokens


if __name__ == "__main__":
    if len(sys.argv) == 2:
        main(sys.argv[1], *our_matrices(Path(sys.argv[1])))
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
