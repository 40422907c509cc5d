"""Target machines on the Hardware page: the profiles with each figure's source, a form to add, edit and delete
them, and a ladder's memory as lines with a verdict and an estimated speed per target."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from ui.glossary_views import help_columns
from workbench.core import glossary, hardware
from workbench.core.escaping import md_escape
from workbench.core.text_units import GiB, format_bytes, format_gib
from workbench.decide import speed, targets
from workbench.decide.targets import TargetProfile
from workbench.files import fit
from workbench.files.gguf_info import GgufError, GgufInfo, read_header
from workbench.models.ladder import Ladder
from workbench.runs.variants import ctx_label
from workbench.storage.store import Store, StoreError

KV_TYPES = ("f16", "q8_0", "q4_0")


@st.cache_resource(show_spinner=False, max_entries=64)
def _header(path: str, mtime: float) -> GgufInfo:
    return read_header(path)


def header(path: str) -> GgufInfo:
    """A GGUF's header, parsed once per file version (a 49k-token vocabulary takes seconds to parse)."""
    return _header(path, os.path.getmtime(path))


@st.cache_resource(show_spinner="Measuring this machine's memory bandwidth…")
def _bandwidth() -> hardware.MemoryBandwidth:
    return hardware.measure_memory_bandwidth()


@st.cache_data(ttl=60, show_spinner="Calibrating the speed estimate against stored runs…")
def _calibration(db: str) -> speed.Calibration:
    return speed.calibrate(Store(db))  # each sample against the copy rate of its own thread count


def calibration(store: Store) -> speed.Calibration:
    return _calibration(str(store.path))


def all_targets(store: Store) -> list[TargetProfile]:
    """This machine, the presets and the saved profiles; a saved one that cannot be read is said, not shown."""
    saved, notes = targets.saved_targets(store)
    for note in notes:
        st.warning(md_escape(note))
    return [targets.this_machine(bandwidth=_bandwidth())] + targets.presets() + saved


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _gib(n: int | None) -> str:
    return format_gib(n) if n else "—"


def targets_table(profiles: list[TargetProfile]) -> None:
    table = pd.DataFrame([{
        "target": p.name, "kind": "measured here" if p.name == targets.THIS_MACHINE else
        ("preset" if p.builtin else "saved"),
        "RAM": _gib(p.ram_bytes), "OS reserve": _gib(p.os_reserve_bytes),
        "RAM bandwidth": f"{p.ram_bandwidth_gbs:.1f} GB/s", "VRAM": _gib(p.vram_bytes) if p.vram_bytes else "none",
        "VRAM bandwidth": "—" if not p.vram_bandwidth_gbs else f"{p.vram_bandwidth_gbs:.0f} GB/s",
        "cores": p.cores, "description": p.description,
    } for p in profiles])
    st.dataframe(table, hide_index=True, width="stretch", key="hardware-targets", column_config=help_columns(table.columns))
    with st.expander("Where each figure comes from"):
        st.dataframe(pd.DataFrame([{"target": p.name, "figure": figure, "source": p.source(figure)}
                                   for p in profiles for figure in targets.FIGURES
                                   if figure in p.sources]), hide_index=True, width="stretch",
                     key="hardware-target-sources")


def target_editor(store: Store, profiles: list[TargetProfile]) -> None:
    """Add, edit (start from any target, save under a name of your own) and delete saved targets."""
    k = "hardware-target-"
    names = [p.name for p in profiles]
    start = st.selectbox("Start from", ["(empty)"] + names, key=k + "start",
                         help="Fill the form from a target; built-in ones are saved as a copy under your own name")
    base = next((p for p in profiles if p.name == start), None)
    own = base is not None and not base.builtin
    src = base.sources if base else {}
    with st.form(k + "form-" + (start or ""), border=True):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Name", base.name if own and base else "", max_chars=targets.MAX_NAME_CHARS,
                             key=k + "name")
        ram = c2.number_input("RAM (GiB)", 0.0, 65536.0, base.ram_bytes / GiB if base else 16.0, step=1.0,
                              key=k + "ram")
        reserve = c3.number_input("OS reserve (GiB)", 0.0, 65536.0, base.os_reserve_bytes / GiB if base else 4.0,
                                  step=0.5, key=k + "reserve", help="RAM the OS and other programs keep busy")
        ram_bw = c1.number_input("RAM bandwidth (GB/s)", 0.0, targets.MAX_BANDWIDTH_GBS,
                                 float(base.ram_bandwidth_gbs) if base else 51.2, step=1.0, key=k + "ram-bw")
        vram = c2.number_input("VRAM of one GPU (GiB, 0 = none)", 0.0, 4096.0, base.vram_bytes / GiB if base else 0.0,
                               step=1.0, key=k + "vram")
        vram_bw = c3.number_input("VRAM bandwidth (GB/s, 0 = unknown)", 0.0, targets.MAX_BANDWIDTH_GBS,
                                  float(base.vram_bandwidth_gbs or 0.0) if base else 0.0, step=10.0, key=k + "vram-bw")
        cores = c1.number_input("Cores", 1, targets.MAX_CORES, base.cores if base else 8, key=k + "cores")
        vram_reserve = c2.number_input("VRAM reserve (GiB)", 0.0, 4096.0,
                                       base.vram_reserve_bytes / GiB if base else 0.0, step=0.25, key=k + "vram-reserve")
        description = st.text_input("Description", base.description if base else "",
                                    max_chars=targets.MAX_DESCRIPTION_CHARS, key=k + "description")
        s1, s2, s3 = st.columns(3)
        ram_src = s1.text_input("Source of RAM and OS reserve", src.get("ram_bytes", ""),
                                max_chars=targets.MAX_SOURCE_CHARS, key=k + "src-ram",
                                placeholder="a spec sheet URL, or assumption: …")
        bw_src = s2.text_input("Source of RAM bandwidth", src.get("ram_bandwidth_gbs", ""),
                               max_chars=targets.MAX_SOURCE_CHARS, key=k + "src-bw")
        gpu_src = s3.text_input("Source of VRAM and its bandwidth", src.get("vram_bandwidth_gbs", ""),
                                max_chars=targets.MAX_SOURCE_CHARS, key=k + "src-gpu")
        if st.form_submit_button("Save target", type="primary"):
            unsourced = "assumption: entered by hand, no source given"
            profile = TargetProfile(
                name=name, ram_bytes=int(ram * GiB), vram_bytes=int(vram * GiB), ram_bandwidth_gbs=float(ram_bw),
                vram_bandwidth_gbs=float(vram_bw) or None, cores=int(cores), os_reserve_bytes=int(reserve * GiB),
                vram_reserve_bytes=int(vram_reserve * GiB) if vram else 0, description=description, builtin=False,
                sources={"ram_bytes": ram_src or unsourced, "os_reserve_bytes": ram_src or unsourced,
                         "ram_bandwidth_gbs": bw_src or unsourced, "cores": unsourced,
                         **({"vram_bytes": gpu_src or unsourced, "vram_bandwidth_gbs": gpu_src or unsourced,
                             "vram_reserve_bytes": gpu_src or unsourced} if vram else {})})
            try:
                saved = targets.save_target(store, profile)
            except (ValueError, StoreError) as exc:
                st.error(md_escape(exc))
            else:
                st.success(f"Saved **{md_escape(saved.name)}**.")
    saved_names = [p.name for p in profiles if not p.builtin]
    if saved_names:
        d1, d2 = st.columns([3, 1], vertical_alignment="bottom")
        gone = d1.selectbox("Delete a saved target", saved_names, key=k + "delete-pick")
        if d2.button("Delete", key=k + "delete"):
            try:
                targets.delete_target(store, gone)
            except (ValueError, StoreError) as exc:
                st.error(md_escape(exc))
            else:
                st.session_state.pop(k + "start", None)
                st.rerun()


def ladder_infos(ladder: Ladder) -> tuple[list[tuple[str, GgufInfo]], list[str]]:
    """(label, header) of each file of the ladder, and one line per file that could not be read."""
    out, problems = [], []
    for f in ladder.files:
        try:
            out.append((f.label, header(f.path)))
        except (GgufError, OSError) as exc:  # no fit row without the file's own header
            problems.append(f"{f.label}: {fit.unreadable(exc, f.path)} (no fit verdict for it)")
    return out, problems


def fit_answer(ladder: Ladder, profiles: list[TargetProfile]) -> tuple[int, str, str]:
    """The Hardware page's first answer: per target, will the active ladder fit, in one sentence from the library.
    Returns the chosen context and KV types, which the details further down use too."""
    k = "hardware-lines-"
    c1, c2, c3 = st.columns([1, 1, 2])
    n_ctx = int(c1.number_input("Context (tokens)", 256, 1_048_576, 8192, step=1024, key=k + "ctx",
                                help=glossary.help_text("context")))
    kv_k = c2.selectbox("KV cache K type", KV_TYPES, key=k + "kv-k", help=glossary.help_text("kv_type"))
    kv_v = c3.selectbox("KV cache V type", KV_TYPES, key=k + "kv-v", help=glossary.help_text("kv_type"))
    infos, problems = ladder_infos(ladder)
    for line in problems:
        st.error(md_escape(line))
    for p in profiles:
        fits = [(label, targets.fit_on_target(info, p, n_ctx=n_ctx, kv_type_k=kv_k, kv_type_v=kv_v))
                for label, info in infos]
        room = f"{_gib(p.ram_budget_bytes)} of RAM for models" + (f", {_gib(p.vram_budget_bytes)} of VRAM"
                                                                  if p.vram_bytes else "")
        st.markdown(f"**{md_escape(_sentence(targets.the(p.name)))}** ({room}): "
                    f"{md_escape(targets.ladder_fit_sentence(p, fits))}", help=glossary.help_text("fit"))
    st.caption(f"Predicted from each file's header at {n_ctx:,} tokens of context with a {md_escape(kv_k)}"
               + ("" if kv_k == kv_v else f"/{md_escape(kv_v)}") + " KV cache, not measured; each target's figures "
               "and their sources are under Target machines below.")
    return n_ctx, kv_k, kv_v


def memory_lines_section(store: Store, ladder: Ladder, profiles: list[TargetProfile], n_ctx: int, kv_k: str,
                         kv_v: str) -> None:
    """The ladder's memory as lines at the chosen context and KV type (picked in `fit_answer`), the KV line at
    standard contexts, and a verdict with an estimated speed per target."""
    k = "hardware-lines-"
    infos, problems = ladder_infos(ladder)
    for line in problems:
        st.error(md_escape(line))
    if not infos:
        return
    rows = []
    for label, info in infos:
        lines = targets.memory_lines(info, n_ctx=n_ctx, kv_type_k=kv_k, kv_type_v=kv_v)
        kv_at = {f"KV at {ctx_label(n)}": format_bytes(b)
                 for n, b in targets.kv_lines(info, kv_type_k=kv_k, kv_type_v=kv_v)}
        rows.append({"quantization": label, "weights": format_bytes(lines.weights_bytes),
                     f"KV cache ({lines.n_ctx:,})": format_bytes(lines.kv_bytes),
                     "compute + other": format_bytes(lines.compute_other_bytes), "total (CPU)": format_bytes(lines.total_bytes),
                     **kv_at})
    lines_frame = pd.DataFrame(rows)
    st.dataframe(lines_frame, hide_index=True, width="stretch", key=k + "table",
                 column_config=help_columns(lines_frame.columns))
    max_ctx = infos[0][1].context_length
    st.caption(f"Predicted (not measured): weights from each file's header, KV cache = layers × KV heads × head sizes × "
               f"context × bytes per element of {md_escape(kv_k)}/{md_escape(kv_v)} (exact for plain attention), "
               "compute buffers and runtime estimated; the total is for the CPU (everything in RAM). The KV columns "
               "show the cache at 4k, 8k, 32k and the model's trained maximum"
               + (f" ({max_ctx:,} tokens)." if max_ctx else "."))

    cal = calibration(store)
    verdicts: list[dict[str, object]] = []
    cells: dict[str, dict[str, str]] = {}
    assumptions: list[str] = []
    for label, info in infos:
        for p in profiles:
            f, est = speed.fit_and_speed(info, p, cal, n_ctx=n_ctx, kv_type_k=kv_k, kv_type_v=kv_v)
            spare = (f"{format_bytes(f.spare_bytes)} {f.spare_in} spare" if f.spare_bytes >= 0
                     else f"short by {format_bytes(-f.spare_bytes)} {f.spare_in}")
            verdict = targets.verdict_words(f.verdict_code, f.verdict)
            tok_s = None if est.tok_s is None else round(est.tok_s, 1)
            cells.setdefault(label, {"quantization": label})[p.name] = \
                verdict + ("" if tok_s is None else f" · ~{tok_s:,.0f} tok/s")  # short: five targets fit the width
            verdicts.append({"quantization": label, "target": p.name, "verdict": verdict, "detail": f.verdict,
                             "predicted memory": format_bytes(f.predicted_bytes), "spare": spare,
                             "GPU layers": f.gpu_layers or None, "est. tok/s (estimate)": tok_s})
            assumptions += [a for a in est.assumptions if a not in assumptions]
    st.markdown(f"**Fit and estimated decode speed (tok/s) per target** at {n_ctx:,} tokens, KV {md_escape(kv_k)}"
                + ("" if kv_k == kv_v else f"/{md_escape(kv_v)}"))
    st.dataframe(pd.DataFrame(list(cells.values())), hide_index=True, width="stretch", key=k + "by-target",
                 column_config={p.name: st.column_config.Column(help=glossary.help_text("fit")) for p in profiles})
    st.caption("How much each file leaves to spare is under *Every figure* below. "
               "Memory is predicted and speeds are **estimates**, not measurements: bytes read per token (all weights "
               "+ the KV cache with the context full) over the target's memory bandwidth, times the share of "
               "bandwidth decode reaches. "
               + md_escape(_sentence(cal.source) if cal.efficiency is not None else
                           f"{_sentence(cal.source)}: {speed.DEFAULT_EFFICIENCY:.0%} of the bandwidth assumed") + ". "
               "A target's bandwidth is its profile's figure (theoretical peaks for the presets, a measured copy rate "
               "for this machine). The OS reserve is the headroom; llama.cpp's CPU repacking is assumed off.")
    with st.expander("Every figure, and what the estimates assume"):
        st.dataframe(pd.DataFrame(verdicts), hide_index=True, width="stretch", key=k + "verdicts")
        for line in assumptions:
            st.caption(f"Assumption: {md_escape(line)}")
        for label, info in infos[:1]:
            for p in profiles:
                f = targets.fit_on_target(info, p, n_ctx=n_ctx, kv_type_k=kv_k, kv_type_v=kv_v)
                st.caption(f"{md_escape(label)} on {md_escape(p.name)}: " + md_escape("; ".join(f.notes)))
