"""What the numbers mean: one home for the words that explain every technical term the workbench shows.

Each `Term` is one plain sentence, an example, and optional details (the method's name, where the docs say
more). Pages show `help_text(...)` as a tooltip beside the term and list every entry on the "What the numbers
mean" page; reports can quote the same words. `chance_words` says a p-value the way a person would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUALITY, SPEED, MEMORY, PEOPLE, STATISTICS = "quality", "speed", "memory", "people's judgements", "statistics"
GROUPS = (QUALITY, SPEED, MEMORY, PEOPLE, STATISTICS)
GROUP_TITLES = {QUALITY: "Quality: how far a quantization moves from the reference",
                SPEED: "Speed: how fast it answers",
                MEMORY: "Memory: will it fit",
                PEOPLE: "People's judgements: stars and blind votes",
                STATISTICS: "Statistics: is a difference real or chance"}


@dataclass(frozen=True)
class Term:
    """One term: its name as pages show it, a plain sentence, an example, and details for who wants the method."""

    key: str
    name: str
    group: str
    sentence: str
    example: str
    details: str = ""
    aliases: tuple[str, ...] = ()

    def help(self) -> str:
        """The tooltip: the sentence, the example, then the details."""
        return f"{self.sentence} Example: {self.example}" + (f" ({self.details})" if self.details else "")


TERMS: tuple[Term, ...] = (
    # ---- quality ------------------------------------------------------------------------------------------------
    Term("reference", "reference", QUALITY,
         "The file every other one is measured against, normally the highest precision one.",
         "with F16 as the reference, Q4_K_M's changes are the words where it differs from F16.",
         aliases=("ref",)),
    Term("quantization", "quantization (Q8_0, Q4_K_M, Q2_K …)", QUALITY,
         "The same model with its weights stored in fewer bits: smaller and faster, and a little less exact.",
         "Q8_0 keeps about 8 bits per weight, Q4_K_M about 4.5 to 5, Q2_K about 2.5 to 3.",
         "the letters name llama.cpp's storage formats; K types mix precisions across tensors",
         aliases=("quant type",)),
    Term("bits_per_weight", "bits per weight", QUALITY,
         "The file's size in bits divided by the number of weights: how much room each number in the model gets.",
         "a 7B model at 4.8 bits per weight is about 4.2 GB.",
         "computed from the file; embeddings and some tensors are kept at higher precision, so it is above the "
         "type's nominal bits",
         aliases=("bits/weight", "bpw")),
    Term("first_divergence", "different answer from sentence N", QUALITY,
         "The output takes another path from the reference, and sentence N of the reference is where it first "
         "differs.",
         "\"different answer from sentence 1\" means the answers part ways in the first sentence; read on from "
         "there.",
         "greedy decoding picks the likeliest token each step, so one different token early can change everything "
         "after it; a tiny model does this far more than a 7–8B one",
         aliases=("different answer", "first divergence")),
    Term("same_answer", "same answer, N words differ", QUALITY,
         "The output says the same thing as the reference with a few words changed.",
         "\"same answer, 3 words differ\": a reader would see the same text.",
         "at least 90% similar by difflib's ratio over words; \"worded differently\" is 70–90%"),
    Term("facts_changed", "facts changed", QUALITY,
         "Numbers, names, dates or yes/no words that the reference states and this output states differently.",
         "\"20 minutes\" in the reference and \"2 minutes\" here is one changed fact.",
         "see docs/facts.md for what is caught and what is missed"),
    Term("noise_floor", "noise floor", QUALITY,
         "How much the reference changes against itself when run again with tiny harmless changes; differences "
         "smaller than that are not the quantization's doing.",
         "if F16 run twice changes 2 words and Q4_K_M changes 40, Q4_K_M is beyond the noise floor.",
         "repeats with another batch size and thread count; see docs/noise-floor.md"),
    Term("kld", "mean KLD", QUALITY,
         "How different the quantization's next-word guesses are from the reference's, averaged over every token; "
         "0 means identical.",
         "mean KLD 0.004 (typical of Q8_0) is barely different; 0.4 (Q2_K on the demo model) is far off.",
         "Kullback–Leibler divergence KL(reference ‖ quantization) in nats, as llama-perplexity --kl-divergence "
         "reports it; docs/quality.md",
         aliases=("KLD", "median KLD", "p99 KLD", "max KLD", "KL divergence", "99.9% KLD", "99% KLD", "90% KLD",
                  "KLD (nats)")),
    Term("top1", "same top-1", QUALITY,
         "How often the quantization would pick the same next word as the reference.",
         "same top-1 95% means 1 token in 20 would be chosen differently.",
         "top-1 token agreement over the scored tokens",
         aliases=("same top-1 %", "top-1 agreement", "same top p %")),
    Term("ppl", "PPL (perplexity)", QUALITY,
         "How surprised the model is by a text; lower is better, and a quantization should stay close to the "
         "reference's.",
         "PPL 24.5 for F16 and 25.3 for Q4_K_M: Q4_K_M is slightly more surprised.",
         "exp of the mean negative log-probability of each next token",
         aliases=("PPL", "perplexity")),
    Term("pass_rate", "pass rate", QUALITY,
         "The share of an eval's cases whose answer the checker accepted.",
         "9 of 12 math cases passed: 75%.",
         "each case's checker is named in the pack (exact number, contains, code runs …)"),
    # ---- speed ---------------------------------------------------------------------------------------------------
    Term("ttft", "TTFT", SPEED,
         "Time to first token: how long after pressing Run the first word appears.",
         "TTFT 0.25 s: the answer starts a quarter of a second after the prompt is sent.",
         "measured from the request to the first generated token; it includes reading the prompt (prefill)",
         aliases=("TTFT s", "time to first token")),
    Term("prefill", "prefill tok/s", SPEED,
         "How fast the model reads the prompt, in tokens per second.",
         "a 500-token prompt at 1,000 tok/s takes half a second before the answer starts.",
         "prompt tokens over prompt-processing time, counted in tokens, not stream chunks",
         aliases=("Prefill", "prompt tok/s")),
    Term("decode", "decode tok/s", SPEED,
         "How fast the answer is written, in tokens per second (a token is about three quarters of a word).",
         "30 tok/s is faster than most people read.",
         "generated tokens over generation time; repeats give a median and a spread",
         aliases=("Decode", "tok/s", "est. tok/s")),
    Term("load", "load time", SPEED,
         "How long it took to load the model file before the first prompt.",
         "Load 0.4 s (warm worker): the model was already loaded, so nothing was read again.",
         aliases=("Load", "load s")),
    Term("contention", "CPU contention", SPEED,
         "How much other programs competed for the cores the model ran on while it was timed; high contention "
         "makes the speed read low.",
         "\"CPU contention 35% (disturbed)\": the figure is lower than this machine gives when quiet.",
         "from the kernel's per-core busy time during the timed window",
         aliases=("disturbed", "quiet")),
    Term("free_core_busy", "free core busy", SPEED,
         "How busy other work kept the cores the model was not using; a busy neighbour still slows the model "
         "through shared memory.",
         "\"free core 100% busy\": something else ran flat out beside the model, so treat the speed as low.",
         "a window counts as disturbed when the free cores were 40% busy or more; docs/noise-floor.md",
         aliases=("free cores busy", "free core")),
    Term("memory_bandwidth", "memory bandwidth", SPEED,
         "How many bytes per second the memory can deliver; decoding reads every weight once per token, so this "
         "sets the speed limit.",
         "51.2 GB/s and a 4 GB file: at most about 12 tokens per second.",
         "presets quote spec-sheet peaks; this machine's figure is a measured copy rate",
         aliases=("RAM bandwidth", "VRAM bandwidth")),
    # ---- memory --------------------------------------------------------------------------------------------------
    Term("peak_ram", "peak RAM", MEMORY,
         "The most memory the model's worker process held at any moment.",
         "Peak RAM 210 MiB for a 100 MiB file: weights plus cache plus working space.",
         "the process's peak resident set size (VmHWM), measured",
         aliases=("Peak RAM", "peak RSS", "measured peak RSS", "measured MiB")),
    Term("kv_cache", "KV cache", MEMORY,
         "Memory the model keeps for the text so far, so it does not reread it; it grows with the context size.",
         "an 8B model at 8,192 tokens keeps about 1 GiB of KV cache in f16.",
         "layers × KV heads × head size × context × bytes per element, for keys and values",
         aliases=("KV", "KV cache (predicted)")),
    Term("kv_type", "KV type (f16, q8_0, q4_0)", MEMORY,
         "How precisely the KV cache is stored: q8_0 halves its memory against f16 with little change in "
         "answers, q4_0 quarters it and can change more.",
         "KV q8_0 at 8k tokens: 0.5 GiB where f16 needs 1 GiB.",
         "a quantized V cache needs flash attention (llama.cpp turns it on)",
         aliases=("KV q8_0", "KV cache K type", "KV cache V type", "KV type")),
    Term("context", "context size", MEMORY,
         "How many tokens (prompt and answer together) the model can hold at once.",
         "8,192 tokens is about 6,000 words.",
         "llama.cpp's n_ctx; the KV cache is sized for it up front",
         aliases=("context", "Context (tokens)", "Context size (tokens)")),
    Term("llama_reserved", "llama.cpp reserved", MEMORY,
         "Working memory llama.cpp set aside for its calculations, as llama.cpp itself reported it.",
         "\"Compute: 103 MiB llama.cpp reserved\": room for one batch of work, on top of weights and KV cache.",
         "the compute buffers llama.cpp allocates at load; predicted beside it from the file's header",
         aliases=("reserved", "Compute", "compute + other", "compute + runtime")),
    Term("os_reserve", "OS reserve", MEMORY,
         "Memory the operating system and other programs keep busy on a target, so the model cannot use it.",
         "an 8 GB laptop with a 3 GiB reserve has 5 GiB for the model.",
         "an assumption for the presets; measured for this machine",
         aliases=("OS reserve (GiB)",)),
    Term("gpu_offload", "GPU offload (full, partial)", MEMORY,
         "Whether the model's layers run on the graphics card: all of them (fast), some of them (partial offload: "
         "the rest run on the CPU, slower), or none.",
         "\"fits with partial GPU offload: 20 of 33 layers on the GPU\".",
         aliases=("GPU layers", "partial offload", "fits on GPU")),
    Term("fit", "fits / does not fit", MEMORY,
         "Whether the model, its KV cache and working memory fit in the memory a machine has free.",
         "\"does not fit: needs 9.1 GiB, has 5.0\" means 4.1 GiB is missing.",
         "predicted from the file's header (weights, KV cache) plus estimated compute buffers; not measured",
         aliases=("predicted peak", "total (CPU)", "predicted memory")),
    # ---- people --------------------------------------------------------------------------------------------------
    Term("stars", "mean rating", PEOPLE,
         "The average of the 1–5 stars people gave a quantization's answers, with the range the true average "
         "probably lies in.",
         "3.8 (3.2–4.4): more ratings would narrow the range.",
         "95% confidence interval",
         aliases=("mean rating", "stars")),
    Term("blind_vote", "blind vote", PEOPLE,
         "Two answers shown as A and B without saying which file wrote them; the person picks the better one.",
         "A beat B on 7 of 10 prompts.",
         "labels are hidden and the sides shuffled so a name cannot sway the vote"),
    Term("bradley_terry", "Bradley–Terry strength", PEOPLE,
         "A score from blind votes: the higher a quantization's strength, the more often it wins a vote against "
         "another.",
         "strengths 2 and 1: the first wins about 2 votes in 3.",
         "Bradley–Terry model: P(A beats B) = strength A / (strength A + strength B), 95% bootstrap interval",
         aliases=("Bradley–Terry", "Bradley-Terry", "strength", "BT strength", "BT 95% interval")),
    # ---- statistics ----------------------------------------------------------------------------------------------
    Term("chance", "could be chance: 1 in N", STATISTICS,
         "How often a difference at least this large would appear by luck alone if the two files were really "
         "the same.",
         "\"could be chance: about 1 in 2\" is no evidence; \"chance would do this about 1 in 256 times\" means "
         "luck is an unlikely explanation.",
         "a p-value written as 1 in 1/p; the test is named beside it (one-sided Wilcoxon signed-rank for words "
         "changed against the noise floor, a paired test for eval cases)",
         aliases=("p", "p-value", "one-sided Wilcoxon p", "Wilcoxon", "could be chance", "p (exact McNemar)")),
    Term("within_noise", "within noise", STATISTICS,
         "The difference is small enough that it could be chance; do not act on it.",
         "Q4_K_M passed 1 case fewer out of 20: within noise.",
         "a paired test (exact McNemar for eval cases) finds chance explains it at least 1 time in 20 (p ≥ 0.05)",
         aliases=("beyond noise",)),
    Term("interval", "95% interval", STATISTICS,
         "The range the true value probably lies in, given how few measurements there are.",
         "decode 30 tok/s (28–33): a repeat would likely land in that range.",
         "a 95% confidence or bootstrap interval",
         aliases=("CI", "confidence interval", "95% CI", "rating 95% CI")),
    Term("pareto", "Pareto front", STATISTICS,
         "The files worth considering: for each, no other file that fits is both smaller and closer to the "
         "reference.",
         "if Q4_K_M is smaller than Q5_K_M and also drifts less, Q5_K_M is off the front.",
         aliases=("Pareto",)),
)

_BY_KEY = {t.key: t for t in TERMS}
_BY_NAME = {n.casefold(): t for t in TERMS for n in (t.name, *t.aliases)}  # not by key: "quantization" is a column


def term(key: str) -> Term:
    """The entry with this key; KeyError names the key (a typo in a page should fail its test)."""
    return _BY_KEY[key]


_SUFFIX = re.compile(r"\s*(\([^)]*\)|%|MiB|GiB|s)$")


def lookup(name: str) -> Term | None:
    """The entry for a term as a page shows it ("TTFT s", "mean KLD", "KV cache (8,192)", "Bradley–Terry"), None
    when there is none. A trailing unit or parenthesis is dropped when the whole name is not known."""
    text = " ".join(str(name).split()).casefold()
    while text:
        if text in _BY_NAME:
            return _BY_NAME[text]
        shorter = _SUFFIX.sub("", text)
        if shorter == text:
            return None
        text = shorter
    return None


def help_text(key: str) -> str:
    """The tooltip for the term with this key: one plain sentence, an example, then the details."""
    return term(key).help()


# A column's summary verdict (quality.summary) -> the term that explains its line.
VERDICT_TERMS = {"same": "same_answer", "reworded": "same_answer", "different": "first_divergence",
                 "empty": "first_divergence"}


def verdict_help(verdict: str, facts_changed: int = 0) -> str | None:
    """The tooltip for a column's summary line ("different answer from sentence 1; 3 facts changed")."""
    keys = ([VERDICT_TERMS[verdict]] if verdict in VERDICT_TERMS else []) + (["facts_changed"] if facts_changed else [])
    return " ".join(help_text(k) for k in keys) or None


def by_group() -> list[tuple[str, list[Term]]]:
    """Every term, grouped in page order (quality, speed, memory, people's judgements, statistics)."""
    return [(g, [t for t in TERMS if t.group == g]) for g in GROUPS]


def chance_words(p: float | None, alpha: float = 0.05) -> str:
    """A p-value for people: how often chance alone gives a result at least this far from "no difference", e.g.
    "could be chance: about 1 in 2" (p = 0.45), "chance would do this about 1 in 125 times" (p = 0.008); "" when
    there is none. The test's name and its p belong beside it, in the details."""
    if p is None or p != p or p < 0:
        return ""
    if not p < 1.0:
        return "could well be chance"
    if p < 0.001:
        return "chance would do this less than 1 in 1,000 times"
    odds = max(1, round(1 / p))
    if p >= alpha:
        return "could well be chance" if odds <= 1 else f"could be chance: about 1 in {odds:,}"
    return f"chance would do this about 1 in {odds:,} times"
