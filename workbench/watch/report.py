"""The provider report to forward (HTML that works offline, or Markdown), and the check table the page shows too.

Order, for a reader who stops early: the answer sentence (change.assess), the endpoint (its URL without query
string or credentials, its model), the timeline (watch.timeline's SVG in HTML; the table in both), the change
with its evidence, what was compared (ladder, probe, tokens per check), then method and provenance.

Every value from the endpoint or the database (names, models, labels, reasons, times) is untrusted: escaped by
core.escaping (through people.report_kit's tables) wherever it meets markup. No secret is in a report: a
provider holds the NAMES of its key's and webhook's environment variables, and only whether they are set is said.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from workbench.core.escaping import esc, md_cell
from workbench.core.text_units import counted
from workbench.people.report_kit import generated_at, html_head, html_table, md_table
from workbench.storage.watch_rows import ProviderCheck, WatchedProvider
from workbench.watch.change import Assessment, when
from workbench.watch.timeline import svg_timeline

__all__ = ["CHECK_HEADERS", "CLIENT_SIDE", "METHOD", "check_rows", "endpoint_lines", "report_html", "report_markdown"]

CLIENT_SIDE = "measured from this machine (client side)"
CHECK_HEADERS = ["check", "time (UTC)", "status", "answers most like", "confidence", "runner-up",
                 "probe pass rate (95% interval)", f"seconds per request, {CLIENT_SIDE}",
                 f"tokens/s, {CLIENT_SIDE}", "tokens sent + received", "stored runs"]
API_WORDS = {"openai": "OpenAI-compatible chat completions", "llamacpp": "llama.cpp native /completion"}
METHOD = [
    "Fingerprint: the endpoint answers the first few of eight short reference prompts greedily (with its top "
    "log-probabilities where it gives them); every local file of the ladder answers the same prompts on this "
    "machine, and is ranked by how closely it behaves like the endpoint. Confidence is the closest file's weakest "
    "share of paired bootstrap resamples over prompts against any other file (0.95 and up: a clear win).",
    "Quality probe: a task pack's cases judged by their checkers, or a prompt set's prompts passing when the "
    "endpoint says what the local reference says; the pass rate comes with its Wilson 95% interval.",
    "A change is claimed only beyond the measurement's own noise: a new closest file the fingerprint could tell "
    "from the old one, or a pass-rate drop with Fisher's exact test p < 0.05. Anything smaller is said to be "
    "within noise.",
    "Failed checks (rate limits, server errors, timeouts, refused connections, after retries) are kept with their "
    "reason and left out of the verdict: they are never read as a quality drop.",
    f"Seconds per request and tokens per second are {CLIENT_SIDE}: they include the network and the provider's "
    "queue, not the provider's hardware alone.",
]


def safe_url(url: str) -> str:
    """The endpoint's URL as it may be shown: scheme, host, port and path (no credentials, query or fragment)."""
    p = urlsplit(url)
    host = p.hostname or ""
    return f"{p.scheme}://{host}{f':{p.port}' if p.port else ''}{p.path}" if p.scheme else host


def _pct(c: ProviderCheck) -> str:
    if c.pass_rate is None:
        return "—"
    interval = f" ({c.pass_low:.0%}–{c.pass_high:.0%})" if c.pass_low is not None and c.pass_high is not None else ""
    return f"{c.pass_rate:.0%}{interval}, {c.passed} of {c.total}"


def _status(c: ProviderCheck) -> str:
    return "ok" if c.ok else f"{c.status}: {c.reason or 'no reason given'}"


def check_rows(checks: Sequence[ProviderCheck]) -> list[list[Any]]:
    """One row per check, newest first, in CHECK_HEADERS' order (plain values: escape where they meet markup)."""
    return [[c.id, c.started_at[:16].replace("T", " "), _status(c), c.closest or "—",
             "—" if c.confidence is None else (f"{c.confidence:.2f}" if c.closest else "—"), c.runner_up or "—",
             _pct(c), "—" if c.latency_s is None else f"{c.latency_s:.2f}",
             "—" if c.tok_s is None else f"{c.tok_s:.1f}",
             "—" if c.tokens_sent is None else f"{c.tokens_sent:,}" + (" (some estimated)" if c.tokens_note else ""),
             ", ".join(f"#{r}" for r in c.run_ids) or "—"] for c in reversed(checks)]


def endpoint_lines(p: WatchedProvider, ladder_name: str, tokens: int | None) -> list[tuple[str, str]]:
    """What is watched and what a check runs, as (what, value) pairs; no secret, only whether one is named."""
    probe = ("none" if p.probe.kind == "none" else
             f"{'task pack' if p.probe.kind == 'pack' else 'prompt set'} {p.probe.name}, "
             f"{p.probe.cases or 'all'} {'cases' if p.probe.kind == 'pack' else 'prompts'}")
    return [("Endpoint", safe_url(p.base_url)), ("Model", p.model or "(the server's default)"),
            ("API", API_WORDS.get(p.api, p.api)),
            ("API key", f"read from the environment variable {p.key_env}" if p.key_env else "none named (typed into a "
             "session, or not needed)"),
            ("Compared with", f"the local ladder {ladder_name}"),
            ("Fingerprint", f"{counted(p.fingerprint_prompts, 'reference prompt')}, at most {p.max_tokens} tokens each"),
            ("Quality probe", probe),
            ("A check sends about", "unknown" if tokens is None else f"{tokens:,} tokens (an upper estimate: every "
             "answer at its full length)"),
            ("Schedule", f"every {p.every_s / 3600:g} h" if p.every_s else "manual checks only"),
            ("Watched since", when(p.created_at))]


def _evidence(a: Assessment) -> list[tuple[str, str]]:
    out = []
    if a.before is not None:
        out.append(("Before", f"like {a.before} (confidence {'—' if a.before_confidence is None else f'{a.before_confidence:.2f}'})"))
    if a.after is not None:
        out.append(("Now", f"like {a.after} (confidence {'—' if a.after_confidence is None else f'{a.after_confidence:.2f}'})"
                    + (f", since {when(a.since)}" if a.since else "")))
    for what, p in (("Pass rate before", a.before_pass), ("Pass rate now", a.after_pass)):
        if p is not None:
            out.append((what, f"{p[0]:.0%} (95% interval {p[1]:.0%}–{p[2]:.0%})"))
    if a.pass_p_value is not None:
        out.append(("How likely a pass-rate difference this large is by chance alone",
                    f"p = {a.pass_p_value:.3g} (Fisher's exact test on the two pass counts)"))
    out.append(("Checks read", f"{a.checks} successful, {a.skipped} failed or stopped (left out)"))
    verdict = ("changed beyond the measurement's noise" if a.changed else
               "moved within the measurement's noise: no change claimed" if a.within_noise else "no change")
    out.append(("Verdict", verdict))
    return out


def _candidates(check: ProviderCheck | None) -> tuple[list[str], list[list[Any]]]:
    headers = ["local file", "greedy agreement", "top-1 agreement", "KLD", "within noise of the closest"]
    cands = (check.fingerprint.get("candidates") if check else None) or []
    rows = [[c.get("label"), c.get("greedy_agreement"), c.get("top1_agreement"), c.get("kld"),
             "yes" if c.get("within_noise") else "no"] for c in cands if isinstance(c, dict)]
    return headers, [[v if not isinstance(v, float) else f"{v:.3f}" for v in r] for r in rows]


def _latest_ok(checks: Sequence[ProviderCheck]) -> ProviderCheck | None:
    return next((c for c in reversed(checks) if c.ok), None)


def report_html(p: WatchedProvider, checks: Sequence[ProviderCheck], a: Assessment, *, ladder_name: str,
                ladder_labels: Sequence[str], tokens: int | None) -> str:
    """The report as one self-contained HTML page (no script, no network)."""
    css = ".wb-changed { border-left-color: #e8590c; }"
    out = html_head(f"Provider report: {p.name}", f"Quant Workbench provider watch · generated {generated_at()}", css)
    out.append(f'<p class="wb-verdict{" wb-changed" if a.changed else ""}">{esc(a.sentence)}</p>')
    out.append("<h2>The endpoint</h2>" + html_table(["What", "This provider"], endpoint_lines(p, ladder_name, tokens)))
    out.append("<h2>Timeline</h2>")
    out.append(svg_timeline(checks, ladder_labels, changed_at=a.since_check_id if a.changed else None))
    out.append(html_table(CHECK_HEADERS, check_rows(checks)))
    out.append("<h2>The change and its evidence</h2>" + html_table(["What", "Evidence"], _evidence(a)))
    latest = _latest_ok(checks)
    if latest is not None:
        headers, rows = _candidates(latest)
        out.append(f"<p>The newest successful check (#{latest.id}, {esc(when(latest.started_at))}), file by file. "
                   f"{esc(latest.confidence_text or '')}</p>" + html_table(headers, rows))
    out.append("<h2>Method and provenance</h2><ul>" + "".join(f"<li>{esc(m)}</li>" for m in METHOD) + "</ul>")
    out.append(f'<p class="wb-muted">Every figure was measured by this workbench: the endpoint over the network, the '
               f"local files on this machine. Provider #{p.id}, {len(checks)} checks stored.</p></body></html>")
    return "\n".join(out)


def report_markdown(p: WatchedProvider, checks: Sequence[ProviderCheck], a: Assessment, *, ladder_name: str,
                    tokens: int | None) -> str:
    """The same report as Markdown (the timeline as its table)."""
    out = [f"# Provider report: {md_cell(p.name)}", "", f"_Quant Workbench provider watch · generated {generated_at()}_",
           "", f"**{md_cell(a.sentence)}**", "", "## The endpoint", "", md_table(["What", "This provider"], endpoint_lines(p, ladder_name, tokens)),
           "", "## Timeline", "", md_table(CHECK_HEADERS, check_rows(checks)), "",
           "## The change and its evidence", "", md_table(["What", "Evidence"], _evidence(a)), ""]
    latest = _latest_ok(checks)
    if latest is not None:
        headers, rows = _candidates(latest)
        out += [f"The newest successful check (#{latest.id}, {md_cell(when(latest.started_at))}), file by file. "
                f"{md_cell(latest.confidence_text or '')}", "", md_table(headers, rows), ""]
    out += ["## Method and provenance", ""] + [f"- {md_cell(m)}" for m in METHOD]
    out += ["", f"Every figure was measured by this workbench: the endpoint over the network, the local files on this "
            f"machine. Provider #{p.id}, {len(checks)} checks stored.", ""]
    return "\n".join(out)
