"""Models: from a Hub repo id to a verified local ladder (fit predicted before downloading), models already on
this disk (HF cache, a folder, LM Studio, Ollama), and building a ladder from any local GGUF."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st
from huggingface_hub import get_token

from ui import imatrix_views as imx
from ui.shared import jobs, refresh_ladders, set_active_ladder, through_entrypoint, watch
from workbench.core import paths
from workbench.core.escaping import md_escape
from workbench.core.hardware import machine
from workbench.core.text_units import format_bytes, format_gb
from workbench.files import fit
from workbench.files.gguf_info import GgufError
from workbench.models import acquire as models
from workbench.models import hub
from workbench.models.hub import HubError
from workbench.models.ladder import DEFAULT_TYPES, DEMO_REQUANT_NAME, Ladder, ensure_demo_ladder
from workbench.models.quantize import QUANT_TYPES
from workbench.runs.imatrix_ladder_job import ImatrixLadderJob

through_entrypoint()

K = "models-"  # session-state key prefix of this page
DEMO_SOURCE = "the demo model's F16 reference"

st.title("Models: get quantizations, check they fit, make ladders")


def one_line(exc: BaseException) -> str:
    """An error on one line, escaped for Markdown (messages can carry file names, repo ids, server text)."""
    text = " ".join(str(exc).split())
    return md_escape(text or type(exc).__name__)


def params_text(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def activate(ladder: Ladder, how: str) -> None:
    """Make a ladder the active one (sidebar, Compare page) and say so after the rerun."""
    set_active_ladder(ladder)
    refresh_ladders()
    tuned = any(f.imatrix for f in ladder.files)
    next_step = ("Open the Quality page to see whether the importance matrix helped, on text it never saw."
                 if tuned else "Open the Compare page to run it.")
    st.session_state[K + "flash"] = (f"**{md_escape(ladder.name)}** is now the active ladder ({md_escape(how)}): "
                                     f"{md_escape(', '.join(ladder.labels()))}. {next_step}", tuned)
    st.rerun()


flash = st.session_state.pop(K + "flash", None)
if flash:
    said, tuned = flash
    st.success(said)
    if tuned:
        st.page_link("pages/quality.py", label="Did the importance matrix help?", icon=":material/troubleshoot:")
    st.page_link("pages/compare.py", label="Compare these quantizations", icon=":material/compare_arrows:")

m = machine()
gpu_line = "; ".join(f"GPU {g.index} {g.name}: {format_bytes(g.free_bytes)} free of {format_bytes(g.total_bytes)}"
                     for g in m.gpus) or "no GPU"
free_disk = hub.check_disk_space(0)[1]
st.caption(f"This machine: {format_bytes(m.ram_available_bytes)} RAM free of {format_bytes(m.ram_total_bytes)} · {gpu_line} · "
           f"{format_gb(free_disk, 1)} free in the Hugging Face cache ({paths.hf_cache_dir()})")

tab_hub, tab_disk, tab_make = st.tabs(["Download from the Hub", "Models already on disk", "Make a ladder"])

# =============================================================================================================
# Download from the Hub
# =============================================================================================================
with tab_hub:
    offline = hub.is_offline()
    if offline:
        st.info("**Offline** (HF_HUB_OFFLINE is set): nothing is fetched from the Hub. Repos list only the GGUF files "
                "already in the Hugging Face cache, and those can be used as ladders.")
        cached = hub.cached_gguf_by_repo()
        if cached:
            st.dataframe(pd.DataFrame([
                {"repo": repo, "type": f.quant_type or "?", "size": format_bytes(f.size), "file": os.path.basename(f.path)}
                for repo, files in sorted(cached.items()) for f in files]), hide_index=True, width="stretch")
        else:
            st.markdown("The Hugging Face cache holds no GGUF files yet. What you can do now:\n"
                        "- **Use the demo**: the embedded demo ladder is ready; open the Compare page and press Run.\n"
                        "- **Use files you have**: the *Models already on disk* tab finds GGUF files in LM Studio's and "
                        "Ollama's folders or a folder you name, and makes them a ladder.\n"
                        "- **Download later**: on a machine with a network, unset HF_HUB_OFFLINE and restart the app; "
                        "then list a repo here and download its quantizations (they land in the Hugging Face cache, "
                        "so they work offline afterwards).")
            st.page_link("pages/compare.py", label="Compare the demo ladder", icon=":material/compare_arrows:")
    token_set = bool(get_token())
    st.caption("HF_TOKEN is set: gated and private repos use it (it is never shown)." if token_set else
               "HF_TOKEN is not set: public repos work; gated or private ones need a token in HF_TOKEN.")

    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    repo_text = c1.text_input("Hugging Face repo id", key=K + "repo",
                              placeholder="e.g. bartowski/Llama-3.2-1B-Instruct-GGUF or Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    if c2.button("List GGUF files", key=K + "list", type="primary", disabled=not repo_text.strip()):
        st.session_state.pop(K + "listing", None)
        st.session_state.pop(K + "download", None)
        try:
            with st.spinner("Asking the Hub for the repo's files…"):
                st.session_state[K + "listing"] = hub.list_gguf(repo_text)
        except HubError as exc:
            st.error(one_line(exc))

    listing: hub.RepoListing | None = st.session_state.get(K + "listing")
    job = jobs().get(st.session_state.get(K + "download"), models.DownloadJob)
    # Read once, before the fit table is drawn: a download that finishes later in this run is
    # still treated as running, so its progress fragment reruns the page and the table's
    # "cached" column and the result below never disagree.
    job_finished = job is not None and job.finished
    if listing is not None:
        if listing.source == "cache":
            st.warning(f"{md_escape(listing.notice)}.")
        st.markdown(f"**{md_escape(listing.repo_id)}**" + (f" · revision {md_escape(listing.revision[:12])}" if listing.revision else "")
                    + f" · {len(listing.files)} GGUF file(s)"
                    + (f" · {params_text(listing.n_params)} parameters (the Hub's count)" if listing.n_params else ""))

        names = [e.name for e in listing.files]
        by_name = {e.name: e for e in listing.files}
        pick_key = f"{K}pick-{listing.repo_id}-{listing.revision}"
        f1, f2 = st.columns([3, 1])
        picked = f1.multiselect(
            "Files to download (the default four are preselected where the repo has them)", names,
            default=[e.name for e in listing.selected()], key=pick_key,
            format_func=lambda n: f"{by_name[n].quant_type or '?'} · {n} · {format_bytes(by_name[n].size_bytes)}")
        n_ctx = int(f2.number_input("Context size (tokens)", 128, 1_048_576, fit.DEFAULT_N_CTX, step=256, key=K + "ctx",
                                    help="The KV cache grows with it; the fit below is for this context."))

        try:
            with st.spinner("Reading GGUF headers (HTTP range requests: a few MB each, never the weights)…"):
                rows = models.fit_listing(listing, n_ctx=n_ctx, read=set(picked) | {e.name for e in listing.selected()},
                                          ram_available_bytes=m.ram_available_bytes, gpus=m.gpus,
                                          disk_free_bytes=free_disk)
        except (HubError, GgufError, OSError) as exc:
            rows = []
            st.error(one_line(exc))
        table = []
        for r in rows:
            e, p = r.entry, r.prediction
            table.append({
                "type": e.quant_type or "unknown",
                "file": e.name + (f" ({len(e.files)} shards joined)" if e.is_split else "")
                        + ("" if e.complete else " — shards missing"),
                "size": format_bytes(e.size_bytes),
                "bits/weight": None if e.bits_per_weight is None else f"{e.bits_per_weight:.2f} ({e.bpw_basis})",
                "chosen": e.name in picked,
                "cached": e.cached,
                "predicted memory": format_bytes(p.predicted_bytes) if p else "—",
                "verdict": r.verdict_text,
                "KV cache": f"{format_bytes(p.kv_bytes)} ({p.basis['kv_cache']})" if p else "—",
                "weights": f"{format_bytes(p.weights_bytes)} ({p.basis['weights']})" if p else "—",
                "model shape": r.header,
                "notes": "; ".join(p.notes) if p else "",
            })
        if table:
            st.markdown("**Fit on this machine, before downloading** · grouped by quantization type, highest precision first")
            st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch", key=K + "fit-table")
            st.caption(
                f"Predicted peak memory of one worker at {n_ctx:,} tokens = weights (tensor bytes in the GGUF header) + "
                "KV cache (layers × KV heads × head sizes × context, f16, from the header) + compute buffers and runtime "
                "(*estimated*). *read* = taken from the file's own header (fetched with HTTP range requests); "
                "*estimated* = borrowed from another file's header of this repo, or computed; *header unreadable* = "
                "the file's own header was refused or could not be fetched, so it gets no verdict. Verdicts keep "
                f"{fit.DEFAULT_HEADROOM:.0%} of free memory in reserve. Check the accuracy on the Hardware page after a run.")

        chosen = [by_name[n] for n in picked]
        for r in rows:
            if r.entry.name in picked and r.prediction is None:
                st.warning(f"No fit verdict for {md_escape(r.entry.name)}: {md_escape(r.verdict_text)}. "
                           "A file whose header cannot be read is unlikely to load; think twice before downloading it.")
        preds = [r.prediction for r in rows if r.entry.name in picked and r.prediction]
        ok_disk, need, free = models.selection_disk_check(listing, chosen) if chosen else (True, 0, free_disk)
        if chosen:
            st.caption(f"Chosen: {len(chosen)} file(s), {format_gb(need)} still to download, {format_gb(free, 1)} free "
                       f"on disk ({'enough' if ok_disk else 'NOT enough'}, keeping {format_gb(hub.DISK_RESERVE_BYTES, 1)} "
                       f"free). Workers stay warm between prompts: all chosen at once need about "
                       f"{format_bytes(fit.warm_together_bytes(preds))} of RAM.")

        running = job is not None and not job_finished
        d1, d2, _ = st.columns([2, 1, 3])
        if d1.button(f"Download {len(chosen)} file(s)", key=K + "download-go", type="primary",
                     disabled=running or not chosen or not ok_disk,
                     help=None if ok_disk else "Not enough free disk space for the chosen files"):
            job = jobs().start(models.DownloadJob(listing, chosen))
            st.session_state[K + "download"] = job.id
            running = True
        if d2.button("Cancel", key=K + "download-cancel", disabled=not running,
                     help="Stop the download; the part already fetched is kept and the next download resumes it") \
                and job is not None:
            job.stop()

        if running and job is not None:

            def download_progress(snap: dict) -> None:
                st.progress(snap["fraction"], text=f"Overall: {snap['done_bytes'] / 1e6:,.1f} of "
                                                   f"{snap['total_bytes'] / 1e6:,.1f} MB"
                                                   + (" — cancelling…" if snap["cancelling"] else ""))
                for f in snap["files"]:
                    total = f["total"] or 0
                    frac = min(1.0, f["bytes"] / total) if total else 0.0
                    st.progress(frac, text=f"{f['name']}: {f['phase']} · {f['bytes'] / 1e6:,.1f} of {total / 1e6:,.1f} MB")

            watch(job.snapshot, download_progress)
        elif job is not None:
            snap = job.snapshot()
            if snap["error"]:
                if snap["error_kind"] == "cancelled":
                    st.warning(md_escape(snap["error"]))
                else:
                    st.error(md_escape(snap["error"]))
            elif snap["result"] is not None:
                done = snap["result"]
                st.success(f"{len(done)} file(s) in the Hugging Face cache, "
                           + ("size and sha256 verified." if all(d.verified or d.from_cache for d in done) else "size checked."))
                st.dataframe(pd.DataFrame([{
                    "type": d.quant_type, "file": d.name, "size": format_bytes(d.size_bytes),
                    "check": "sha256 ✓" if d.verified else ("already cached" if d.from_cache else "size ✓"),
                    "resumed": format_bytes(d.resumed_bytes) if d.resumed_bytes else "", "path": d.path,
                } for d in done]), hide_index=True, width="stretch")
                if st.button("Use as ladder", key=K + "use-download", type="primary",
                             help="Register these files (where they are, in the HF cache) as a ladder and make it active"):
                    try:
                        lad = models.register_download(job.listing.repo_id, done, job.listing.revision)
                    except (GgufError, OSError) as exc:
                        st.error(f"Downloaded, but not usable as a ladder: {one_line(exc)}")
                    else:
                        activate(lad, "downloaded from the Hub")

# =============================================================================================================
# Models already on disk
# =============================================================================================================
with tab_disk:
    st.caption("GGUF files already on this machine: the Hugging Face cache, LM Studio's models folder, Ollama's blob "
               "store (its manifests name each model and tag) and a folder you name. Files of one model in different "
               "quantizations are grouped into a ladder, used where they are (nothing is copied).")
    s1, s2 = st.columns([4, 1], vertical_alignment="bottom")
    folder = s1.text_input("Also look in this folder (optional)", key=K + "folder", placeholder="/path/to/models")
    rescan = s2.button("Scan", key=K + "scan-go")
    if folder.strip() and not os.path.isdir(os.path.expanduser(folder.strip())):
        st.error(f"{md_escape(folder.strip())}: no such folder")
        folder = ""
    fetched = jobs().get(st.session_state.get(K + "download"), models.DownloadJob)
    # look again after a download: the new files are in the HF cache now
    scan_id = (folder.strip(), fetched.id if fetched is not None and fetched.result is not None else None)
    if rescan or st.session_state.get(K + "scan-id") != scan_id:
        try:
            with st.spinner("Looking for GGUF files…"):
                st.session_state[K + "scan"] = models.scan_disk(folder or None)
            st.session_state[K + "scan-id"] = scan_id
        except OSError as exc:
            st.error(f"Scanning failed: {one_line(exc)}")
    scan: models.Scan | None = st.session_state.get(K + "scan")
    if scan is not None:
        if not scan.groups:
            st.info("No GGUF files found in the Hugging Face cache, LM Studio, Ollama"
                    + (f" or {md_escape(folder.strip())}" if folder.strip() else "") + ".")
        for i, group in enumerate(scan.groups):
            with st.container(border=True):
                name = models.found_ladder_name(group)
                st.markdown(f"**{md_escape(name)}** · {md_escape(', '.join(group.quant_types) or 'type unknown')}")
                st.dataframe(pd.DataFrame([{
                    "type": f.label or f.quant_type or "?", "size": format_bytes(f.size),
                    "source": models.SOURCE_NAMES.get(f.source, f.source), "repo": f.repo_id or "",
                    "path": f.path + (f" (+{len(f.paths) - 1} shards)" if len(f.paths) > 1 else ""),
                } for f in group.files]), hide_index=True, width="stretch")
                few = len(group.files) < 2
                if st.button("Use as ladder", key=f"{K}use-found-{i}-{group.files[0].key}", disabled=few,
                             help="Only one file: nothing to compare yet" if few else "Make these files the active ladder"):
                    try:
                        registered = models.register_found(group)
                    except (GgufError, OSError) as exc:
                        st.error(f"Cannot use {md_escape(name)}: {one_line(exc)}")
                    else:
                        activate(registered, "found on disk")

# =============================================================================================================
# Make a ladder
# =============================================================================================================
with tab_make:
    st.caption("Quantize any local GGUF into a ladder with llama.cpp's own quantizer (a child process, so a crash "
               "cannot take the app down). An F16 or BF16 source gives a real ladder; requantizing an already "
               "quantized source works but cannot restore precision it lost.")
    st.markdown(imx.EXPLAIN)
    from_demo = st.radio("Source", ["a GGUF file on this machine", DEMO_SOURCE], key=K + "src-kind",
                         horizontal=True) == DEMO_SOURCE
    src = "" if from_demo else st.text_input("Source GGUF (a path on this machine)", key=K + "src",
                                             placeholder="/path/to/model-F16.gguf")
    t1, t2 = st.columns([3, 1])
    types = t1.multiselect("Quantization types", list(QUANT_TYPES), default=list(DEFAULT_TYPES), key=K + "types",
                           help=imx.TYPES_HELP)
    ref_choice = t2.selectbox("Reference", ["F16", "the source file itself"], key=K + "ref",
                              help="What the others are diffed against")
    matrix = imx.matrix_controls(K)
    with_static = matrix.chosen and st.checkbox("Also build the static files of the same types for comparison",
                                                value=True, key=K + "imx-static")
    build = jobs().get(st.session_state.get(K + "build"), models.LadderBuildJob)
    building = build is not None and not build.finished
    b1, b2, _ = st.columns([2, 1, 3])
    if b1.button("Build ladder", key=K + "build-go", type="primary",
                 disabled=building or not types or not (from_demo or src.strip())):
        refused = imx.refusal(types, matrix)
        try:
            src = ensure_demo_ladder().by_label("F16").path if from_demo else models.check_source(src).path
        except (GgufError, KeyError) as exc:
            refused = refused or " ".join(str(exc).split())
        if refused:
            st.error(md_escape(refused))
        else:
            ref_type, ladder_name = None if ref_choice != "F16" else "F16", DEMO_REQUANT_NAME if from_demo else None
            new_build: models.LadderBuildJob = (
                ImatrixLadderJob(src, types, matrix.calibration, reference_type=ref_type, name=ladder_name,
                                 with_static=with_static) if matrix.calibration else
                models.LadderBuildJob(src, types, ref_type, ladder_name, imatrix=matrix.file,
                                      with_static=with_static))
            build = jobs().start(new_build)
            st.session_state[K + "build"] = build.id
            building = True
    if b2.button("Cancel", key=K + "build-cancel", disabled=not building,
                 help="Stop after the current step; files already made are reused next time") and build is not None:
        build.stop()

    if building and build is not None:

        def build_progress(snap: dict) -> None:
            last = snap["message"] or "Starting…"
            st.progress(snap["fraction"], text=f"{int(snap['step'])} of {int(snap['steps'])} steps done · {last}"
                        + (" — cancelling…" if snap["cancelling"] else ""))

        watch(build.snapshot, build_progress)
    elif build is not None:
        snap = build.snapshot()
        if snap["error"]:
            st.error(md_escape(snap["error"]))
        elif snap["cancelled"]:
            st.info(md_escape(snap["message"]))
        elif snap["ladder"] is not None:
            lad = snap["ladder"]
            st.session_state.pop(K + "build", None)
            activate(lad, f"built in {lad.directory}")
