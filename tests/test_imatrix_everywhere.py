"""Importance-matrix and IQ files are first-class everywhere (issue 26): a small imatrix ladder of the demo model
(the static Q4_K_M beside "Q4_K_M · imatrix (…)", IQ3_M and IQ2_XXS made with a synthetic matrix) loads and
generates in the real engine, runs in Compare and divergence, stands as its own candidate in Recommend (its own
measured KLD, the figure llama.cpp published for imatrix files), keeps its label in the leaderboard, history and
reports (escaped: the calibration name is the user's text), gets a fit prediction from its header, and every page of
the app opens with that ladder active and lists it (one headless-Chromium walk).

The matrix is the synthetic "skewed" one of tests/test_quantize_imatrix.py: any matrix proves the plumbing; whether
a real one helps is measured elsewhere (docs/quality.md). The calibration name carries "&" and "<…>" on purpose.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from test_quantize_imatrix import skewed_matrix

from workbench.decide.evidence import CandidateKey, split_label
from workbench.decide.recommend import Constraints
from workbench.decide.study import study, study_json
from workbench.files.quant_names import default_pair, imatrix_words, is_imatrix_name, precision_key, quant_from_name
from workbench.models.hub_listing import _join_entries
from workbench.models.ladder import Ladder, LadderFile, imatrix_label, save_ladder
from workbench.models.quantize import quantize
from workbench.quality.published import published_for, published_for_row
from workbench.runs.compare import contestants_for, run_comparison
from workbench.runs.contestants import RunSettings

CALIBRATION = "support & <ops>"  # the user's own words: must come out escaped wherever it becomes HTML
IMX_TYPES = ("Q4_K_M", "IQ3_M", "IQ2_XXS")
LADDER_NAME = "demo imatrix (test)"


def imx_label(quant_type: str) -> str:
    return imatrix_label(quant_type, CALIBRATION)


# ---- names and published figures ----------------------------------------------------------------------------------
def test_iq_names_order_by_precision_and_the_imatrix_part_is_read_not_mistaken_for_a_type() -> None:
    types = ["IQ2_XXS", "Q2_K", "IQ3_M", "IQ4_XS", "Q8_0", "IQ2_M", "Q4_K_M", "IQ3_XXS", "IQ4_NL", "Q3_K_M", "F16"]
    assert sorted(types, key=precision_key, reverse=True) == [
        "F16", "Q8_0", "Q4_K_M", "IQ4_NL", "IQ4_XS", "Q3_K_M", "IQ3_M", "IQ3_XXS", "Q2_K", "IQ2_M", "IQ2_XXS"]
    assert quant_from_name("model-IQ3_M.gguf") == "IQ3_M" and not is_imatrix_name("model-IQ3_M.gguf")
    for name in ("smol.Q4_K_M.imatrix-q8-tests.gguf", "Q4_K_M · imatrix (Q8 tests)", "Q4_K_M · imatrix (x) · KV q8_0",
                 "Model.i1-Q4_K_M.gguf", "Model-Q4_K_M-imat.gguf"):
        assert quant_from_name(name) == "Q4_K_M" and is_imatrix_name(name), name
    assert not is_imatrix_name("Q4_K_M · KV q8_0") and not is_imatrix_name("Llama-3-8B-Instruct-Q4_K_M.gguf")
    # a KV variant of an imatrix file keeps the file's whole label as its candidate (decide.evidence keys by it)
    assert split_label(f"{imx_label('Q4_K_M')} · KV q8_0 · 8k") == (CandidateKey(imx_label("Q4_K_M"), "q8_0", "q8_0"), 8192)
    assert split_label("Q4_K_M · imatrix (a · 8k)")[0] == CandidateKey("Q4_K_M · imatrix (a · 8k)")
    assert imatrix_words("Q4_K_M", {"kind": "prompt set", "name": "Support"}) == (
        "Q4_K_M made with your prompts' importance matrix (Support)")
    assert imatrix_words("IQ3_M", {"kind": "bundled text", "name": "reference text"}) == (
        "IQ3_M made with an importance matrix from the bundled reference text")
    assert imatrix_words("Q4_K_M", None) == "Q4_K_M"
    # the first question of a ladder stays the static Q4_K_M vs Q8_0; an imatrix-only ladder asks about its own file
    assert default_pair(["F16", "Q8_0", imx_label("Q4_K_M"), "Q4_K_M"]) == ("Q4_K_M", "Q8_0")
    assert default_pair(["F16", "Q8_0", imx_label("Q4_K_M"), imx_label("IQ3_M")]) == (imx_label("Q4_K_M"), "Q8_0")
    listed = _join_entries([("m-Q4_K_M-imat.gguf", 10, None), ("m-Q4_K_M.gguf", 10, None), ("m-IQ3_M.gguf", 5, None)],
                           None)  # a Hub repo with both: the static file is preselected, the IQ file listed below
    assert [(f.name, f.selected) for f in listed] == [("m-Q4_K_M.gguf", True), ("m-Q4_K_M-imat.gguf", False),
                                                     ("m-IQ3_M.gguf", False)]


def test_an_imatrix_file_gets_the_imatrix_figure_and_a_static_one_the_static_figure_or_is_told() -> None:
    static, imx = published_for("Q4_K_M"), published_for("Q4_K_M", imatrix=True)
    assert static is not None and imx is not None
    assert static.imatrix is None and imx.imatrix == "WT 10m" and imx.mean_kld < static.mean_kld
    assert static.matches_file and imx.matches_file
    assert published_for_row("Q4_K_M", label=imx_label("Q4_K_M")) == imx
    assert published_for_row("Q4_K_M", label="Q4_K_M") == static
    only_static = published_for("Q8_0", imatrix=True)  # the source has no imatrix row for Q8_0: said, not hidden
    assert only_static is not None and not only_static.matches_file and "without an importance matrix" in only_static.note
    assert only_static.kld_cell().endswith("(static; none with imatrix)")
    only_imx = published_for("IQ3_M")  # IQ3_M is published only with a matrix: a static file is told so
    assert only_imx is not None and not only_imx.matches_file and "lists no figure without one" in only_imx.note
    assert published_for("IQ2_XXS", imatrix=True).kld_cell().endswith("(imatrix)")


# ---- the ladder -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imx_ladder(demo_ladder: Ladder, tmp_path_factory: pytest.TempPathFactory) -> Ladder:
    """F16 (reference) and the static Q4_K_M of the demo ladder, and three files made with a synthetic matrix."""
    root = tmp_path_factory.mktemp("imx-ladder")
    ref = demo_ladder.reference
    matrix = skewed_matrix(ref.path, root / "skewed.imatrix.gguf")
    provenance = {"name": CALIBRATION, "kind": "text file", "sha256": "0" * 64, "tokens": 512,
                  "file": matrix.name}
    files = [ref, demo_ladder.by_label("Q4_K_M")]
    from workbench.files.gguf_info import read_header

    for quant_type in IMX_TYPES:
        path = quantize(ref.path, root / f"demo.{quant_type}.imatrix-support.gguf", quant_type, 1, imatrix=matrix)
        made = LadderFile.from_info(read_header(str(path)), label=imx_label(quant_type))
        made.imatrix = dict(provenance)
        files.append(made)
    ladder = Ladder(LADDER_NAME, files, {"origin": "tests/test_imatrix_everywhere.py"}, str(root))
    save_ladder(ladder)
    return ladder


def test_the_engine_loads_and_generates_with_each_imatrix_and_iq_file_in_a_comparison(pool, store, imx_ladder) -> None:
    contestants = contestants_for(imx_ladder, imx_ladder.labels())
    comparison = run_comparison(pool, contestants, "Name three colours.", RunSettings(max_tokens=12, n_threads=1),
                                store=store, ladder=imx_ladder)
    by_label = {r.label: r for r in comparison.results}
    assert set(by_label) == set(imx_ladder.labels())  # two Q4_K_M files, two contestants
    for quant_type in IMX_TYPES:
        r = by_label[imx_label(quant_type)]
        assert not r.error and r.completion_tokens > 0 and r.text.strip(), (quant_type, r.error)
        assert r.quant_type == quant_type
    stored = store.get_run(comparison.run_id)
    assert {r.label for r in stored.results} == set(imx_ladder.labels())


@pytest.fixture(scope="module")
def measured(pool, imx_ladder: Ladder, tmp_path_factory: pytest.TempPathFactory):
    """The imatrix ladder's divergence on the bundled text, stored in a database of its own (module-wide)."""
    from workbench.quality.divergence import diverge_text
    from workbench.storage.store import Store

    db = Store(tmp_path_factory.mktemp("imx-db") / "workbench.sqlite3")
    report = diverge_text(pool, contestants_for(imx_ladder, imx_ladder.labels()), RunSettings(n_threads=1),
                          chunk_tokens=128, max_chunks=2, store=db, ladder=imx_ladder)
    return db, report


def test_divergence_measures_each_file_apart_and_recommend_treats_imatrix_files_as_candidates(imx_ladder, measured,
                                                                                             capsys) -> None:
    db, report = measured
    rows = {r.label: r for r in report.results}
    assert not any(r.error for r in rows.values())
    klds = {label: rows[label].summary["mean_kld"] for label in imx_ladder.labels() if label != imx_ladder.reference.label}
    assert all(math.isfinite(k) and k > 0 for k in klds.values())
    assert klds["Q4_K_M"] != klds[imx_label("Q4_K_M")]  # two files of one type, two measurements

    s = study(db, imx_ladder, Constraints("16 GB laptop", n_ctx=2048, max_kld=None), kv_types=("f16",))
    facts = {f.label: f for f in s.facts}
    for label, kld in klds.items():  # each candidate carries its own measurement, by label
        assert facts[label].kld == pytest.approx(kld)
    assert facts[imx_label("Q4_K_M")].published_kld == published_for("Q4_K_M", imatrix=True).mean_kld
    assert facts["Q4_K_M"].published_kld == published_for("Q4_K_M").mean_kld
    assert facts[imx_label("IQ3_M")].imatrix["name"] == CALIBRATION
    # no quality bar, the smallest footprint first: the IQ2_XXS file, named in words
    rec = s.recommendation
    assert rec.recommended is not None and rec.recommended.label == imx_label("IQ2_XXS")
    assert rec.answer.startswith(f"Ship {imx_label('IQ2_XXS')} — IQ2_XXS made with an importance matrix from your text —")

    doc = study_json(s)
    assert doc["recommended"] == imx_label("IQ2_XXS") and doc["recommended_imatrix"]["name"] == CALIBRATION
    row = next(c for c in doc["candidates"] if c["label"] == imx_label("Q4_K_M"))
    assert row["imatrix"]["kind"] == "text file" and row["quality"]["published_imatrix"] == "WT 10m"
    assert next(c for c in doc["candidates"] if c["label"] == "Q4_K_M")["imatrix"] is None

    from workbench.cli.main import main

    assert main(["recommend", "--ladder", imx_ladder.directory, "--db", str(db.path), "--target", "16 GB laptop",
                 "--ctx", "2048", "--kv", "f16", "--max-kld", "0"]) == 0
    out = capsys.readouterr().out
    assert f"Recommended: {imx_label('IQ2_XXS')}" in out and "(imatrix)" in out


def test_reports_history_and_the_leaderboard_keep_the_imatrix_labels_escaped_and_fit_reads_iq_headers(imx_ladder, measured) -> None:
    from workbench.files import fit
    from workbench.files.gguf_info import read_header
    from workbench.people.history import search_runs
    from workbench.people.leaderboard import item_key
    from workbench.people.report import report_html, report_markdown

    db, report = measured
    html = report_html(db, [report.run_id])
    assert "support &amp; &lt;ops&gt;" in html and "<ops>" not in html
    assert imx_label("IQ2_XXS").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html
    assert r"IQ2\_XXS · imatrix (support &amp; &lt;ops&gt;)" in report_markdown(db, [report.run_id])
    assert any(r.id == report.run_id for r in search_runs(db, model=LADDER_NAME))
    # the leaderboard counts an imatrix file apart from the static file of its type
    assert item_key("Q4_K_M", imx_label("Q4_K_M")) != item_key("Q4_K_M", "Q4_K_M")
    from workbench.decide import report as decide_report

    s = study(db, imx_ladder, Constraints("16 GB laptop", n_ctx=2048, max_kld=None), kv_types=("f16",))
    page = decide_report.report_html(s)
    assert "support &amp; &lt;ops&gt;" in page and "<ops>" not in page
    # fit: each file's prediction comes from its own header, so the smaller IQ types predict less memory
    needed = [next(f for f in s.facts if f.label == imx_label(t)).needed_bytes for t in IMX_TYPES]
    assert needed == sorted(needed, reverse=True) and len(set(needed)) == 3
    for t in IMX_TYPES:
        f = imx_ladder.by_label(imx_label(t))
        assert fit.predict(read_header(f.path), n_ctx=2048, gpus=[], ram_available_bytes=2**34).ram_bytes > f.size_bytes


# ---- every page, in a browser ---------------------------------------------------------------------------------------
PAGES = ("Compare", "Prompt sets", "Quality", "Evals", "Recommend", "Providers", "Models", "Hardware", "Ratings",
         "History", "What the numbers mean")
LISTS_CONTESTANTS = ("Compare", "Recommend")  # pages that name every contestant in text (tables are canvases)


@pytest.mark.browser
def test_every_page_opens_with_the_imatrix_ladder_active_and_lists_its_files(imx_ladder, demo_ladder, measured,
                                                                            test_output: Path, tmp_path: Path,
                                                                            monkeypatch) -> None:
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, started_app
    from test_browser_walk import choose, main_text, settle

    from workbench.core.paths import ladders_dir

    require_chromium()
    ladders = tmp_path / "ladders"  # the demo ladder (linked, not rebuilt) and this one
    ladders.mkdir()
    demo = Path(demo_ladder.directory)
    (ladders / demo.name).symlink_to(demo)
    (ladders / "demo-imatrix").symlink_to(Path(imx_ladder.directory))
    data = tmp_path / "data"
    data.mkdir()
    (data / "workbench.sqlite3").write_bytes(Path(measured[0].path).read_bytes())  # the measured divergence
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data))
    monkeypatch.setenv("WORKBENCH_LADDERS_DIR", str(ladders))
    assert ladders_dir() == ladders
    shots = test_output / "imatrix-walk"
    shots.mkdir(parents=True, exist_ok=True)
    with started_app("browser-imatrix.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(url)
        page.get_by_role("heading", name="Compare quantizations").wait_for(timeout=180_000)
        settle(page)
        choose(page, "Model (ladder)", LADDER_NAME)
        settle(page)
        for name in PAGES:
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True).click()
            deadline = time.monotonic() + 90
            settle(page, 3.0)
            while time.monotonic() < deadline and not main_text(page).strip():
                time.sleep(0.5)
            page.screenshot(path=str(shots / f"{name.replace(' ', '-').lower()}.png"), full_page=True)
            text = main_text(page)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name}: {text[:400]}"
            assert "Traceback" not in text, name
            assert "<ops>" not in page.content().replace("&lt;ops&gt;", ""), name  # never raw HTML
            if name in LISTS_CONTESTANTS:
                assert imx_label("Q4_K_M") in text or imx_label("IQ2_XXS") in text, f"{name} does not list it"
        browser.close()
