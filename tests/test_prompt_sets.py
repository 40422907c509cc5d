"""Prompt sets (workbench.runs.prompt_sets): every way in gives the same prompts; a bad row refuses the whole set
with its line number (nothing half-imported); the limits hold against oversized or hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.runs import prompt_sets as ps
from workbench.runs.prompt_sets import PromptSetError, SetPrompt, parse_prompt_set, parse_prompt_set_bytes

ROOT = Path(__file__).resolve().parents[1]


def test_pasted_lines_skip_blank_lines_and_comments() -> None:
    s = parse_prompt_set("# our prompts\n\nWhat is 2+3?\n   \n  Summarize: the bridge closes 3 March.  \n# done\n",
                         "lines", "pasted")
    assert s.name == "pasted"
    assert [p.prompt for p in s.prompts] == ["What is 2+3?", "Summarize: the bridge closes 3 March."]


def test_csv_with_optional_columns_and_a_multi_line_prompt() -> None:
    text = ('id,Prompt,category,system,owner\n'
            'a,"Summarize:\nthe bridge closes on 3 March.",summary,Be brief.,ann\n'
            'b,Extract the total from: €47.60,,,\n')
    s = parse_prompt_set(text, "csv")
    assert s.prompts == [SetPrompt("Summarize:\nthe bridge closes on 3 March.", "Be brief.", "summary", "a"),
                         SetPrompt("Extract the total from: €47.60", None, None, "b")]


def test_toml_prompts_tables_and_the_files_own_name() -> None:
    text = '''name = "Ours"
[[prompts]]
prompt = """Reply to:
"Where is my order #48213?\""""
category = "support"

[[prompts]]
id = "two"
prompt = "Second"
system = "Be brief."
'''
    s = parse_prompt_set(text, "toml")
    assert s.name == "Ours"
    assert s.prompts[0] == SetPrompt('Reply to:\n"Where is my order #48213?"', category="support")
    assert s.prompts[1] == SetPrompt("Second", "Be brief.", None, "two")
    assert parse_prompt_set(text, "toml", "chosen").name == "chosen"


def test_jsonl_objects() -> None:
    lines = [json.dumps({"prompt": "A", "id": 7, "extra": [1, 2]}), "", json.dumps({"prompt": "B", "system": "S"})]
    s = parse_prompt_set("\n".join(lines), "jsonl")
    assert s.prompts == [SetPrompt("A", id="7"), SetPrompt("B", "S")]


def test_the_task_pack_and_examples_formats_are_read_checks_kept_passages_left_out_with_a_note() -> None:
    starter = ps.load_prompt_set(ROOT / "prompts" / "starter.toml")
    assert starter.name == "Starter"
    assert len(starter) > 30
    assert all(p.id and p.category for p in starter.prompts)
    assert all(p.check and "kind" in p.check for p in starter.prompts)  # optional checker specs come along
    assert all("{passage}" not in p.prompt for p in starter.prompts)
    assert starter.notes and all("passage" in n for n in starter.notes)
    examples = ps.load_prompt_set(ROOT / "prompts" / "examples.toml")
    assert len(examples) >= 10 and examples.prompts[0].category == "summarization"


def test_bundled_sets_are_listed_and_carry_facts_worth_checking() -> None:
    sets = ps.list_bundled_sets()
    assert sets, "prompts/sets/ ships at least one set"
    product = next(s for s in sets if s.name == "Product support")
    assert len(product) == 10
    assert len({p.id for p in product.prompts}) == 10
    assert sum(any(ch.isdigit() for ch in p.prompt) for p in product.prompts) >= 8
    assert all(s.prompts == ps.load_prompt_set(p).prompts for s, p in
               zip(sets, sorted(ps.bundled_sets_dir().iterdir()), strict=False))


@pytest.mark.parametrize("fmt, text, line, reason", [
    ("jsonl", '{"prompt": "ok"}\n\n{"promt": "typo"}\n', 3, 'no "prompt" field'),
    ("jsonl", '{"prompt": "ok"}\n[1, 2]\n', 2, "not a JSON object"),
    ("jsonl", '{"prompt": "ok"}\n{"prompt": "x",\n', 2, "not JSON"),
    ("jsonl", '{"prompt": 5}\n', 1, '"prompt" must be text'),
    ("jsonl", '{"prompt": "  "}\n', 1, "empty prompt"),
    ("csv", "prompt,id\nA,x\nB,x\n", 3, 'id "x" is used twice (first on line 2)'),
    ("csv", "id,category\n1,math\n", 1, 'no "prompt" column'),
    ("csv", "id,prompt\n1,A\n2\n", 3, 'no "prompt" field'),
    ("toml", '[[prompts]]\nprompt = "A"\n\n[[prompts]]\nsystem = "S"\n', 4, 'no "prompt" field'),
    ("toml", '[[prompts]]\nprompt = "A"\nprompt = "B"\n', 3, "invalid TOML"),
    ("toml", 'title = "no tables"\n', None, "no [[prompts]] tables"),
])
def test_a_bad_row_is_named_by_its_line(fmt: str, text: str, line: int | None, reason: str) -> None:
    with pytest.raises(PromptSetError) as caught:
        parse_prompt_set(text, fmt)
    assert caught.value.line == line
    assert reason in str(caught.value)
    if line is not None:
        assert str(caught.value).startswith(f"line {line}: ")


def test_nothing_is_half_imported_and_every_bad_row_is_listed() -> None:
    good = [json.dumps({"prompt": f"prompt {i}"}) for i in range(6)]
    rows = good[:2] + ['{"text": "no prompt"}'] + good[2:4] + ["not json"] + good[4:]
    with pytest.raises(PromptSetError) as caught:
        parse_prompt_set("\n".join(rows), "jsonl")
    assert [line for line, _ in caught.value.errors] == [3, 6]
    assert str(caught.value).startswith('line 3: no "prompt" field; line 6: not JSON')


def test_limits() -> None:
    with pytest.raises(PromptSetError, match="more than the 500"):
        parse_prompt_set("\n".join(f"prompt {i}" for i in range(501)), "lines")
    assert len(parse_prompt_set("\n".join(f"prompt {i}" for i in range(500)), "lines")) == 500
    with pytest.raises(PromptSetError, match=r"line 2: \"prompt\" is 20001 characters"):
        parse_prompt_set("short\n" + "x" * 20_001, "lines")
    with pytest.raises(PromptSetError, match="larger than 2 MiB"):
        parse_prompt_set_bytes(b"x\n" * (ps.MAX_BYTES // 2 + 1), "lines")
    deep = '{"prompt": "A", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(PromptSetError, match="line 1: nested deeper than 20 levels"):
        parse_prompt_set(deep, "jsonl")
    with pytest.raises(PromptSetError, match="line 2: not UTF-8"):
        parse_prompt_set_bytes(b"fine\n\xff\xfe bad\n", "lines")
    with pytest.raises(PromptSetError, match="no prompts"):
        parse_prompt_set("# only a comment\n\n", "lines")


def test_a_file_is_read_by_its_suffix(tmp_path: Path) -> None:
    path = tmp_path / "ours.csv"
    path.write_text("prompt\nHello\n", encoding="utf-8")
    assert ps.load_prompt_set(path).name == "ours"
    with pytest.raises(PromptSetError, match="use a .txt, .csv, .toml or .jsonl file"):
        ps.load_prompt_set(tmp_path / "ours.xlsx")


def test_a_set_prompt_survives_the_stored_shape() -> None:
    p = SetPrompt("A", system="S", check={"kind": "contains", "expected": "x"})
    assert p.to_dict() == {"prompt": "A", "system": "S", "check": {"kind": "contains", "expected": "x"}}
    assert SetPrompt.from_dict(p.to_dict()) == p


# ---- hostile files (issue 24): each refused with its line, never a traceback or a quietly shorter set ----------
@pytest.mark.parametrize("text, line, reason", [
    # a stray quote opened a field that swallowed the rest: 4 rows became 2 prompts
    ('prompt\nWhat is 2+2?\n"Name a colour\nSummarize the memo.\nTranslate "chat" to English.\n', 3, "quote"),
    ('prompt,category\n"What is 2+2" please,math\nName a colour,x\n', 2, "after a closing quote"),
])
def test_a_stray_quote_in_csv_is_refused_with_its_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(PromptSetError) as caught:
        parse_prompt_set(text, "csv")
    assert caught.value.line == line and reason in str(caught.value)


@pytest.mark.parametrize("text, line, reason", [
    ('[[prompts]]\nprompt = "A"\nx = ' + "[" * 3000 + "]" * 3000 + "\n", 3, "nested deeper than 20"),
    ('[[prompts]]\nprompt = "A"\nx = ' + "{a=" * 2000 + "1" + "}" * 2000 + "\n", 3, "nested deeper than 20"),
    ('[[prompts]]\nprompt = "A"\nn = ' + "1" * 5000 + "\n", 3, "5000 digits long"),
])
def test_hostile_toml_is_a_prompt_set_error_naming_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(PromptSetError) as caught:
        parse_prompt_set(text, "toml")
    assert caught.value.line == line and reason in str(caught.value)


def test_toml_nested_by_dotted_keys_is_refused_too() -> None:
    text = '[[prompts]]\nprompt = "A"\n' + ".".join(["k"] * 3000) + " = 1\n"
    with pytest.raises(PromptSetError, match="nested deeper than 20"):
        parse_prompt_set(text, "toml")


def test_a_lone_surrogate_in_jsonl_is_refused_with_its_line() -> None:
    text = '{"prompt": "fine"}\n{"prompt": "bad \\ud800 text"}\n'
    with pytest.raises(PromptSetError) as caught:
        parse_prompt_set(text, "jsonl")
    assert caught.value.line == 2 and "not valid text" in str(caught.value)


def test_jsonl_and_pasted_lines_split_on_newlines_only() -> None:
    # U+2028, U+0085 and \x1c are valid inside a JSON string and inside a prompt: str.splitlines splits on them
    text = json.dumps({"prompt": "one\u2028two\x85three\x1cfour"}, ensure_ascii=False) + "\n"
    assert [p.prompt for p in parse_prompt_set(text, "jsonl").prompts] == ["one\u2028two\x85three\x1cfour"]
    pasted = parse_prompt_set("\ufeffFirst prompt\u2028still first\r\nSecond\n", "lines")
    assert [p.prompt for p in pasted.prompts] == ["First prompt\u2028still first", "Second"]


def test_an_upload_and_a_file_are_named_by_one_rule(tmp_path: Path) -> None:
    """The Sets page's upload and the CLI's file go through ps.parse_upload: the file's own TOML name, else its
    name without the suffix."""
    data = b"What is 2+3?\nName a colour.\n"
    assert ps.parse_upload(data, "my.set.txt").name == "my.set"
    (tmp_path / "my.set.txt").write_bytes(data)
    assert ps.load_prompt_set(tmp_path / "my.set.txt") == ps.parse_upload(data, "my.set.txt")
    assert ps.load_prompt_set(tmp_path / "my.set.txt", name="chosen").name == "chosen"
    own = b'name = "Ours"\n[[prompts]]\nprompt = "A"\n'
    assert ps.parse_upload(own, "file.toml").name == "Ours"
    with pytest.raises(PromptSetError, match="use a .txt"):
        ps.parse_upload(data, "prompts.pdf")
