"""Bytes, counts and "once/N times" have one owner (core.text_units); the copies it replaced disagreed on three
points, each settled here for every place at once."""

from __future__ import annotations

from types import SimpleNamespace

from workbench.cli.main import fmt_bytes as cli_bytes
from workbench.core.text_units import (
    GiB,
    MiB,
    bytes_in_words,
    counted,
    format_bytes,
    format_gb,
    format_gib,
    format_mib,
    plural,
    times,
)
from workbench.engine.memory_budget import breakdown


def test_each_place_keeps_its_look() -> None:
    assert format_bytes(310 * MiB) == "310 MiB" and format_bytes(int(4.62 * GiB)) == "4.62 GiB"  # the app
    assert format_bytes(None) == "—" and format_bytes("12") == "—" and format_bytes(True) == "—"
    assert cli_bytes(int(310.4 * MiB)) == "310.4 MiB" and cli_bytes(None) == "-"  # the CLI's tables
    assert bytes_in_words(int(4.62 * GiB)) == "4.6 GiB" and bytes_in_words(310 * MiB) == "310 MiB"  # sentences
    assert format_gib(16 * GiB, 0) == "16 GiB" and format_gib(int(7.6 * GiB)) == "7.6 GiB"
    assert format_gb(4_920_000_000) == "4.92 GB" and format_gb(70e9, 1) == "70.0 GB"  # disks and downloads
    assert format_mib(32 * MiB) == "32 MiB" and format_mib(int(44.7 * MiB), 1) == "44.7 MiB"


def test_where_the_copies_disagreed() -> None:
    # 1. Thousands: the app and `targets fit` wrote "1,010 MiB", the CLI tables, the run report, the recommendation
    #    and the memory budget "1010 MiB". Grouped everywhere now.
    assert format_bytes(1010 * MiB) == bytes_in_words(1010 * MiB) == "1,010 MiB"
    assert cli_bytes(1010 * MiB) == "1,010.0 MiB"
    # 2. A negative amount: by size (as the recommendation did), not "-2,048 MiB" for minus two GiB.
    assert format_bytes(-2 * GiB) == "-2.00 GiB" and bytes_in_words(-2 * GiB) == "-2.0 GiB"
    # 3. NaN or infinity from an imported run: "nan GiB" in the report before; the missing mark now.
    assert format_bytes(float("nan"), missing="-") == "-" and format_bytes(float("inf")) == "—"


def test_the_memory_budget_message_groups_thousands_like_the_fit_sentence() -> None:
    """engine.memory_budget's error message wrote "1010 MiB" where decide.targets' fit sentence wrote "1,010 MiB"."""
    prediction = SimpleNamespace(weights_bytes=1010 * MiB, kv_bytes=64 * MiB, compute_bytes=2 * GiB, overhead_bytes=0,
                                 ram_bytes=1010 * MiB + 64 * MiB + 2 * GiB, vram_bytes=0)
    assert breakdown(prediction) == "weights 1,010 MiB + KV cache 64 MiB + compute 2.0 GiB + runtime 0 MiB"


def test_counts() -> None:
    assert counted(1, "word") == "1 word" and counted(0, "fact") == "0 facts" and counted(3, "decode window") == "3 decode windows"
    assert plural(2, "point") == "points" and plural(1, "point") == "point"
    assert times(1) == "once" and times(2) == "2 times"
