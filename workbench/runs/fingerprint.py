"""Which quantization is this endpoint? Compare a remote model's behaviour with a local ladder.

The endpoint answers a few short, neutral reference prompts greedily (and, where it can, with
its top log-probabilities). Each local file of the same model then answers the same prompts, and
is judged on two kinds of evidence:

- Greedy agreement: the local file's greedy output vs the endpoint's, both in the local model's
  tokens — the fraction of tokens up to the first divergence (1.0 = identical). Cheap, always
  available, but coarse: a sampler the endpoint adds (a repeat penalty) or one near-tie flips it.
- Log-probabilities (when the endpoint returns them): the endpoint's output is teacher-forced
  through each local file (the worker's `score` op), and at every position the endpoint's top-k
  distribution is compared with the local one. KLD here is KL(endpoint || local) over the
  endpoint's top-k tokens only, both sides renormalised over those k tokens; a token missing from
  the local top-`LOCAL_TOP_K` gets the local k-th log-prob (an upper bound of its true value). It
  is a distance between truncated distributions, not the full-vocabulary KLD, but it compares
  like with like across candidates. Top-1 agreement: both sides' most likely token is the same.
  Log-probs are the model's raw scores, so they do not depend on the endpoint's sampler.

The ranking uses mean KLD over prompts when log-probs exist, else greedy agreement. How sure the
winner is comes from a paired bootstrap over prompts against every other candidate; candidates
the winner does not beat in at least 95 % of resamples are "within noise".

Every run is appended to the endpoint's history in the database (key: endpoint URL + model), so a
changed answer over time — a quietly swapped deployment — shows.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from workbench.engine.access import WorkerAccess
from workbench.engine.pool import WorkerDied, WorkerError, WorkerPool
from workbench.engine.protocol import Request, Score, Tokenize
from workbench.files import json_fields as jf
from workbench.models.ladder import Ladder, LadderFile
from workbench.runs.compare import run_contestant
from workbench.runs.contestants import Contestant, RemoteEndpoint, RunSettings
from workbench.runs.remote import RemoteCompletion, RemoteError, TokenLogprobs, request_completion
from workbench.storage.store import Store

REFERENCE_PROMPTS: tuple[str, ...] = (
    "Name three colours.",
    "What is the capital of France?",
    "Describe a cup of tea in one sentence.",
    "List the days of the week.",
    "What do bees make?",
    "Give one tip for sleeping well.",
    "Why is the sky blue?",
    "Write a short greeting for a new colleague.",
)
DEFAULT_MAX_TOKENS = 48
TOP_LOGPROBS = 5
LOCAL_TOP_K = 20
BOOTSTRAP_RESAMPLES = 2000
CLEAR_WIN = 0.95  # share of bootstrap resamples in which the winner must be closer

Progress = Callable[[str], None]


@dataclass
class Candidate:
    """One local file's evidence against the endpoint."""

    label: str
    quant_type: str | None
    bits_per_weight: float | None
    greedy_agreement: float | None = None  # mean over prompts of the agreeing-prefix fraction
    identical_prompts: int = 0
    kld: float | None = None  # mean over prompts of the per-position top-k KLD (see module docstring)
    top1_agreement: float | None = None  # over all aligned positions
    aligned_positions: int = 0
    per_prompt: list[dict[str, Any]] = field(default_factory=list)
    wins_over: dict[str, float] = field(default_factory=dict)  # label -> share of bootstrap resamples closer
    within_noise: bool = False
    error: str | None = None
    file: str | None = None  # the local GGUF, absolute (the CLI JSON's `file`)


@dataclass
class FingerprintReport:
    endpoint: dict[str, Any]
    ladder: str
    created_at: str
    prompts: list[str]
    max_tokens: int
    method: str  # "logprobs" or "greedy"
    candidates: list[Candidate]  # ranked, closest first; failed ones last
    closest: str | None
    confidence: str
    notes: list[str] = field(default_factory=list)
    endpoint_outputs: list[dict[str, Any]] = field(default_factory=list)
    previous_closest: str | None = None
    changed: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.closest is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- evidence helpers ---------------------------------------------------------------------------
def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):  # outputs of different lengths: the prefix ends with the shorter
        if x != y:
            break
        n += 1
    return n


def greedy_agreement(local: list[int], remote: list[int]) -> float:
    """Fraction of tokens the two greedy outputs share before they first differ (1.0 when identical)."""
    longest = max(len(local), len(remote))
    return 1.0 if longest == 0 else _common_prefix(local, remote) / longest


def align_positions(remote_tokens: list[str], local_pieces: list[str]) -> list[tuple[int, int]]:
    """Pairs (remote position, local position) that predict the same token after the same text.

    Identical token sequences pair one to one. Otherwise positions pair where both start at the
    same character offset and hold the same token text; the rest are left out.
    """
    if remote_tokens == local_pieces:
        return [(i, i) for i in range(len(remote_tokens))]
    local_at: dict[int, int] = {}
    off = 0
    for k, piece in enumerate(local_pieces):
        local_at.setdefault(off, k)
        off += len(piece)
    pairs, off = [], 0
    for j, tok in enumerate(remote_tokens):
        at = local_at.get(off)
        if at is not None and local_pieces[at] == tok:
            pairs.append((j, at))
        off += len(tok)
    return pairs


def topk_kld(remote: TokenLogprobs, local_top: list[tuple[Any, float]], pieces: dict[str, str],
             use_ids: bool = True) -> tuple[float, bool] | None:
    """KL(endpoint || local) over the endpoint's top-k, both renormalised; and whether the top-1s agree.

    `local_top` is the worker's [[token_id, logprob], …], best first. Tokens are matched by id when
    the endpoint gave ids and `use_ids` says they are the local vocabulary's, else by their text.
    """
    if not remote.top or not local_top:
        return None
    by_id = use_ids and len(remote.top_ids) == len(remote.top) and all(i is not None for i in remote.top_ids)
    local: dict[Any, float] = {}
    for tid, lp in local_top:
        key = int(tid) if by_id else pieces.get(str(tid), "")
        local[key] = float(np.logaddexp(local[key], lp)) if key in local else float(lp)
    floor = min(lp for _, lp in local_top)
    keys = list(remote.top_ids) if by_id else [t for t, _ in remote.top]
    p = np.array([lp for _, lp in remote.top], dtype=np.float64)
    q = np.array([local.get(k, floor) for k in keys], dtype=np.float64)
    p = p - np.logaddexp.reduce(p)
    q = q - np.logaddexp.reduce(q)
    kld = float(max(0.0, np.sum(np.exp(p) * (p - q))))
    local_best = int(local_top[0][0]) if by_id else pieces.get(str(local_top[0][0]), "")
    return kld, keys[0] == local_best


def paired_bootstrap(better: list[float], other: list[float], lower_is_better: bool,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> float:
    """Share of bootstrap resamples of prompts in which `better` is strictly closer than `other` on average."""
    a, b = np.asarray(better, dtype=np.float64), np.asarray(other, dtype=np.float64)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return 0.0
    diff = (b - a) if lower_is_better else (a - b)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(resamples, len(diff)))
    return float(np.mean(diff[idx].mean(axis=1) > 0))


# ---- local side -----------------------------------------------------------------------------------
class _Local:
    """Tokenize and score through the pool's warm worker for one ladder file."""

    def __init__(self, pool: WorkerPool, f: LadderFile, settings: RunSettings) -> None:
        self.pool, self.file, self.settings = pool, f, settings
        self._bos_prefix: list[int] | None = None

    def _call(self, request: Request, terminal: str, cancel: threading.Event | None) -> dict[str, Any]:
        # the access path run_contestant uses: the same load settings (GPU offload included), so its warm
        # worker is reused without a reload, and the same extra-buffer crash fallback
        access = WorkerAccess(self.pool, self.file.path, self.settings.placement())
        return access.run(lambda worker, _loaded: worker.call(request, {terminal}, None, cancel))

    def prompt_tokens(self, messages: list[dict[str, str]], cancel: threading.Event | None) -> list[int]:
        return list(self._call(Tokenize(messages=messages), "tokenized", cancel)["tokens"])

    def text_tokens(self, text: str, cancel: threading.Event | None) -> list[int]:
        """`text` as the model's own tokens, without the BOS a plain-text tokenize may add."""
        if self._bos_prefix is None:
            self._bos_prefix = list(self._call(Tokenize(text=""), "tokenized", cancel)["tokens"])
        toks = list(self._call(Tokenize(text=text), "tokenized", cancel)["tokens"])
        n = len(self._bos_prefix)
        return toks[n:] if n and toks[:n] == self._bos_prefix else toks

    def score(self, prompt: list[int], target: list[int], cancel: threading.Event | None) -> dict[str, Any]:
        return self._call(Score(prompt, target, LOCAL_TOP_K), "scored", cancel)


# ---- persistence ----------------------------------------------------------------------------------
def history_key(endpoint: RemoteEndpoint) -> str:
    """The key of this endpoint's fingerprint history (URL + model; it named the JSON-lines file of old)."""
    return hashlib.sha256(f"{endpoint.display_url}|{endpoint.model}".encode()).hexdigest()[:16]


def history(endpoint: RemoteEndpoint, store: Store | None = None) -> list[dict[str, Any]]:
    """Earlier fingerprint runs of this endpoint, oldest first."""
    return (store or Store()).fingerprint_history(history_key(endpoint))


def _save(report: FingerprintReport, endpoint: RemoteEndpoint, store: Store | None = None) -> None:
    (store or Store()).add_fingerprint(history_key(endpoint), report.to_dict())


# ---- the run --------------------------------------------------------------------------------------
def _ask_endpoint(endpoint: RemoteEndpoint, prompts: list[str], settings: RunSettings, notes: list[str],
                  cancel: threading.Event | None, progress: Progress) -> tuple[list[RemoteCompletion | None], list[str | None], bool]:
    """The endpoint's greedy answers (with top log-probs when it gives them)."""
    outs: list[RemoteCompletion | None] = []
    errors: list[str | None] = []
    want_logprobs = True
    for i, prompt in enumerate(prompts, 1):
        progress(f"endpoint: prompt {i}/{len(prompts)}")
        msgs = settings.messages(prompt)
        kwargs: dict[str, Any] = dict(max_tokens=settings.max_tokens, temperature=0.0, top_p=1.0, seed=settings.seed, stream=False,
                      cancel=cancel)
        try:
            c = request_completion(endpoint, msgs, top_logprobs=TOP_LOGPROBS if want_logprobs else 0, **kwargs)
        except RemoteError as exc:
            if i == 1 and not _answers_at_all(exc):
                return [None] * len(prompts), [str(exc)] * len(prompts), False  # down: asking again will not help
            if not want_logprobs or any(o is not None for o in outs):
                outs.append(None)
                errors.append(str(exc))
                continue
            try:  # the first answer failed with log-probs asked for: maybe the server refuses them
                c = request_completion(endpoint, msgs, top_logprobs=0, **kwargs)
            except RemoteError:
                outs.append(None)
                errors.append(str(exc))
                continue
            want_logprobs = False
            notes.append(f"The endpoint refused log-probabilities ({exc}); only greedy agreement was compared.")
        outs.append(c)
        errors.append(None)
    has_logprobs = want_logprobs and any(o is not None and o.logprobs for o in outs)
    if want_logprobs and not has_logprobs and any(o is not None for o in outs):
        notes.append("The endpoint returned no log-probabilities; only greedy agreement was compared.")
    return outs, errors, has_logprobs


def _answers_at_all(exc: RemoteError) -> bool:
    """Whether the endpoint got as far as answering (an HTTP status), so that a retry could help."""
    return str(exc).startswith("HTTP ") or "reported an error" in str(exc)


def fingerprint(
    pool: WorkerPool,
    endpoint: RemoteEndpoint,
    ladder: Ladder,
    prompts: list[str] | None = None,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    settings: RunSettings | None = None,
    labels: list[str] | None = None,
    cancel: threading.Event | None = None,
    progress: Progress = lambda msg: None,
    save: bool = True,
    store: Store | None = None,
) -> FingerprintReport:
    """Rank the ladder's files by how closely each behaves like `endpoint`; never raises for remote trouble.

    The endpoint's history (what it resembled before, and where this run is kept) is `store`'s, else the
    workbench's own database."""
    prompts = list(prompts or REFERENCE_PROMPTS)
    settings = settings or RunSettings()
    settings = RunSettings(**{**settings.to_dict(), "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0})
    settings.validate()
    files = [f for f in ladder.files if labels is None or f.label in labels]
    if not files:
        raise ValueError("no ladder files to compare with")
    notes: list[str] = []
    previous = next((h.get("closest") for h in reversed(history(endpoint, store)) if h.get("closest")), None)

    def report(candidates: list[Candidate], closest: str | None, confidence: str, method: str,
               outputs: list[dict[str, Any]], error: str | None = None) -> FingerprintReport:
        r = FingerprintReport(endpoint=endpoint.to_dict(), ladder=ladder.name,
                              created_at=datetime.now(UTC).isoformat(timespec="seconds"), prompts=prompts,
                              max_tokens=max_tokens, method=method, candidates=candidates, closest=closest,
                              confidence=confidence, notes=notes, endpoint_outputs=outputs, previous_closest=previous,
                              changed=bool(previous and closest and previous != closest), error=error)
        if save and closest is not None:
            _save(r, endpoint, store)
        return r

    remote, remote_errors, has_logprobs = _ask_endpoint(endpoint, prompts, settings, notes, cancel, progress)
    outputs = [{"prompt": p, "text": c.text if c else None, "prompt_tokens": c.prompt_tokens if c else None,
                "finish_reason": c.finish_reason if c else None, "error": e}
               for p, c, e in zip(prompts, remote, remote_errors, strict=True)]
    method = "logprobs" if has_logprobs else "greedy"
    if all(c is None for c in remote):
        return report([], None, "No answer from the endpoint, so nothing could be compared.", method, outputs,
                      error=next((e for e in remote_errors if e), "no answer from the endpoint"))
    if cancel is not None and cancel.is_set():
        return report([], None, "Cancelled.", method, outputs, error="cancelled")
    if any(remote_errors):
        notes.append(f"{sum(e is not None for e in remote_errors)} of {len(prompts)} prompts got no answer from "
                     f"the endpoint and were left out: {next(e for e in remote_errors if e)}")
    _check_greedy(remote, notes)

    candidates: list[Candidate] = []
    token_mismatch: set[str] = set()
    with pool.queue.turn(cancel=cancel):
        for f in files:
            progress(f"local: {f.label}")
            cand = Candidate(f.label, f.quant_type, f.bits_per_weight, file=jf.abs_file(f.path))
            try:
                _evaluate(pool, f, settings, prompts, remote, has_logprobs, cand, token_mismatch, cancel)
            except (WorkerError, WorkerDied) as exc:
                cand.error = f"{f.label}: {exc}"
            candidates.append(cand)
            if cancel is not None and cancel.is_set():
                return report(candidates, None, "Cancelled.", method, outputs, error="cancelled")
    if token_mismatch:
        notes.append("The endpoint counted a different number of prompt tokens than the local chat template gives "
                     f"({', '.join(sorted(token_mismatch))}): it may format prompts differently or serve another model, "
                     "which weakens every comparison here.")
    closest, confidence = _rank(candidates, method)
    return report(candidates, closest, confidence, method, outputs)


def _check_greedy(remote: list[RemoteCompletion | None], notes: list[str]) -> None:
    """Say so when the endpoint did not pick its own most likely token: its sampler is not plain greedy."""
    picked = off = 0
    for c in remote:
        for lp in (c.logprobs if c else []):
            if lp.top:
                picked += 1
                off += lp.token != lp.top[0][0] and (lp.logprob is None or lp.logprob < lp.top[0][1] - 1e-6)
    if off:
        notes.append(f"The endpoint chose a token other than its own most likely one at {off} of {picked} positions: "
                     "it is not decoding plain greedy (a repeat penalty? llama-cpp-python's server defaults to 1.1). "
                     "Greedy agreement is unreliable here; the log-probability evidence is not affected.")


def _evaluate(pool: WorkerPool, f: LadderFile, settings: RunSettings, prompts: list[str],
              remote: list[RemoteCompletion | None], has_logprobs: bool, cand: Candidate, token_mismatch: set[str],
              cancel: threading.Event | None) -> None:
    """Fill `cand` with per-prompt greedy and log-prob evidence for one local file.

    One prompt at a time on purpose, not batched (runs.batched): the evidence is exact greedy agreement with
    the endpoint, and several sequences per step switch K-quants to other kernels that change greedy outputs
    (34 of 78 starter cases, docs/benchmarks.md), which would blur which quantization the endpoint serves.
    """
    local = _Local(pool, f, settings)
    contestant = Contestant.from_ladder_file(f, is_reference=False)
    top1_hits = top1_total = 0
    agreements: list[float] = []
    klds: list[float] = []
    for i, (prompt, c) in enumerate(zip(prompts, remote, strict=True)):
        row: dict[str, Any] = {"prompt": i}
        cand.per_prompt.append(row)
        if c is None:
            row["greedy_agreement"] = row["kld"] = None
            continue
        msgs = settings.messages(prompt)
        res = run_contestant(pool, contestant, settings, msgs, cancel=cancel)
        if res.error:
            raise WorkerError(res.error)
        if cancel is not None and cancel.is_set():
            return
        prompt_toks = local.prompt_tokens(msgs, cancel)
        if c.prompt_tokens is not None and c.prompt_tokens != len(prompt_toks):
            token_mismatch.add(f"{c.prompt_tokens} vs {len(prompt_toks)}")
        target = local.text_tokens(c.text, cancel)
        # llama.cpp's native API returns token ids; trust them only where they are this vocabulary's
        same_ids = bool(c.token_ids) and c.token_ids == target
        agree = 1.0 if res.text == c.text else greedy_agreement(res.token_ids, target)
        row.update(greedy_agreement=agree, identical=res.text == c.text,
                   first_divergence=None if res.text == c.text else _common_prefix(res.token_ids, target))
        agreements.append(agree)
        cand.identical_prompts += res.text == c.text
        if not has_logprobs or not c.logprobs or not target:
            row["kld"] = None
            continue
        room = settings.n_ctx - len(prompt_toks)
        target = target[:room]
        scored = local.score(prompt_toks, target, cancel)
        pieces: dict[str, str] = scored.get("pieces", {})
        positions = scored["positions"]
        remote_tokens = [lp.token for lp in c.logprobs]
        if same_ids and len(c.token_ids) == len(c.logprobs):
            pairs = [(j, j) for j in range(min(len(positions), len(c.logprobs)))]
        else:
            pairs = align_positions(remote_tokens, [pieces.get(str(t), "") for t in target[: len(positions)]])
        values = []
        for j, k in pairs:
            got = topk_kld(c.logprobs[j], positions[k]["top"], pieces, use_ids=same_ids)
            if got is None:
                continue
            values.append(got[0])
            top1_hits += got[1]
            top1_total += 1
        row.update(kld=float(np.mean(values)) if values else None, aligned_positions=len(values),
                   remote_positions=len(c.logprobs))
        cand.aligned_positions += len(values)
        if values:
            klds.append(float(np.mean(values)))
    cand.greedy_agreement = float(np.mean(agreements)) if agreements else None
    cand.kld = float(np.mean(klds)) if klds else None
    cand.top1_agreement = top1_hits / top1_total if top1_total else None


def _metric(c: Candidate, method: str) -> list[float]:
    key = "kld" if method == "logprobs" else "greedy_agreement"
    return [math.nan if r.get(key) is None else float(r[key]) for r in c.per_prompt]


def _rank(candidates: list[Candidate], method: str) -> tuple[str | None, str]:
    """Order the candidates closest first and say how sure the winner is, in one or two sentences."""
    usable = [c for c in candidates if c.error is None and (c.kld if method == "logprobs" else c.greedy_agreement) is not None]
    failed = [c for c in candidates if c not in usable]
    if method == "logprobs":
        usable.sort(key=lambda c: (c.kld, -(c.greedy_agreement or 0)))
    else:
        usable.sort(key=lambda c: (-(c.greedy_agreement or 0), -c.identical_prompts))
    candidates[:] = usable + failed
    if not usable:
        return None, "No local file could be compared with the endpoint."
    best = usable[0]
    lower = method == "logprobs"
    best_m = _metric(best, method)
    noise: list[str] = []
    for other in usable[1:]:
        share = paired_bootstrap(best_m, _metric(other, method), lower_is_better=lower)
        best.wins_over[other.label] = share
        if share < CLEAR_WIN:
            other.within_noise = True
            noise.append(other.label)
    n_prompts = sum(not math.isnan(x) for x in best_m)
    if method == "logprobs":
        figure = f"mean top-{TOP_LOGPROBS} KLD {best.kld:.4f}"
        if len(usable) > 1:
            figure += f"; next {usable[1].label} at {usable[1].kld:.4f}"
        if best.top1_agreement is not None:
            figure += f"; top-1 agreement {best.top1_agreement:.0%}"
    else:
        figure = f"greedy agreement {best.greedy_agreement:.0%}, identical on {best.identical_prompts}/{n_prompts} prompts"
        if len(usable) > 1:
            figure += f"; next {usable[1].label} at {usable[1].greedy_agreement:.0%}"
    if len(usable) == 1:
        sentence = f"Closest to {best.label} ({figure}); it was the only file compared."
    elif not noise:
        runner = usable[1]
        ahead = sum(1 for a, b in zip(best_m, _metric(runner, method), strict=True)
                    if not (math.isnan(a) or math.isnan(b)) and ((a < b) if lower else (a > b)))
        weakest = min(best.wins_over.values())
        least = "all" if weakest >= 1.0 else f"at least {weakest:.0%}"
        sentence = (f"Closest to {best.label} ({figure}); closer than the runner-up {runner.label} on {ahead} of "
                    f"{n_prompts} prompts, and than every other file in {least} of {BOOTSTRAP_RESAMPLES} "
                    "paired bootstrap resamples over prompts.")
    else:
        shares = ", ".join(f"{lab} {best.wins_over[lab]:.0%}" for lab in noise)
        sentence = (f"Closest to {best.label}; {' and '.join(noise)} within noise ({figure}; {best.label} is closer in "
                    f"only {shares} of paired bootstrap resamples over {n_prompts} prompts).")
    if n_prompts < 5:
        sentence += f" With only {n_prompts} prompts the bootstrap says little; use more prompts for a firmer answer."
    if method != "logprobs":
        sentence = ("Weaker evidence: the endpoint returned no log-probabilities, so only greedy agreement was compared. "
                    + sentence)
    poor = (best.greedy_agreement is not None and best.greedy_agreement < 0.5
            and (best.top1_agreement is None or best.top1_agreement < 0.9))
    if poor:
        sentence += (" No ladder file matches closely, though: the endpoint may serve another quantization, model "
                     "or chat template, or use a sampler other than plain greedy.")
    return best.label, sentence
