"""Changed facts, flagged: numbers, amounts, dates, times, durations and names that a quantization's
output lost, altered or added compared with the reference.

Rule-based, on purpose: a product person needs to see "20 minutes → 2 minutes" at a glance, and
regexes with normalisation are predictable, fast and explainable (docs/facts.md lists what they
catch and what they miss). Pure functions, no I/O.

Extraction (`extract_facts`), in priority order; a span taken by an earlier kind is not read again:
  date      "Monday 3 March", "3rd of March 2025", "March 3rd, 2025", "2025-03-03", "3/4/2025", "Monday"
  money     "$20", "€1,200.50", "£3m", "USD 20", "20 dollars", "50 cents"
  time      "9:30", "9.30am", "2 pm", "14:00", "noon"
  duration  "20 minutes", "twenty minutes", "2 hours", "a 20-minute walk"
  number    "1,200", "2.5" / "2,5", "20%", "20 percent", "3rd", small number words ("twenty")
  name      runs of capitalised words not at a sentence start ("Acme Corp", "Jane Smith"); a run at a
            sentence start counts only with two or more words ("Acme Corp announced…"), after a
            leading stop word ("The", "When", …) is dropped; single words at a sentence start are
            indistinguishable from ordinary capitalised words and are skipped.
Values are normalised so that spelling does not count as a change: "1,200" = "1200", "twenty" =
"20", "2,5" = "2.5", "9.30am" = "9:30", "2pm" = "14:00", "$20" = "20 dollars" = "USD 20",
"90 minutes" = "1.5 hours", "2025-03-03" = "3 March 2025", names compare case-insensitively.

Comparison (`compare_facts`) works on distinct values: a fact is missing when its value appears
nowhere in the output (saying it once is enough), added when it appears nowhere in the reference.

Pairing rule: a missing reference fact and an added output fact are shown as one change
("20 minutes → 2 minutes") when they are of the same kind and share context, tried in this order,
each pass greedy in the reference's order:
  1. the same unit: the word right after a number ("20 people" / "2 people"), the currency of an
     amount, the unit of a duration as written;
  2. a shared neighbouring word: one of the two content words either side ("meeting on Monday" /
     "meeting on Tuesday" share "meeting"); articles and "is/are/was…" do not count;
  3. they are the only missing and the only added fact of that kind.
Everything else is reported as "X → missing" or "missing → Y".

Bounds: only the first MAX_WORDS words (and MAX_CHARS characters) of each text are read, at most
MAX_FACTS distinct facts per text and MAX_CHANGES changes are returned. Every regex has bounded
repetition only ({m,n}, never + or * around a group that can match the same text two ways), so each
start position costs a constant and the whole scan is linear: a hostile 200 KB string is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import islice

MAX_WORDS = 20_000  # words of each text that are examined; later facts are not seen
MAX_CHARS = 200_000  # and characters, for texts with few spaces
MAX_FACTS = 2_000  # distinct facts kept per text
MAX_CHANGES = 200  # changes returned by compare_facts
MAX_MATCHES = 5_000  # matches read per pattern: a text repeating one value 100,000 times costs no more

KINDS = ("number", "money", "date", "time", "duration", "name")

# ---- vocabulary -------------------------------------------------------------------------------
_UNITS_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS_WORDS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
               "ninety": 90}
_WORD_VALUES = {w: i for i, w in enumerate(_UNITS_WORDS)} | _TENS_WORDS
_SMALL = "|".join(sorted(_UNITS_WORDS, key=len, reverse=True))
_TENS = "|".join(_TENS_WORDS)
# "twenty", "twenty-five", "seventeen"; case-insensitive ("Twenty minutes")
_NUM_WORD = rf"(?i:\b(?:(?:{_TENS})(?:[-\s](?:{'|'.join(_UNITS_WORDS[1:10])}))?|{_SMALL})\b)"
# "1,200" / "1,200.50", or "1200" / "2.5" / "2,5" (a comma before 1–2 digits is a decimal comma)
_NUM_DIGITS = r"(?:\d{1,3}(?:,\d{3}){1,5}(?:\.\d{1,6})?(?!\d|[.,]\d)|\d{1,15}(?:[.,]\d{1,6})?(?!\d|[.,]\d))"
_NUM = rf"(?:{_NUM_DIGITS}|{_NUM_WORD})"
_EDGE = r"(?<![\w.,$€£¥])"  # a number does not start inside a word or another number

_MONTHS = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10,
           "nov": 11, "dec": 12}
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b")
_WEEKDAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b"
_ORD = r"(?:st|nd|rd|th)?"

_SCALE = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000, "bn": 1_000_000_000,
          "billion": 1_000_000_000}
_SCALE_RE = r"(?:\s?(?:thousand|million|billion|bn|[kKmM])\b)?"
_CURRENCY = {"$": "USD", "us$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD", "cent": "USD",
             "cents": "USD", "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR", "£": "GBP", "gbp": "GBP",
             "pound": "GBP", "pounds": "GBP", "¥": "JPY", "jpy": "JPY", "yen": "JPY", "chf": "CHF", "a$": "AUD",
             "aud": "AUD", "c$": "CAD", "cad": "CAD"}
_CODE = r"(?:USD|EUR|GBP|JPY|CHF|AUD|CAD)"

_DURATION_SECONDS = {"millisecond": Decimal("0.001"), "ms": Decimal("0.001"), "second": Decimal(1),
                     "sec": Decimal(1), "minute": Decimal(60), "min": Decimal(60), "hour": Decimal(3600),
                     "hr": Decimal(3600), "h": Decimal(3600), "day": Decimal(86400), "week": Decimal(604800)}
_DURATION_UNIT = (r"(?:milliseconds?|ms|seconds?|secs?|minutes?|mins?|hours?|hrs?|h|days?|weeks?|months?|"
                  r"years?|yrs?)\b")

# ---- the patterns, each with bounded repetition only ------------------------------------------
_DATE_PATTERNS = [
    ("iso", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\b")),
    ("numeric", re.compile(r"(?<![\w./-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})(?![\w/-]|\.\d)")),
    ("dm", re.compile(rf"(?:(?P<wd>{_WEEKDAY}),?\s{{1,3}})?(?:the\s{{1,3}})?(?<![\w.,])(?P<d>\d{{1,2}}){_ORD}"
                      rf"(?:\s{{1,3}}of)?\s{{1,3}}(?P<mon>{_MONTH})(?:,?\s{{1,3}}(?P<y>\d{{4}})\b)?")),
    ("md", re.compile(rf"(?:(?P<wd>{_WEEKDAY}),?\s{{1,3}})?(?P<mon>{_MONTH})\s{{1,3}}(?:the\s{{1,3}})?"
                      rf"(?P<d>\d{{1,2}}){_ORD}(?![\w:])(?:,?\s{{1,3}}(?P<y>\d{{4}})\b)?")),
    ("my", re.compile(rf"(?P<mon>{_MONTH})\s{{1,3}}(?P<y>\d{{4}})\b")),
    ("wd", re.compile(rf"\b(?P<wd>{_WEEKDAY})")),
]
_MONEY_PATTERNS = [
    re.compile(rf"(?P<cur>US\$|A\$|C\$|[$€£¥])\s?(?P<n>{_NUM_DIGITS})(?P<scale>{_SCALE_RE})"),
    re.compile(rf"\b(?P<cur>{_CODE})\s?(?P<n>{_NUM_DIGITS})(?P<scale>{_SCALE_RE})"),
    re.compile(rf"{_EDGE}(?P<n>{_NUM})(?P<scale>{_SCALE_RE})\s?(?P<cur>{_CODE}\b|[€£]|(?i:dollars?|euros?|"
               r"pounds?|cents?|yen)\b)"),
]
_AMPM = r"(?P<ampm>(?i:[ap]\.m\.|[ap]m\b))"
_TIME_PATTERNS = [
    re.compile(rf"(?<![\w.,:])(?P<h>\d{{1,2}})[:.](?P<min>\d{{2}})\s?{_AMPM}"),
    re.compile(r"(?<![\w.,:])(?P<h>\d{1,2}):(?P<min>\d{2})(?::\d{2})?(?![\d:])"),
    re.compile(rf"(?<![\w.,:])(?P<h>\d{{1,2}})\s?{_AMPM}"),
    re.compile(r"(?i:\b(?P<word>noon|midnight)\b)"),
]
_DURATION_RE = re.compile(rf"{_EDGE}(?P<n>{_NUM})\s{{0,2}}-?\s?(?P<unit>(?i:{_DURATION_UNIT}))")
_PERCENT_RE = re.compile(rf"{_EDGE}(?P<n>{_NUM})\s?(?:%|(?i:percent|per cent)\b)")
_NUMBER_RE = re.compile(rf"{_EDGE}(?:(?P<n>{_NUM_DIGITS})(?P<ord>(?:st|nd|rd|th)\b)?|{_NUM_WORD})")

_WORD = re.compile(r"[^\W\d_]{1,40}(?:['’-][^\W\d_]{1,40}){0,3}")
_CONTEXT_WORD = re.compile(r"[^\W\d_]{1,30}")
_STOP_CONTEXT = {"the", "a", "an", "and", "or", "of", "to", "is", "are", "was", "were", "be", "been", "it", "its",
                 "this", "that", "in", "for", "with"}
_NAME_STOP = {
    "i'm", "i’m", "i'll", "i’ll", "i'd", "i’d", "i've", "i’ve",  # "I" contracted is never a name
    "a", "an", "the", "i", "it", "its", "this", "that", "these", "those", "we", "you", "he", "she", "they", "my",
    "our", "your", "his", "her", "their", "in", "on", "at", "for", "to", "of", "and", "but", "or", "if", "when",
    "while", "as", "with", "by", "from", "here", "there", "yes", "no", "not", "note", "however", "also", "so",
    "then", "please", "thank", "thanks", "hello", "hi", "dear", "sincerely", "regards", "best", "subject",
    "summary", "answer", "question", "step", "example", "output", "input", "ok", "okay", "after", "before",
    "all", "each", "every", "some", "what", "which", "who", "why", "how", "where", "today", "tomorrow",
    "yesterday", "first", "second", "finally", "next", "because", "although", "since", "sure", "let", "let's",
    "is", "are", "do", "does", "can", "will", "would", "should", "could", "may", "might", "must",
    "january", "february", "march", "april", "june", "july", "august", "september", "october", "november",
    "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
}
_NAME_JOIN = {"of", "de", "van", "von", "der", "den", "da", "di", "du", "la", "le"}
_SENTENCE_END = ".!?:;\n"
_SKIP_BACK = " \t*_#>\"'“‘([•-"


@dataclass(frozen=True)
class Fact:
    """One fact found in a text: `key` is the normalised value two texts are compared on."""

    kind: str
    text: str  # as written
    key: str
    unit: str  # for pairing: the word after a number, a currency, a duration's unit; "" for others
    start: int
    context: frozenset[str]  # content words either side, for pairing


@dataclass(frozen=True)
class FactChange:
    """A fact missing from, altered in, or added to the output; None on a side means absent there."""

    kind: str
    reference: str | None
    output: str | None

    @property
    def status(self) -> str:
        return "added" if self.reference is None else "missing" if self.output is None else "changed"

    def describe(self) -> str:
        return f"{self.reference or 'missing'} → {self.output or 'missing'}"


# ---- normalisation ----------------------------------------------------------------------------
def _decimal(text: str) -> Decimal | None:
    """'1,200' → 1200, '2,5' → 2.5, 'twenty-five' → 25; None when it is not a number we read."""
    t = text.strip().lower()
    if t[:1].isdigit():
        if re.fullmatch(r"\d{1,3}(?:,\d{3}){1,5}(?:\.\d{1,6})?", t):
            t = t.replace(",", "")
        else:
            t = t.replace(",", ".")
        try:
            return Decimal(t)
        except InvalidOperation:
            return None
    parts = re.split(r"[-\s]", t)
    if not all(p in _WORD_VALUES for p in parts):
        return None
    return Decimal(sum(_WORD_VALUES[p] for p in parts))


def _plain(d: Decimal) -> str:
    out = format(d.normalize(), "f")
    return out if "." not in out else out.rstrip("0").rstrip(".")


def _unit_word(word: str) -> str:
    w = word.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def _date_key(kind: str, m: re.Match[str]) -> str | None:
    g = m.groupdict()
    wd = (g.get("wd") or "")[:3].lower()
    if kind == "wd":
        return f"weekday {wd}"
    if kind == "iso":
        y, mon, d = int(g["y"]), int(g["m"]), int(g["d"])
    elif kind == "numeric":  # day/month order is ambiguous: compared as written, not as a calendar day
        y = int(g["y"]) + (2000 if len(g["y"]) == 2 else 0)
        return f"numeric {int(g['a'])}/{int(g['b'])}/{y}"
    else:
        mon = _MONTHS[g["mon"][:3].lower()]
        d = int(g["d"]) if g.get("d") else 0
        y = int(g["y"]) if g.get("y") else 0
    if not (1 <= mon <= 12 and 0 <= d <= 31):
        return None
    return f"{wd} {d} {mon} {y}".strip()


def _time_key(m: re.Match[str]) -> str | None:
    g = m.groupdict()
    if g.get("word"):
        return "12:00" if g["word"].lower() == "noon" else "00:00"
    h, mins = int(g["h"]), int(g.get("min") or 0)
    ampm = (g.get("ampm") or "").lower().replace(".", "")
    if ampm and not 1 <= h <= 12:
        return None
    if ampm == "pm" and h != 12:
        h += 12
    elif ampm == "am" and h == 12:
        h = 0
    if h > 24 or mins > 59:
        return None
    return f"{h:02d}:{mins:02d}"


def _money_key(m: re.Match[str]) -> tuple[str, str] | None:
    value = _decimal(m.group("n"))
    if value is None:
        return None
    scale = (m.group("scale") or "").strip().lower()
    value *= _SCALE.get(scale, 1)
    cur_text = m.group("cur").lower()
    if cur_text.startswith("cent"):
        value /= 100
    cur = _CURRENCY.get(cur_text, cur_text.upper())
    return f"{cur} {_plain(value)}", cur


def _duration_key(m: re.Match[str]) -> tuple[str, str] | None:
    value = _decimal(m.group("n"))
    if value is None:
        return None
    unit = m.group("unit").lower()
    base = unit if unit in _DURATION_SECONDS else unit.rstrip("s")
    base = {"yr": "year"}.get(base, base)
    if base in _DURATION_SECONDS:
        return f"{_plain(value * _DURATION_SECONDS[base])} s", base
    return f"{_plain(value)} {base}", base


# ---- extraction -------------------------------------------------------------------------------
def _matches(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    return islice(pattern.finditer(text), MAX_MATCHES)


def _examined(text: str) -> str:
    """The part of `text` that is read: the first MAX_WORDS words, at most MAX_CHARS characters."""
    text = text[:MAX_CHARS]
    for i, m in enumerate(re.finditer(r"\S{1,100}", text)):
        if i == MAX_WORDS:
            return text[:m.start()]
    return text


def _context(text: str, start: int, end: int) -> frozenset[str]:
    before = [w.lower() for w in _CONTEXT_WORD.findall(text[max(0, start - 80):start])]
    after = [w.lower() for w in _CONTEXT_WORD.findall(text[end:end + 80])]
    before = [w for w in before if w not in _STOP_CONTEXT][-2:]
    after = [w for w in after if w not in _STOP_CONTEXT][:2]
    return frozenset(before + after)


def _next_word(text: str, end: int) -> str:
    m = re.match(r"\s{0,2}([^\W\d_]{1,30})", text[end:end + 40])
    return _unit_word(m.group(1)) if m else ""


def _is_list_marker(text: str, start: int, end: int) -> bool:
    """'1. ' or '2) ' at a line start numbers a list; it is not a fact."""
    line_start = text.rfind("\n", max(0, start - 20), start) + 1
    if line_start == 0 and start > 20:
        return False
    return text[line_start:start].strip() == "" and text[end:end + 2] in (". ", ") ", ".\n", ")\n")


def _at_sentence_start(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and start - i <= 20:
        ch = text[i]
        if ch in _SENTENCE_END:
            return True
        if ch not in _SKIP_BACK:
            return False
        i -= 1
    return i < 0


def _names(text: str, taken: bytearray) -> list[tuple[int, int, str]]:
    """Runs of capitalised words (start, end, text) by the rules in the module docstring."""
    found: list[tuple[int, int, str]] = []
    run: list[re.Match[str]] = []

    def close() -> None:
        while run and run[-1].group().lower() in _NAME_JOIN | _NAME_STOP:
            run.pop()
        if not run:
            return
        first_at_start = _at_sentence_start(text, run[0].start())
        stripped = False
        while run and run[0].group().lower() in _NAME_STOP:
            run.pop(0)
            stripped = True
        while run and run[0].group().lower() in _NAME_JOIN:
            run.pop(0)
        words = [w for w in run if w.group().lower() not in _NAME_JOIN]
        if run and (len(words) >= 2 or not first_at_start or stripped) and len(run[0].group()) > 1:
            s, e = run[0].start(), run[-1].end()
            name = re.sub(r"['’]s$", "", text[s:e])
            found.append((s, s + len(name), name))
        run.clear()

    for m in islice(_WORD.finditer(text), MAX_WORDS):
        word = m.group()
        capital = word[0].isupper() and not any(taken[m.start():m.end()])
        joiner = bool(run) and word.lower() in _NAME_JOIN
        gap_ok = not run or re.fullmatch(r"[ \t]{1,3}", text[run[-1].end():m.start()]) is not None
        if run and not gap_ok:
            close()
        if capital or joiner:
            run.append(m)
        else:
            close()
        if len(found) >= MAX_FACTS:
            break
    close()
    return found


def extract_facts(text: str) -> list[Fact]:
    """Distinct facts of `text` (first occurrence of each value), in text order."""
    text = _examined(text)
    taken = bytearray(len(text))
    raw: list[tuple[str, int, int, str, str]] = []  # kind, start, end, key, unit

    def take(kind: str, m: re.Match[str], key: str | None, unit: str = "") -> None:
        s, e = m.span()
        if key is None or any(taken[s:e]):
            return
        taken[s:e] = b"\x01" * (e - s)
        raw.append((kind, s, e, key, unit))

    for kind, pattern in _DATE_PATTERNS:
        for m in _matches(pattern, text):
            take("date", m, _date_key(kind, m))
    for pattern in _MONEY_PATTERNS:
        for m in _matches(pattern, text):
            money = _money_key(m)
            take("money", m, *(money or (None, "")))
    for pattern in _TIME_PATTERNS:
        for m in _matches(pattern, text):
            take("time", m, _time_key(m))
    for m in _matches(_DURATION_RE, text):
        duration = _duration_key(m)
        take("duration", m, *(duration or (None, "")))
    for m in _matches(_PERCENT_RE, text):
        value = _decimal(m.group("n"))
        take("number", m, None if value is None else f"{_plain(value)}%", "%")
    for m in _matches(_NUMBER_RE, text):
        if _is_list_marker(text, m.start(), m.end()):
            continue
        value = _decimal(m.group("n") or m.group())
        if m.group().lower() == "one":  # "one of the…" is rarely a count; see docs/facts.md
            continue
        number = None if value is None else _plain(value) + (" (ordinal)" if m.group("ord") else "")
        take("number", m, number, _next_word(text, m.end()))
    for s, e, name in _names(text, taken):
        raw.append(("name", s, e, " ".join(name.casefold().split()), ""))

    facts: dict[tuple[str, str], Fact] = {}
    for kind, s, e, key, unit in sorted(raw, key=lambda r: r[1]):
        if (kind, key) not in facts and len(facts) < MAX_FACTS:
            facts[(kind, key)] = Fact(kind, text[s:e], key, unit, s, _context(text, s, e))
    return list(facts.values())


# ---- comparison -------------------------------------------------------------------------------
def _pair(missing: list[Fact], added: list[Fact]) -> dict[int, int]:
    """Pairs (index in missing → index in added) by the three passes in the module docstring."""
    pairs: dict[int, int] = {}
    used: set[int] = set()

    def one_pass(fits: Callable[[Fact, Fact], bool]) -> None:
        for i, r in enumerate(missing):
            if i in pairs:
                continue
            for j, a in enumerate(added):
                if j not in used and a.kind == r.kind and fits(r, a):
                    pairs[i] = j
                    used.add(j)
                    break

    one_pass(lambda r, a: bool(r.unit) and r.unit == a.unit)
    one_pass(lambda r, a: bool(r.context & a.context))
    for kind in KINDS:
        left = [i for i, r in enumerate(missing) if r.kind == kind and i not in pairs]
        right = [j for j, a in enumerate(added) if a.kind == kind and j not in used]
        if len(left) == 1 and len(right) == 1 and sum(r.kind == kind for r in missing) == 1 \
                and sum(a.kind == kind for a in added) == 1:
            pairs[left[0]] = right[0]
            used.add(right[0])
    return pairs


def compare_facts(reference: str, output: str) -> list[FactChange]:
    """Facts of the reference missing or altered in the output, then facts only the output has."""
    ref, out = extract_facts(reference or ""), extract_facts(output or "")
    ref_keys = {(f.kind, f.key) for f in ref}
    out_keys = {(f.kind, f.key) for f in out}
    missing = [f for f in ref if (f.kind, f.key) not in out_keys]
    added = [f for f in out if (f.kind, f.key) not in ref_keys]
    pairs = _pair(missing, added)
    paired_out = set(pairs.values())
    changes = [FactChange(r.kind, r.text, added[pairs[i]].text if i in pairs else None)
               for i, r in enumerate(missing)]
    changes += [FactChange(a.kind, None, a.text) for j, a in enumerate(added) if j not in paired_out]
    return changes[:MAX_CHANGES]
