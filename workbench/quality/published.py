"""Figures published elsewhere for the same quantization types, set beside what we measure.

Why: a small demo model's KLD means little on its own ("is 0.2 a lot?"). llama.cpp publishes, for LLaMA 3 8B
on Wikitext-2, the perplexity and the KL divergence from FP16 of every quantization type; putting that figure
beside ours reads our measurement in context. It is ANOTHER model's figure on another text: compare rankings
and ratios, never the values, and label it "published elsewhere" wherever it is shown.

The rows below are copied verbatim from llama.cpp's tools/perplexity/README.md ("LLaMA 3 8b Scoreboard", revision
f364eb6f, CUDA backend, one RTX 4090), at the commit in `SOURCE_URL`; the scoreboard has been unchanged since
commit 20385ce (May 2024). They are parsed here rather than retyped, so no figure can drift from its source.
Each lookup says whether it is for a file made with an importance matrix (`published_for(type, imatrix=True)`): a
static file gets the row without one ("None": how `llama-quantize` makes a file by default), a file made with a matrix
gets the row quantized with one ("WT 10m": ten million Wikitext tokens of calibration, the source's largest). Where
the source lists a type only the other way (the IQ types and Q2_K_S only with a matrix; Q8_0, Q6_K, Q5_K_M … only
without), that row is given and its note says so: a static figure is never shown for an imatrix file, or the reverse,
without saying it. A type the scoreboard does not list has no figure (`published_for` returns None): nothing is
interpolated or guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workbench.files.quant_names import is_imatrix_name, quant_from_name
from workbench.storage.provenance import Provenance

__all__ = ["MODEL", "NOTE", "PUBLISHED_COLUMN", "PUBLISHED_ELSEWHERE", "SOURCE_TITLE", "SOURCE_URL", "PublishedFigure",
           "all_published", "published_for", "published_for_row"]

MODEL = "LLaMA-3-8B"
DATASET = "wikitext-2"
SOURCE_COMMIT = "92f7da00b49ad814b95832dd6610a825bbdd3033"
SOURCE_URL = f"https://github.com/ggml-org/llama.cpp/blob/{SOURCE_COMMIT}/tools/perplexity/README.md#llama-3-8b-scoreboard"
SOURCE_TITLE = "llama.cpp, tools/perplexity/README.md: LLaMA 3 8b Scoreboard (revision f364eb6f)"
NOTE = "another model's figure (LLaMA-3-8B, wikitext-2), for context only"
#: What a column or caption calls these figures, as against the ones measured here.
PUBLISHED_ELSEWHERE = "published elsewhere"
#: The column beside a measured mean KLD, in the Quality page's tables and the run report.
PUBLISHED_COLUMN = f"Published ({MODEL}) mean KLD"

# llama.cpp README, "LLaMA 3 8b Scoreboard", verbatim (KLD: mean KL divergence from FP16, in nats).
_SCOREBOARD = """\
| Quantization | imatrix | Model size [GiB] | PPL                    | ΔPPL                   | KLD                   | Mean Δp           | RMS Δp           |
|--------------|---------|------------------|------------------------|------------------------|-----------------------|-------------------|------------------|
| f16          | None    |            14.97 | 6.233160 ±   0.037828  | 0.001524 ±   0.000755  | 0.000551 ±   0.000002 |  0.001 ± 0.002 %  | 0.787 ± 0.004 %  |
| q8_0         | None    |             7.96 | 6.234284 ±   0.037878  | 0.002650 ±   0.001006  | 0.001355 ±   0.000006 | -0.019 ± 0.003 %  | 1.198 ± 0.007 %  |
| q6_K         | None    |             6.14 | 6.253382 ±   0.038078  | 0.021748 ±   0.001852  | 0.005452 ±   0.000035 | -0.007 ± 0.006 %  | 2.295 ± 0.019 %  |
| q5_K_M       | None    |             5.33 | 6.288607 ±   0.038338  | 0.056974 ±   0.002598  | 0.010762 ±   0.000079 | -0.114 ± 0.008 %  | 3.160 ± 0.031 %  |
| q5_K_S       | None    |             5.21 | 6.336598 ±   0.038755  | 0.104964 ±   0.003331  | 0.016595 ±   0.000122 | -0.223 ± 0.010 %  | 3.918 ± 0.036 %  |
| q5_1         | None    |             5.65 | 6.337857 ±   0.038677  | 0.106223 ±   0.003476  | 0.018045 ±   0.000139 | -0.287 ± 0.011 %  | 4.123 ± 0.039 %  |
| q5_0         | None    |             5.21 | 6.363224 ±   0.038861  | 0.131591 ±   0.003894  | 0.022239 ±   0.000166 | -0.416 ± 0.012 %  | 4.634 ± 0.043 %  |
| q4_K_M       | WT 10m  |             4.58 | 6.382937 ±   0.039055  | 0.151303 ±   0.004429  | 0.028152 ±   0.000240 | -0.389 ± 0.014 %  | 5.251 ± 0.049 %  |
| q4_K_M       | None    |             4.58 | 6.407115 ±   0.039119  | 0.175482 ±   0.004620  | 0.031273 ±   0.000238 | -0.596 ± 0.014 %  | 5.519 ± 0.050 %  |
| q4_K_S       | WT 10m  |             4.37 | 6.409697 ±   0.039189  | 0.178064 ±   0.004744  | 0.031951 ±   0.000259 | -0.531 ± 0.015 %  | 5.645 ± 0.051 %  |
| iq4_NL       | WT 10m  |             4.35 | 6.455593 ±   0.039630  | 0.223959 ±   0.005201  | 0.035742 ±   0.000288 | -0.590 ± 0.016 %  | 5.998 ± 0.054 %  |
| iq4_XS       | WT 10m  |             4.14 | 6.459705 ±   0.039595  | 0.228071 ±   0.005207  | 0.036334 ±   0.000284 | -0.668 ± 0.016 %  | 6.044 ± 0.054 %  |
| q4_K_S       | None    |             4.37 | 6.500529 ±   0.039778  | 0.268895 ±   0.005638  | 0.043136 ±   0.000314 | -0.927 ± 0.017 %  | 6.562 ± 0.055 %  |
| q4_1         | None    |             4.78 | 6.682737 ±   0.041285  | 0.451103 ±   0.008030  | 0.071683 ±   0.000505 | -0.927 ± 0.017 %  | 8.512 ± 0.063 %  |
| q4_0         | None    |             4.34 | 6.700147 ±   0.041226  | 0.468514 ±   0.007951  | 0.071940 ±   0.000491 | -1.588 ± 0.022 %  | 8.434 ± 0.061 %  |
| q3_K_L       | WT 10m  |             4.03 | 6.671223 ±   0.041427  | 0.439590 ±   0.008154  | 0.073077 ±   0.000529 | -0.940 ± 0.023 %  | 8.662 ± 0.064 %  |
| q3_K_M       | WT 10m  |             3.74 | 6.734255 ±   0.041838  | 0.502622 ±   0.008901  | 0.084358 ±   0.000588 | -1.198 ± 0.024 %  | 9.292 ± 0.065 %  |
| q3_K_L       | None    |             4.03 | 6.787876 ±   0.042104  | 0.556242 ±   0.009171  | 0.087176 ±   0.000614 | -1.532 ± 0.025 %  | 9.432 ± 0.067 %  |
| q3_K_M       | None    |             3.74 | 6.888498 ±   0.042669  | 0.656864 ±   0.010071  | 0.101913 ±   0.000677 | -1.990 ± 0.026 %  | 10.203 ± 0.068 % |
| iq3_M        | WT 10m  |             3.53 | 6.898327 ±   0.041643  | 0.666694 ±   0.009449  | 0.102534 ±   0.000663 | -3.178 ± 0.026 %  | 10.513 ± 0.066 % |
| iq3_S        | WT 10m  |             3.42 | 6.965501 ±   0.042406  | 0.733867 ±   0.010245  | 0.111278 ±   0.000710 | -3.066 ± 0.027 %  | 10.845 ± 0.068 % |
| iq3_XS       | WT 10m  |             3.28 | 7.163043 ±   0.043772  | 0.931409 ±   0.012084  | 0.138693 ±   0.000857 | -3.667 ± 0.031 %  | 12.148 ± 0.070 % |
| iq3_XXS      | WT 10m  |             3.05 | 7.458436 ±   0.046404  | 1.226803 ±   0.015234  | 0.183625 ±   0.001042 | -3.918 ± 0.035 %  | 13.836 ± 0.074 % |
| q3_K_S       | WT 10m  |             3.41 | 7.602878 ±   0.046848  | 1.371244 ±   0.015688  | 0.199821 ±   0.001008 | -5.046 ± 0.037 %  | 14.980 ± 0.070 % |
| q3_K_S       | None    |             3.41 | 7.863786 ±   0.048885  | 1.632152 ±   0.017733  | 0.228217 ±   0.001079 | -5.604 ± 0.038 %  | 15.541 ± 0.070 % |
| iq2_M        | WT 10m  |             2.74 | 8.600799 ±   0.055124  | 2.369166 ±   0.025244  | 0.325989 ±   0.00160  | -6.463 ± 0.046 %  | 18.519 ± 0.080 % |
| q2_K         | WT 10k  |             2.96 | 8.652290 ±   0.055572  | 2.420657 ±   0.025587  | 0.331393 ±   0.001562 | -6.606 ± 0.046 %  | 18.790 ± 0.078 % |
| q2_K         | WT 100k |             2.96 | 8.641993 ±   0.055406  | 2.410359 ±   0.025495  | 0.331672 ±   0.001569 | -6.628 ± 0.047 %  | 18.856 ± 0.078 % |
| q2_K         | WT 10m  |             2.96 | 8.647825 ±   0.055610  | 2.416191 ±   0.025683  | 0.332223 ±   0.001572 | -6.500 ± 0.047 %  | 18.881 ± 0.078 % |
| q2_K         | WT 1m   |             2.96 | 8.674365 ±   0.055743  | 2.442732 ±   0.025843  | 0.335308 ±   0.001576 | -6.634 ± 0.047 %  | 19.009 ± 0.079 % |
| q2_K         | WT 1k   |             2.96 | 8.682605 ±   0.055916  | 2.450972 ±   0.026069  | 0.337093 ±   0.001596 | -6.596 ± 0.047 %  | 18.977 ± 0.079 % |
| q2_K_S       | WT 10m  |             2.96 | 9.323778 ±   0.061551  | 3.092145 ±   0.031914  | 0.403360 ±   0.001787 | -7.131 ± 0.049 %  | 20.050 ± 0.081 % |
| q2_K_S       | WT 1m   |             2.96 | 9.329321 ±   0.061378  | 3.097688 ±   0.031816  | 0.403590 ±   0.001797 | -7.289 ± 0.049 %  | 20.123 ± 0.081 % |
| q2_K_S       | WT 100k |             2.96 | 9.362973 ±   0.061740  | 3.131339 ±   0.032169  | 0.408367 ±   0.001802 | -7.198 ± 0.050 %  | 20.132 ± 0.081 % |
| q2_K_S       | WT 10k  |             2.96 | 9.376479 ±   0.062045  | 3.144846 ±   0.032464  | 0.408662 ±   0.001819 | -7.141 ± 0.050 %  | 20.120 ± 0.081 % |
| q2_K_S       | WT 1k   |             2.96 | 9.415200 ±   0.062475  | 3.183567 ±   0.032993  | 0.415865 ±   0.001846 | -7.153 ± 0.050 %  | 20.311 ± 0.082 % |
| iq2_S        | WT 10m  |             2.56 | 9.650781 ±   0.063209  | 3.419148 ±   0.034017  | 0.439197 ±   0.001976 | -8.319 ± 0.052 %  | 21.491 ± 0.083 % |
| q2_K         | None    |             2.96 | 9.751568 ±   0.063312  | 3.519934 ±   0.033863  | 0.445132 ±   0.001835 | -9.123 ± 0.051 %  | 21.421 ± 0.079 % |
| iq2_XS       | WT 10m  |             2.43 | 10.761424 ±   0.071056 | 4.529791 ±   0.042229  | 0.546290 ±   0.002133 | -10.576 ± 0.056 % | 23.872 ± 0.082 % |
| iq2_XXS      | WT 10m  |             2.24 | 14.091782 ±   0.098396 | 7.860148 ±   0.070752  | 0.812022 ±   0.002741 | -14.363 ± 0.065 % | 28.576 ± 0.084 % |
| iq1_M        | WT 10m  |             2.01 | 25.493722 ±   0.177903 | 19.262089 ±   0.152396 | 1.393084 ±   0.003529 | -24.672 ± 0.077 % | 38.287 ± 0.084 % |
| iq1_S        | WT 1m   |             1.88 | 58.097760 ±   0.438604 | 51.866126 ±   0.416604 | 2.211278 ±   0.004688 | -32.471 ± 0.087 % | 46.418 ± 0.085 % |
| iq1_S        | WT 1k   |             1.88 | 58.267851 ±   0.446208 | 52.036218 ±   0.424373 | 2.214858 ±   0.004778 | -31.880 ± 0.089 % | 46.330 ± 0.086 % |
| iq1_S        | WT 100k |             1.88 | 58.581498 ±   0.453145 | 52.349864 ±   0.431360 | 2.220834 ±   0.004818 | -32.261 ± 0.089 % | 46.002 ± 0.086 % |
| iq1_S        | WT 10m  |             1.88 | 60.694593 ±   0.471290 | 54.462959 ±   0.449644 | 2.254554 ±   0.004868 | -31.973 ± 0.088 % | 46.271 ± 0.086 % |
| iq1_S        | WT 10k  |             1.88 | 63.221324 ±   0.493077 | 56.989691 ±   0.471423 | 2.293527 ±   0.004885 | -32.261 ± 0.089 % | 46.562 ± 0.086 % |
"""

# The same README, "LLaMA 2 vs. LLaMA 3 Quantization comparison": the only place it gives "Same top p" for the
# 8B model (four types); its Mean KLD row repeats the scoreboard's "None" rows, which the parser checks.
_COMPARISON = """\
| Metric          |          L2 7b q2_K |          L3 8b q2_K |        L2 7b q4_K_M |        L3 8b q4_K_M |          L2 7b q6_K |          L3 8b q6_K |          L2 7b q8_0 |          L3 8b q8_0 |
|-----------------|---------------------|---------------------|---------------------|---------------------|---------------------|---------------------|---------------------|---------------------|
| Mean KLD        | 0.108903 ± 0.000645 | 0.445132 ± 0.001835 | 0.012686 ± 0.000079 | 0.031273 ± 0.000238 | 0.002098 ± 0.000014 | 0.005452 ± 0.000035 | 0.000369 ± 0.000007 | 0.001355 ± 0.000006 |
| Same top p      |    85.584 ± 0.086 % |    71.138 ± 0.119 % |    94.665 ± 0.055 % |    91.901 ± 0.072 % |    97.520 ± 0.038 % |    96.031 ± 0.051 % |    98.846 ± 0.026 % |    97.674 ± 0.040 % |
"""

#: The scoreboard's row for a file made with a matrix: its largest calibration, as common imatrix files use.
_IMATRIX_ROW = "WT 10m"


@dataclass(frozen=True)
class PublishedFigure:
    """One quantization type's published figures on another model (`model`), with where they come from.

    mean_kld: mean KL divergence from FP16 (nats); ppl: perplexity of the quantized model on Wikitext-2;
    delta_ppl: its increase over FP16; top1_agreement: share of tokens where both put the same token first
    (0..1, llama.cpp's "Same top p"), None where the source does not give it.
    """

    quant_type: str
    model: str
    mean_kld: float | None
    ppl: float | None
    delta_ppl: float | None
    top1_agreement: float | None
    source_title: str
    source_url: str
    note: str
    imatrix: str | None = None  # the importance matrix the row used ("WT 10m"); None: quantized without one
    for_imatrix: bool = False  # asked for a file made with an importance matrix (`published_for(…, imatrix=True)`)
    size_gib: float | None = None  # the quantized LLaMA-3-8B file's size in the source, GiB
    dataset: str = DATASET

    @property
    def matches_file(self) -> bool:
        """The row was quantized the way the file it is set beside was: both with a matrix, or both without."""
        return (self.imatrix is not None) == self.for_imatrix

    def kld_cell(self) -> str:
        """The mean KLD for a table cell, saying how the source's file was made when that is not plain:
        "0.0282 (imatrix)", "0.1025 (imatrix; none static)", "0.0014 (static; none with imatrix)"."""
        value = "-" if self.mean_kld is None else f"{self.mean_kld:.4f}"
        if self.imatrix is not None:
            return f"{value} (imatrix)" if self.for_imatrix else f"{value} (imatrix; none static)"
        return f"{value} (static; none with imatrix)" if self.for_imatrix else value

    @property
    def provenance(self) -> Provenance:
        """Published elsewhere, for another model: context only, never a decision (storage.provenance)."""
        return Provenance.published(f"{self.model}, {self.source_title}: {self.source_url}")

    def to_json(self) -> dict[str, object]:
        """The `published` object of `workbench diverge --json`: labelled as published elsewhere."""
        return {"kind": PUBLISHED_ELSEWHERE, "quant_type": self.quant_type, "model": self.model,
                "dataset": self.dataset, "mean_kld": self.mean_kld, "ppl": self.ppl, "delta_ppl": self.delta_ppl,
                "top1_agreement": self.top1_agreement, "imatrix": self.imatrix,
                "for_imatrix_file": self.for_imatrix, "matches_file": self.matches_file, "size_gib": self.size_gib,
                "source_title": self.source_title, "source_url": self.source_url, "note": self.note}


def _value(cell: str) -> float:
    """The figure of a cell, not its uncertainty: "6.407115 ±   0.039119" -> 6.407115."""
    return float(cell.split("±")[0].strip().rstrip("%").strip())


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _type_key(name: str) -> str:
    return name.strip().upper()


def _parse() -> dict[tuple[str, bool], PublishedFigure]:
    lines = [line for line in _SCOREBOARD.splitlines() if line.startswith("|")][2:]  # header, separator
    rows: dict[str, list[list[str]]] = {}
    for line in lines:
        cells = _cells(line)
        rows.setdefault(_type_key(cells[0]), []).append(cells)
    comparison = {_cells(line)[0]: _cells(line)[1:] for line in _COMPARISON.splitlines() if line.startswith("|")}
    columns = comparison["Metric"]
    top1: dict[str, float] = {}
    for i, column in enumerate(columns):
        if column.startswith("L3 8b "):
            key = _type_key(column.removeprefix("L3 8b "))
            top1[key] = round(_value(comparison["Same top p"][i]) / 100, 8)  # 97.674 % -> 0.97674
            kld = _value(comparison["Mean KLD"][i])
            plain = next(r for r in rows[key] if r[1] == "None")
            if _value(plain[5]) != kld:  # the two tables of the source disagree: do not guess which is right
                raise AssertionError(f"{key}: scoreboard KLD {plain[5]} != comparison KLD {kld}")
    out: dict[tuple[str, bool], PublishedFigure] = {}
    for key, candidates in rows.items():
        static = next((r for r in candidates if r[1] == "None"), None)
        with_matrix = next((r for r in candidates if r[1] == _IMATRIX_ROW), None)
        for for_imatrix in (False, True):
            row = (with_matrix or static) if for_imatrix else (static or with_matrix)
            if row is None:  # a type listed only with a smaller matrix (none today): no figure rather than a guess
                continue
            imatrix = None if row[1] == "None" else row[1]
            note = NOTE
            if imatrix is not None:
                note += f"; quantized with an importance matrix ({imatrix} Wikitext tokens), as the source lists it"
                if not for_imatrix:
                    note += " (it lists no figure without one)"
            elif for_imatrix:
                note += ("; quantized without an importance matrix: the source lists no figure with one for this type, "
                         "and this file was made with one")
            if key == "F16":
                note += "; the source's F16 figures only measure its own 16-bit storage of the logits"
            out[(key, for_imatrix)] = PublishedFigure(
                quant_type=key, model=MODEL, mean_kld=_value(row[5]), ppl=_value(row[3]), delta_ppl=_value(row[4]),
                top1_agreement=top1.get(key) if imatrix is None else None, source_title=SOURCE_TITLE,
                source_url=SOURCE_URL, note=note, imatrix=imatrix, size_gib=_value(row[2]), for_imatrix=for_imatrix)
    return out


_FIGURES = _parse()
_ALIASES = {"FP16": "F16"}


def published_for(quant_type: str | None, imatrix: bool = False) -> PublishedFigure | None:
    """The published figure for a quantization type ("Q4_K_M", "q4_k_m", or a file name stating one), for a static
    file or, with `imatrix=True`, for one made with an importance matrix (the figure's note says when the source has
    only the other kind); None when the source does not list that type (BF16, F32, TQ1_0, MXFP4 …) or none is given."""
    if not quant_type or not quant_type.strip():
        return None
    key = _type_key(quant_type)
    key = _ALIASES.get(key, key)
    if (key, False) not in _FIGURES and re.search(r"[-._ :/]", quant_type.strip()):
        named = quant_from_name(quant_type.strip())
        key = _ALIASES.get(named, named) if named else key
    return _FIGURES.get((key, bool(imatrix)))


def published_for_row(quant_type: str | None, is_reference: bool = False, label: str | None = None) -> PublishedFigure | None:
    """The figure to show beside a measured row: none for the reference, which every row is measured against; the
    imatrix figure when the row's label says the file was made with one ("Q4_K_M · imatrix (…)")."""
    return None if is_reference else published_for(quant_type, imatrix=is_imatrix_name(label or ""))


def all_published(imatrix: bool = False) -> list[PublishedFigure]:
    """Every type the source lists, for static files (or with `imatrix`, for imatrix files), lowest KLD first."""
    figures = [f for (_, m), f in _FIGURES.items() if m == bool(imatrix)]
    return sorted(figures, key=lambda f: (f.mean_kld is None, f.mean_kld or 0.0))
