"""Target machines: "would it fit there, and how fast?" for machines other than this one.

A `TargetProfile` is the few figures that decide fit and decode speed: RAM, one GPU's VRAM, the bandwidth of
each, cores, and how much of the RAM the operating system and other programs keep. Every figure carries its
source (a spec sheet, a standard's arithmetic, a measurement here) or says "assumption: …", so a verdict on a
target can be traced back. "this machine" is measured; the presets are built in; a user's profiles are saved
in the store (`target_profiles`).

Fit on a target reuses `files.fit.predict` with the target's memory in place of this machine's: the RAM budget
is RAM − OS reserve (no further headroom: the reserve is the headroom), the GPU is one device of the profile's
VRAM less its reserve, and llama.cpp's CPU weight repacking is assumed off (it depends on the target's CPU,
which a profile does not describe).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from workbench.core import hardware
from workbench.core.hardware import Gpu
from workbench.core.text_units import GiB, bytes_in_words, format_gib, format_mib
from workbench.files import fit

THIS_MACHINE = "this machine"

# Bounds on what a user may type into a profile (it is user input, stored and shown).
MAX_NAME_CHARS = 60
MAX_DESCRIPTION_CHARS = 500
MAX_SOURCE_CHARS = 400
MAX_SOURCES = 16
MAX_RAM_BYTES = 64 * 2**40  # 64 TiB
MIN_RAM_BYTES = 256 * 2**20
MAX_VRAM_BYTES = 4 * 2**40
MAX_BANDWIDTH_GBS = 100_000.0
MAX_CORES = 4096
FIGURES = ("ram_bytes", "vram_bytes", "ram_bandwidth_gbs", "vram_bandwidth_gbs", "cores", "os_reserve_bytes",
           "vram_reserve_bytes")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TargetProfile:
    """A machine to predict for. Bytes are binary (GiB = 2**30); bandwidths in GB/s (1e9 bytes/s)."""

    name: str
    ram_bytes: int
    vram_bytes: int  # one GPU's memory; 0 = no GPU llama.cpp can use
    ram_bandwidth_gbs: float
    vram_bandwidth_gbs: float | None
    cores: int
    os_reserve_bytes: int  # RAM the OS and other programs keep: the budget is ram_bytes - this
    sources: dict[str, str]  # figure name -> where it comes from, or "assumption: …"
    builtin: bool
    description: str = ""
    vram_reserve_bytes: int = 0  # VRAM the display / desktop keeps

    def validate(self) -> TargetProfile:
        """This profile with its name and texts tidied, or ValueError saying in plain words what is wrong."""
        name = " ".join(unicodedata.normalize("NFKC", str(self.name or "")).split())
        if not name:
            raise ValueError("a target needs a name")
        hidden = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cf")), None)
        if hidden is not None:  # zero-width and bidi-override characters make one name look like another
            raise ValueError(f"a target's name may not hold an invisible or control character "
                             f"(U+{ord(hidden):04X} {unicodedata.name(hidden, 'control')})")
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"a target's name is at most {MAX_NAME_CHARS} characters ({len(name)} given)")
        for label, value in (("RAM", self.ram_bytes), ("VRAM", self.vram_bytes), ("OS reserve", self.os_reserve_bytes),
                             ("VRAM reserve", self.vram_reserve_bytes), ("cores", self.cores)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{label} must be a whole number")
            if value < 0:
                raise ValueError(f"{label} cannot be negative")
        if not MIN_RAM_BYTES <= self.ram_bytes <= MAX_RAM_BYTES:
            raise ValueError(f"RAM must be between {MIN_RAM_BYTES / GiB:.2f} GiB and {MAX_RAM_BYTES / GiB:,.0f} GiB")
        if self.vram_bytes > MAX_VRAM_BYTES:
            raise ValueError(f"VRAM must be at most {MAX_VRAM_BYTES / GiB:,.0f} GiB")
        if self.os_reserve_bytes >= self.ram_bytes:
            raise ValueError("the OS reserve must be less than the RAM")
        if self.vram_bytes and self.vram_reserve_bytes >= self.vram_bytes:
            raise ValueError("the VRAM reserve must be less than the VRAM")
        if not 1 <= self.cores <= MAX_CORES:
            raise ValueError(f"cores must be between 1 and {MAX_CORES}")
        _check_bandwidth("RAM bandwidth", self.ram_bandwidth_gbs)
        if self.vram_bandwidth_gbs is not None:
            _check_bandwidth("VRAM bandwidth", self.vram_bandwidth_gbs)
        description = " ".join(str(self.description or "").split())
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValueError(f"the description is at most {MAX_DESCRIPTION_CHARS} characters")
        if not isinstance(self.sources, dict) or len(self.sources) > MAX_SOURCES:
            raise ValueError(f"sources: at most {MAX_SOURCES} entries, one per figure")
        sources = {}
        for key, text in self.sources.items():
            if key not in FIGURES:
                raise ValueError(f"sources: {str(key)[:40]!r} is not a figure of a profile ({', '.join(FIGURES)})")
            text = " ".join(_CONTROL.sub(" ", str(text)).split())
            if len(text) > MAX_SOURCE_CHARS:
                raise ValueError(f"the source of {key} is at most {MAX_SOURCE_CHARS} characters")
            if text:
                sources[key] = text
        return replace(self, name=name, description=description, sources=sources,
                       ram_bandwidth_gbs=float(self.ram_bandwidth_gbs),
                       vram_bandwidth_gbs=None if self.vram_bandwidth_gbs is None else float(self.vram_bandwidth_gbs))

    @property
    def ram_budget_bytes(self) -> int:
        return self.ram_bytes - self.os_reserve_bytes

    @property
    def vram_budget_bytes(self) -> int:
        return max(0, self.vram_bytes - self.vram_reserve_bytes) if self.vram_bytes else 0

    def source(self, figure: str) -> str:
        """Where a figure comes from ("not given" when the profile does not say)."""
        return self.sources.get(figure) or "not given"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, builtin: bool = False) -> TargetProfile:
        """A profile from stored or typed-in data (unknown keys ignored), validated; ValueError when unusable."""
        names = {f.name for f in fields(cls)}
        try:
            profile = cls(**{**{k: v for k, v in data.items() if k in names}, "builtin": builtin})
        except TypeError as exc:
            missing = sorted(names - set(data) - {"builtin", "description", "vram_reserve_bytes"})
            raise ValueError(f"a profile needs {', '.join(missing) or 'its figures'}") from exc
        return profile.validate()


def validate(profile: TargetProfile) -> TargetProfile:
    """`profile.validate()`: the profile tidied, or ValueError in plain words."""
    return profile.validate()


def _check_bandwidth(label: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{label} must be a number of GB/s")
    if not 0.1 <= value <= MAX_BANDWIDTH_GBS:
        raise ValueError(f"{label} must be between 0.1 and {MAX_BANDWIDTH_GBS:,.0f} GB/s")


# --------------------------------------------------------------------------------------------------------------
# presets and this machine
# --------------------------------------------------------------------------------------------------------------

_DDR4_3200 = ("JEDEC DDR4-3200 (JESD79-4, https://www.jedec.org/standards-documents/docs/jesd79-4a): 3200 MT/s x "
              "8 bytes per 64-bit channel x 2 channels = 51.2 GB/s theoretical peak (measured copy rates on such "
              "machines are lower, e.g. ~46 GB/s read in guru3d's dual-channel DDR4-3200 test, "
              "https://guru3d.com/review/g-skill-tridentz-royal-ddr4-3200-mhz-review/page-10)")
_DDR5_5600 = ("JEDEC DDR5-5600 (JESD79-5, https://www.jedec.org/standards-documents/docs/jesd79-5b): 5600 MT/s x "
              "8 bytes per 64-bit DIMM (two 32-bit subchannels) x 2 DIMMs = 89.6 GB/s theoretical peak")


def presets() -> list[TargetProfile]:
    """The built-in targets. Machine classes, not products: each figure's source says which are assumptions."""
    return [
        TargetProfile(
            name="8 GB laptop", ram_bytes=8 * GiB, vram_bytes=0, ram_bandwidth_gbs=51.2, vram_bandwidth_gbs=None,
            cores=4, os_reserve_bytes=3 * GiB, builtin=True,
            description="A budget or older laptop: 8 GB of dual-channel DDR4-3200, integrated graphics (CPU inference).",
            sources={
                "ram_bytes": "assumption: 8 GiB installed, the common entry configuration",
                "ram_bandwidth_gbs": _DDR4_3200,
                "vram_bytes": "assumption: integrated graphics, which llama.cpp's CPU build does not use",
                "cores": "assumption: 4 cores (e.g. a 4-core mobile CPU such as the Core i5-1135G7); decode speed "
                         "is estimated from bandwidth, so cores only inform",
                "os_reserve_bytes": "assumption: the OS, a browser and the app keep about 3 GiB busy",
            }),
        TargetProfile(
            name="16 GB laptop", ram_bytes=16 * GiB, vram_bytes=0, ram_bandwidth_gbs=89.6, vram_bandwidth_gbs=None,
            cores=8, os_reserve_bytes=4 * GiB, builtin=True,
            description="A current mid-range laptop: 16 GB of dual-channel DDR5-5600, integrated graphics (CPU "
                        "inference).",
            sources={
                "ram_bytes": "assumption: 16 GiB installed",
                "ram_bandwidth_gbs": _DDR5_5600,
                "vram_bytes": "assumption: integrated graphics, which llama.cpp's CPU build does not use",
                "cores": "assumption: 8 cores; decode speed is estimated from bandwidth, so cores only inform",
                "os_reserve_bytes": "assumption: the OS, a browser and the app keep about 4 GiB busy",
            }),
        TargetProfile(
            name="24 GB GPU desktop", ram_bytes=32 * GiB, vram_bytes=24 * GiB, ram_bandwidth_gbs=89.6,
            vram_bandwidth_gbs=1008.0, cores=8, os_reserve_bytes=4 * GiB, vram_reserve_bytes=512 * 2**20,
            builtin=True,
            description="A desktop with an NVIDIA GeForce RTX 4090 (24 GB GDDR6X) and 32 GB of dual-channel "
                        "DDR5-5600.",
            sources={
                "vram_bytes": "NVIDIA GeForce RTX 4090 specifications: 24 GB GDDR6X "
                              "(https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4090/)",
                "vram_bandwidth_gbs": "NVIDIA GeForce RTX 4090 specifications: 384-bit memory interface at 21 Gbps "
                                      "= 21 x 384 / 8 = 1008 GB/s theoretical peak "
                                      "(https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/rtx-4090/)",
                "ram_bytes": "assumption: 32 GiB installed beside the GPU",
                "ram_bandwidth_gbs": _DDR5_5600,
                "cores": "assumption: 8 cores; decode speed is estimated from bandwidth, so cores only inform",
                "os_reserve_bytes": "assumption: the OS, a browser and the app keep about 4 GiB busy",
                "vram_reserve_bytes": "assumption: the desktop and display keep about 0.5 GiB of VRAM",
            }),
    ]


_DETERMINERS = ("this ", "that ", "the ", "my ", "our ", "your ", "a ", "an ")


def the(name: str) -> str:
    """A target's name as a sentence needs it: "the 16 GB laptop", but "this machine" and "my laptop" as they are."""
    return name if name.casefold().startswith(_DETERMINERS) else f"the {name}"


def this_machine(*, bandwidth: hardware.MemoryBandwidth | None = None) -> TargetProfile:
    """This machine, measured now: RAM, the largest GPU (NVML), cores, and RAM bandwidth (a copy rate).

    The OS reserve is what other processes use right now (total − available) plus the share of the rest that the
    fit check everywhere else keeps free (fit.DEFAULT_HEADROOM), so this machine's verdict here is the verdict the
    Models and Hardware pages give; the same for the GPU's memory.
    """
    m = hardware.machine()
    bw = bandwidth or hardware.measure_memory_bandwidth()
    gpu = max(m.gpus, key=lambda g: g.total_bytes) if m.gpus else None
    in_use = m.ram_total_bytes - m.ram_available_bytes
    reserve = max(0, min(in_use + int(m.ram_available_bytes * fit.DEFAULT_HEADROOM), m.ram_total_bytes - MIN_RAM_BYTES))
    sources = {
        "ram_bytes": "measured: total RAM (psutil)",
        "os_reserve_bytes": "measured: RAM in use by other processes now (total − available, psutil), plus "
                            f"{fit.DEFAULT_HEADROOM:.0%} of the available RAM kept free as everywhere in the app",
        "ram_bandwidth_gbs": f"measured: {bw.method}, {bw.threads} thread(s), {bw.measured_at} — a copy rate, "
                             "below the theoretical peak a spec sheet would quote",
        "cores": "measured: physical cores (psutil)",
        "vram_bytes": f"measured: {gpu.name} total memory (NVML)" if gpu else "measured: no GPU found (NVML)",
    }
    vram_bw = hardware.gpu_memory_bandwidth_gbs(gpu.index) if gpu else None
    if gpu:
        sources["vram_reserve_bytes"] = (f"measured: GPU memory in use now (NVML total − free), plus "
                                         f"{fit.DEFAULT_HEADROOM:.0%} of the free memory kept free as everywhere")
        sources["vram_bandwidth_gbs"] = (
            "read from NVML: maximum memory clock x 2 x bus width, a theoretical peak" if vram_bw else
            "not known: NVML did not give the memory clock and bus width; a saved profile can give the figure")
    return TargetProfile(
        name=THIS_MACHINE, ram_bytes=int(m.ram_total_bytes), vram_bytes=int(gpu.total_bytes) if gpu else 0,
        ram_bandwidth_gbs=max(0.1, float(bw.gbs)), vram_bandwidth_gbs=vram_bw,
        cores=int(m.physical_cores or m.logical_cores), os_reserve_bytes=int(reserve),
        vram_reserve_bytes=int(min(gpu.total_bytes - gpu.free_bytes + gpu.free_bytes * fit.DEFAULT_HEADROOM,
                                   gpu.total_bytes - 2**20)) if gpu else 0,
        sources=sources, builtin=True, description=m.one_line())


# --------------------------------------------------------------------------------------------------------------
# saved profiles
# --------------------------------------------------------------------------------------------------------------

def name_key(name: str) -> str:
    """What makes two target names the same one: case, width and spacing do not count ("Lab box" = "ＬＡＢ ＢＯＸ")."""
    return " ".join(unicodedata.normalize("NFKC", str(name)).split()).casefold()


def _reserved_names() -> set[str]:
    return {name_key(THIS_MACHINE)} | {name_key(p.name) for p in presets()}


def saved_targets(store: Any) -> tuple[list[TargetProfile], list[str]]:
    """The user's saved profiles, and one note per stored row that could not be read (left out)."""
    out, notes = [], []
    for row in store.target_profiles():
        try:
            out.append(TargetProfile.from_dict({**row["data"], "name": row["name"]}))
        except ValueError as exc:
            notes.append(f"saved target {str(row['name'])[:MAX_NAME_CHARS]!r} left out: {exc}")
    return out, notes


def list_targets(store: Any, *, include_this_machine: bool = True) -> list[TargetProfile]:
    """This machine, the presets, then the saved profiles by name."""
    head = [this_machine()] if include_this_machine else []
    return head + presets() + saved_targets(store)[0]


def get_target(store: Any, name: str) -> TargetProfile:
    """The target called `name` (as `name_key` compares); ValueError naming the choices when there is none."""
    wanted = name_key(name)
    if wanted == name_key(THIS_MACHINE):
        return this_machine()
    for profile in presets() + saved_targets(store)[0]:
        if name_key(profile.name) == wanted:
            return profile
    names = [THIS_MACHINE] + [p.name for p in presets()] + [p.name for p in saved_targets(store)[0]]
    raise ValueError(f"no target called {str(name)[:MAX_NAME_CHARS]!r}; choose one of: {', '.join(names)}")


def save_target(store: Any, profile: TargetProfile) -> TargetProfile:
    """Validate and save, replacing a saved profile of the same name (as `name_key` compares, so "lab box" edits
    "Lab box" rather than saving a second one); a preset's or this machine's name is refused."""
    clean = replace(profile, builtin=False).validate()
    if name_key(clean.name) in _reserved_names():
        raise ValueError(f"{clean.name!r} is a built-in target: save your version under another name")
    data = clean.to_dict()
    data.pop("builtin")
    store.save_target_profile(clean.name, data)
    for row in store.target_profiles():  # the same target under another spelling: the new one replaces it
        if row["name"] != clean.name and name_key(row["name"]) == name_key(clean.name):
            store.delete_target_profile(row["name"])
    return clean


def delete_target(store: Any, name: str) -> None:
    """Delete a saved profile; built-in ones cannot be deleted; ValueError when there is no such saved profile."""
    clean = " ".join(str(name).split())
    if name_key(clean) in _reserved_names():
        raise ValueError(f"{clean!r} is built in and cannot be deleted")
    rows = [row for row in store.target_profiles() if name_key(row["name"]) == name_key(clean)]
    for row in rows:  # every spelling saved before names were compared this way
        store.delete_target_profile(row["name"])
    if rows:
        return
    raise ValueError(f"there is no saved target called {clean[:MAX_NAME_CHARS]!r}")


# --------------------------------------------------------------------------------------------------------------
# fit on a target
# --------------------------------------------------------------------------------------------------------------

@dataclass
class TargetFit:
    """Where one model runs on one target at one context and KV-cache type, and with how much to spare."""

    target: str
    verdict_code: str  # fit.GPU_FULL | GPU_PARTIAL | CPU_ONLY | NO_FIT
    verdict: str
    n_ctx: int
    kv_type_k: str
    kv_type_v: str
    predicted_bytes: int
    ram_bytes: int
    vram_bytes: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    spare_bytes: int  # budget left in the memory that binds (VRAM on the GPU, else RAM); negative: short by that much
    gpu_layers: int
    n_layers: int | None
    notes: list[str] = field(default_factory=list)
    spare_in: str = "RAM"  # which memory spare_bytes is about ("RAM" or "VRAM")

    @property
    def fits(self) -> bool:
        return self.verdict_code != fit.NO_FIT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _predict(info: Any, profile: TargetProfile, n_ctx: int, kv_type_k: str, kv_type_v: str,
             weights_bytes: int | None) -> fit.FitPrediction:
    gpus = [Gpu(0, f"{profile.name} GPU", profile.vram_bytes, profile.vram_budget_bytes, "target")] \
        if profile.vram_bytes else []
    return fit.predict(info, n_ctx=n_ctx, ram_available_bytes=profile.ram_budget_bytes, gpus=gpus, headroom=0.0,
                       repack_cpu=False, weights_bytes=weights_bytes, kv_type=kv_type_k, kv_type_v=kv_type_v)


def fit_on_target(info: Any, profile: TargetProfile, *, n_ctx: int, kv_type_k: str = "f16", kv_type_v: str = "f16",
                  weights_bytes: int | None = None) -> TargetFit:
    """Predict where a GGUF (a `gguf_info.GgufInfo`) runs on `profile` at `n_ctx` with this KV-cache type."""
    kv_type_k, kv_type_v = kv_type_k.lower(), kv_type_v.lower()
    pred = _predict(info, profile, int(n_ctx), kv_type_k, kv_type_v, weights_bytes)
    spare, where = pred.spare_bytes, pred.spare_in
    notes = [n for n in pred.notes if not n.startswith("on GPU 0 (")]
    if profile.vram_bytes:
        notes.append(f"GPU: {format_gib(profile.vram_budget_bytes)} usable of {format_gib(profile.vram_bytes)}; "
                     f"includes ~{format_mib(fit.CUDA_CONTEXT_BYTES)} for the CUDA context")
    notes.append("assumption: llama.cpp's CPU weight repacking is off (it depends on the target's CPU)")
    if pred.verdict_code == fit.NO_FIT:
        notes = [n for n in notes if not n.startswith("needs about")]
        notes.append(f"short by {format_gib(-spare, 2)} of RAM (budget {format_gib(profile.ram_budget_bytes)} = "
                     f"RAM − OS reserve)")
    return TargetFit(
        target=profile.name, verdict_code=pred.verdict_code, verdict=pred.verdict, n_ctx=pred.n_ctx,
        kv_type_k=kv_type_k, kv_type_v=kv_type_v, predicted_bytes=pred.predicted_bytes, ram_bytes=pred.ram_bytes,
        vram_bytes=pred.vram_bytes, weights_bytes=pred.weights_bytes, kv_bytes=pred.kv_bytes,
        compute_bytes=pred.compute_bytes, overhead_bytes=pred.overhead_bytes, spare_bytes=int(spare),
        gpu_layers=pred.gpu_layers, n_layers=pred.n_layers, notes=notes, spare_in=where)


# The verdict as a short cell, fit first (a table says "CPU only" to no one asking "will it fit my laptop?").
VERDICT_WORDS = {fit.GPU_FULL: "fits on GPU", fit.GPU_PARTIAL: "fits, partial GPU offload", fit.CPU_ONLY: "fits (CPU)",
                 fit.NO_FIT: "does not fit"}


def verdict_words(code: str, fallback: str = "") -> str:
    """A fit verdict code in a few words for a table cell; `fallback` for a code this table does not know."""
    return VERDICT_WORDS.get(code, fallback or code)


def fit_sentence(f: TargetFit, profile: TargetProfile) -> str:
    """Will this file fit on this target, in words, the answer first: "fits, with 4.6 GiB to spare", "fits with
    partial GPU offload (20 of 33 layers on the GPU), with 2.1 GiB of RAM to spare", "does not fit: needs 9.1 GiB
    of RAM, has 5.0 GiB (8.0 GiB less 3.0 GiB for the OS)"."""
    spare = bytes_in_words(f.spare_bytes)
    if f.verdict_code == fit.NO_FIT:
        has = profile.ram_budget_bytes
        return (f"does not fit: needs {bytes_in_words(has - f.spare_bytes)} of RAM, has {bytes_in_words(has)} "
                f"({bytes_in_words(profile.ram_bytes)} less {bytes_in_words(profile.os_reserve_bytes)} for the OS)")
    if f.verdict_code == fit.GPU_FULL:
        return f"fits on the GPU, with {spare} of {f.spare_in} to spare"
    if f.verdict_code == fit.GPU_PARTIAL:
        of = f" of {f.n_layers}" if f.n_layers else ""
        return (f"fits with partial GPU offload ({f.gpu_layers}{of} layers on the GPU, the rest on the CPU), with "
                f"{spare} of {f.spare_in} to spare")
    if profile.vram_bytes:
        return f"fits in RAM and runs on the CPU (not on the GPU), with {spare} to spare"
    return f"fits, with {spare} to spare"


def ladder_fit_sentence(profile: TargetProfile, fits: Sequence[tuple[str, TargetFit]]) -> str:
    """A whole ladder on one target, the answer first: which files fit, and the margin of the one that binds.

    "All 5 fit; the tightest, F16, fits, with 4.6 GiB to spare." · "Q4_K_M and Q2_K fit; the tightest, Q4_K_M,
    fits, with 0.8 GiB to spare. F16 and Q8_0 do not; the nearest, Q8_0, does not fit: needs …" · "None fits: even
    the smallest, Q2_K, does not fit: needs …"."""
    if not fits:
        return "No file could be read."
    ok = [(label, f) for label, f in fits if f.fits]
    short = [(label, f) for label, f in fits if not f.fits]
    if not ok:
        label, near = max(short, key=lambda x: x[1].spare_bytes)
        return f"None fits: even the smallest, {label}, {fit_sentence(near, profile)}."
    label, tight = min(ok, key=lambda x: x[1].spare_bytes)
    if len(ok) == 1:
        head = f"{label} {fit_sentence(tight, profile)}."
    else:
        every = f"All {len(ok)}" if not short else _and([lb for lb, _ in ok])
        head = f"{every} fit; the tightest, {label}, {fit_sentence(tight, profile)}."
    if not short:
        return head
    label, near = max(short, key=lambda x: x[1].spare_bytes)
    if len(short) == 1:
        return f"{head} {label} {fit_sentence(near, profile)}."
    return f"{head} {_and([lb for lb, _ in short])} do not; the nearest, {label}, {fit_sentence(near, profile)}."


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def kv_bytes(info: Any, n_ctx: int, kv_type_k: str = "f16", kv_type_v: str = "f16") -> int:
    """The KV cache llama.cpp allocates for `n_ctx` tokens (padded to 256 cells), K and V each of its own type."""
    s = fit._shape(info)
    return fit.kv_cache_bytes(s.n_layers, fit.padded_ctx(int(n_ctx)), s.n_kv_heads, s.key_length, s.value_length,
                              kv_type_k, kv_type_v)


def kv_lines(info: Any, contexts: Sequence[int | None] = (4096, 8192, 32768, None), kv_type_k: str = "f16",
             kv_type_v: str = "f16") -> list[tuple[int, int]]:
    """(n_ctx, KV-cache bytes) per context; None is the model's trained maximum (left out when the header has none).
    Contexts beyond the trained maximum are left out too: llama.cpp would run them, the model was not made for them."""
    ctx_train = getattr(info, "context_length", None)
    out: list[tuple[int, int]] = []
    for c in contexts:
        n = ctx_train if c is None else int(c)
        if not n or (ctx_train and n > ctx_train) or any(n == seen for seen, _ in out):
            continue
        out.append((int(n), kv_bytes(info, n, kv_type_k, kv_type_v)))
    return sorted(out)


@dataclass
class MemoryLines:
    """One model's memory as lines at one context and KV type (the CPU placement: everything in RAM)."""

    weights_bytes: int
    kv_bytes: int
    compute_other_bytes: int  # compute buffers + runtime overhead
    total_bytes: int
    n_ctx: int
    basis: dict[str, str]


def memory_lines(info: Any, *, n_ctx: int, kv_type_k: str = "f16", kv_type_v: str = "f16") -> MemoryLines:
    """Predicted weights / KV cache / compute+other for one worker on the CPU (no repacking), KV exact for K ≠ V."""
    pred = fit.predict(info, n_ctx=n_ctx, kv_type=kv_type_k, kv_type_v=kv_type_v, ram_available_bytes=2**62, gpus=[],
                       repack_cpu=False)
    other = pred.compute_bytes + pred.overhead_bytes
    return MemoryLines(pred.weights_bytes, pred.kv_bytes, other, pred.weights_bytes + pred.kv_bytes + other, pred.n_ctx,
                       dict(pred.basis))
