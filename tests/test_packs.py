"""Task packs: the loaders, their error messages (file, line, reason), the bundled starter pack and examples."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from workbench.quality.packs import (
    CATEGORIES,
    Pack,
    PackError,
    build_passage,
    bundled_dir,
    list_packs,
    load_examples,
    load_pack,
    parse_pack,
)

GOOD_TOML = textwrap.dedent(
    '''\
    name = "Tiny"
    description = "Two cases."

    [[cases]]
    id = "add"
    category = "math"
    prompt = "What is 2+3?"
    max_tokens = 16
    check = { kind = "number", expected = 5 }

    [[cases]]
    id = "name"
    category = "extraction"
    prompt = """Who is it?
    [[cases]]
    Maria Lopez fixed the clock."""
    system = "Be brief."
    check = { kind = "contains", expected = "Maria Lopez" }
    '''
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def pack_error(tmp_path: Path, name: str, text: str) -> PackError:
    path = write(tmp_path, name, text)
    with pytest.raises(PackError) as info:
        load_pack(path)
    err = info.value
    assert str(path) in str(err)  # every message names the file
    return err


# ------------------------------------------------------------------------------------ TOML


def test_load_toml_pack(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path, "tiny.toml", GOOD_TOML))
    assert isinstance(pack, Pack)
    assert (pack.name, pack.description, pack.source) == ("Tiny", "Two cases.", str(tmp_path / "tiny.toml"))
    add, name = pack.cases
    assert (add.id, add.category, add.prompt, add.system, add.max_tokens) == ("add", "math", "What is 2+3?", None, 16)
    assert add.checker_spec == {"kind": "number", "expected": 5}
    assert add.check("2 + 3 = 5").passed and not add.check("6").passed
    assert name.system == "Be brief." and name.max_tokens is None
    assert pack.categories() == ["extraction", "math"]  # canonical order
    assert pack.case("name") is name
    with pytest.raises(KeyError):
        pack.case("nope")


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    text = GOOD_TOML.replace('name = "Tiny"\n', "")
    assert load_pack(write(tmp_path, "my-pack.toml", text)).name == "my-pack"


def test_bad_toml_syntax_names_the_line(tmp_path: Path) -> None:
    err = pack_error(
        tmp_path,
        "bad.toml",
        """\
        name = "Bad"

        [[cases]]
        id = "a"
        category = "math"
        prompt = "unterminated
        check = { kind = "number", expected = 1 }
        """,
    )
    assert err.line == 6
    assert re.search(r"bad\.toml, line 6: invalid TOML: ", str(err))


def test_unknown_category_points_at_that_case(tmp_path: Path) -> None:
    text = GOOD_TOML + textwrap.dedent(
        """
        [[cases]]
        id = "poem"
        category = "poetry"
        prompt = "Write a poem."
        check = { kind = "contains", expected = "rose" }
        """
    )
    err = pack_error(tmp_path, "cat.toml", text)
    # the [[cases]] inside the multi-line prompt above must not throw the count off
    lines = text.splitlines()
    assert lines[err.line - 1] == 'category = "poetry"'
    assert lines[err.line - 2] == 'id = "poem"'
    assert "case 3 ('poem'): unknown category 'poetry'; use one of: summarization" in str(err)


def test_unknown_checker_kind(tmp_path: Path) -> None:
    err = pack_error(
        tmp_path,
        "kind.toml",
        """\
        [[cases]]
        id = "a"
        category = "math"
        prompt = "1+1?"
        check = { kind = "fuzzy", expected = "2" }
        """,
    )
    assert err.line == 5
    assert "unknown checker kind 'fuzzy'" in str(err)


def test_checker_spec_error_in_subtable(tmp_path: Path) -> None:
    err = pack_error(
        tmp_path,
        "sub.toml",
        """\
        [[cases]]
        id = "a"
        category = "code"
        prompt = "Write add."

        [cases.check]
        kind = "regex"
        pattern = "def (add"
        """,
    )
    assert err.line == 6 and "does not compile" in str(err)


def test_missing_prompt_points_at_case_header(tmp_path: Path) -> None:
    err = pack_error(
        tmp_path,
        "noprompt.toml",
        """\
        name = "x"

        [[cases]]
        id = "ok"
        category = "math"
        prompt = "1+1?"
        check = { kind = "number", expected = 2 }

        [[cases]]
        id = "empty"
        category = "math"
        check = { kind = "number", expected = 2 }
        """,
    )
    assert err.line == 9 and "case 2 ('empty'): missing 'prompt'" in str(err)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('id = "a"\ncategory = "math"\nprompt = "x"\n', "missing 'check'"),
        ('category = "math"\nprompt = "x"\ncheck = { kind = "exact", expected = "1" }\n', "missing 'id'"),
        ('id = "a b"\ncategory = "math"\nprompt = "x"\ncheck = { kind = "exact", expected = "1" }\n', "id 'a b' must be"),
        ('id = "a"\ncategory = "math"\nprompt = "  "\ncheck = { kind = "exact", expected = "1" }\n', "non-empty string"),
        ('id = "a"\ncategory = "math"\nprompt = "x"\nmax_tokens = 0\ncheck = { kind = "exact", expected = "1" }\n', "max_tokens"),
        ('id = "a"\ncategory = "math"\nprompt = "x"\npromt = "y"\ncheck = { kind = "exact", expected = "1" }\n', "unknown key 'promt'"),
        ('id = "a"\nprompt = "x"\ncheck = { kind = "exact", expected = "1" }\n', "missing 'category'"),
    ],
)
def test_case_errors(tmp_path: Path, body: str, message: str) -> None:
    err = pack_error(tmp_path, "case.toml", "[[cases]]\n" + body)
    assert message in str(err) and err.line is not None


def test_duplicate_ids(tmp_path: Path) -> None:
    case = '[[cases]]\nid = "a"\ncategory = "math"\nprompt = "x"\ncheck = { kind = "number", expected = 1 }\n'
    err = pack_error(tmp_path, "dupe.toml", case + "\n" + case)
    assert err.line == 8 and "duplicate id 'a'" in str(err)


def test_pack_level_errors(tmp_path: Path) -> None:
    assert "no cases" in str(pack_error(tmp_path, "empty.toml", 'name = "x"\n'))
    err = pack_error(tmp_path, "top.toml", 'nmae = "x"\n[[cases]]\nid="a"\n')
    assert err.line == 1 and "unknown top-level key 'nmae'" in str(err)
    with pytest.raises(PackError, match="file not found"):
        load_pack(tmp_path / "missing.toml")
    with pytest.raises(PackError, match=r"\.toml or \.csv"):
        load_pack(write(tmp_path, "pack.yaml", "x: 1"))


def test_parse_pack_for_uploads() -> None:
    pack = parse_pack(GOOD_TOML, "toml", source="upload.toml")
    assert pack.source == "upload.toml" and len(pack.cases) == 2
    with pytest.raises(PackError, match="upload.toml, line 1"):
        parse_pack("name = ", "toml", source="upload.toml")


# ---------------------------------------------------------------------------- long passages


def test_build_passage_is_deterministic_and_sized() -> None:
    seed = "The sky is blue. Grass grows in spring. Rivers run to the sea! Is it late? Bread is baked daily."
    a = build_passage(seed, "The code is 4817.", 600, 0.5)
    assert a == build_passage(seed, "The code is 4817.", 600, 0.5)
    words = len(a.split())
    assert 600 <= words <= 620
    assert a.count("The code is 4817.") == 1
    position = a.index("4817") / len(a)
    assert 0.4 < position < 0.6
    assert build_passage(seed, "FACT.", 300, 0.0).startswith("FACT.")
    assert build_passage(seed, "FACT.", 300, 1.0).endswith("FACT.")


def test_build_passage_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_passage("", "f", 100, 0.5)
    with pytest.raises(ValueError):
        build_passage("A b.", "f", 100, 1.5)


def test_passage_case(tmp_path: Path) -> None:
    text = """\
    [fillers]
    town = "The town is quiet. The bakery opens early. Boats leave at dawn."

    [[cases]]
    id = "long"
    category = "long-context"
    prompt = "Read this.\\n\\n{passage}\\n\\nWhat is the cat called?"
    passage = { filler = "town", fact = "The cat is called Biscuit.", words = 300, depth = 0.5 }
    check = { kind = "contains", expected = "Biscuit" }
    """
    case = load_pack(write(tmp_path, "long.toml", text)).cases[0]
    assert "{passage}" not in case.prompt
    assert case.prompt.startswith("Read this.\n\nThe town is quiet.")
    assert case.prompt.endswith("What is the cat called?")
    assert "The cat is called Biscuit." in case.prompt and len(case.prompt.split()) > 300


@pytest.mark.parametrize(
    ("passage", "prompt", "message"),
    [
        ('{ filler = "nope", fact = "f", words = 10, depth = 0.5 }', "{passage}", "not found in [fillers]"),
        ('{ filler = "town", fact = "f", words = 10 }', "{passage}", "missing ['depth']"),
        ('{ filler = "town", fact = "f", words = 10, depth = 2 }', "{passage}", "between 0 and 1"),
        ('{ filler = "town", fact = "f", words = 10, depth = 0.5 }', "no placeholder", "no {passage} placeholder"),
    ],
)
def test_passage_errors(tmp_path: Path, passage: str, prompt: str, message: str) -> None:
    text = (
        '[fillers]\ntown = "A b c."\n\n[[cases]]\nid = "l"\ncategory = "long-context"\n'
        f'prompt = "{prompt}"\npassage = {passage}\ncheck = {{ kind = "contains", expected = "x" }}\n'
    )
    err = pack_error(tmp_path, "p.toml", text)
    assert message in str(err) and err.line in (7, 8)


# ------------------------------------------------------------------------------------- CSV


def test_load_csv_pack(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "sheet.csv",
        """\
        id,prompt,category,checker,expected,tolerance
        add,What is 2+3?,math,number,5,
        ,"Price of ""the"" jacket?",extraction,number,"1,250",0.5
        pct,About 200?,math,number,200,1%
        code,Write add,code,regex,def\\s+add,
        js,Give JSON,extraction,json,"{""type"": ""object"", ""required"": [""a""]}",
        all,List,extraction,contains_all,egg | milk,
        multi,"Line one
        line two",summarization,contains,two,
        """,
    )
    pack = load_pack(path)
    assert pack.name == "sheet" and len(pack.cases) == 7
    add, price, pct, code, js, all_, multi = pack.cases
    assert add.check("5").passed
    assert price.id == "row3" and price.prompt == 'Price of "the" jacket?'
    assert price.checker_spec == {"kind": "number", "expected": "1,250", "abs_tol": 0.5}
    assert price.check("1250.5").passed
    assert pct.checker_spec["rel_tol"] == pytest.approx(0.01) and pct.check("202").passed
    assert code.check("def add(a, b):").passed
    assert js.check('{"a": 1}').passed and not js.check('{"b": 1}').passed
    assert all_.checker_spec["expected"] == ["egg", "milk"]
    assert multi.prompt == "Line one\nline two"


def test_csv_bad_row_names_its_line(tmp_path: Path) -> None:
    err = pack_error(
        tmp_path,
        "bad.csv",
        """\
        prompt,category,checker,expected
        "Multi
        line",math,number,5
        What is 1+1?,algebra,number,2
        """,
    )
    assert err.line == 4 and "unknown category 'algebra'" in str(err)
    assert str(err).startswith(f"{tmp_path / 'bad.csv'}, line 4: ")


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("x,math,fuzzy,1\n", 2, "unknown checker kind 'fuzzy'"),
        ("x,math,number,many\n", 2, "'expected' must be a number"),
        (",math,number,1\n", 2, "missing 'prompt'"),
        ("x,math,number\n", 2, "row has 3 fields but the header has 4"),
        ("x,math,regex,(\n", 2, "does not compile"),
        ("ok,math,number,1\nx,math,json,{not json}\n", 3, "must be a JSON schema or empty"),
        ("x,math,contains,1,0.5\n", 2, "'tolerance' only applies to the number checker"),
        ("x,math,,1\n", 2, "empty 'checker'"),
    ],
)
def test_csv_row_errors(tmp_path: Path, rows: str, line: int, message: str) -> None:
    header = "prompt,category,checker,expected" + (",tolerance" if "0.5" in rows else "") + "\n"
    err = pack_error(tmp_path, "rows.csv", header + rows)
    assert err.line == line and message in str(err)


def test_csv_header_errors(tmp_path: Path) -> None:
    err = pack_error(tmp_path, "h.csv", "prompt;category;checker;expected\nx;math;number;1\n")
    assert err.line == 1 and "missing column(s)" in str(err) and "comma-separated" in str(err)
    err = pack_error(tmp_path, "u.csv", "prompt,category,checker,expected,tolerence\n")
    assert err.line == 1 and "unknown column(s) tolerence" in str(err)
    assert "no rows" in str(pack_error(tmp_path, "n.csv", "prompt,category,checker,expected\n"))
    assert "empty CSV" in str(pack_error(tmp_path, "e.csv", ""))


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffprompt,category,checker,expected\nx,math,number,1\n", encoding="utf-8")
    assert load_pack(path).cases[0].id == "row2"


# --------------------------------------------------------------------------- bundled packs


def test_list_packs(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD_TOML)
    write(tmp_path, "b.csv", "prompt,category,checker,expected\n")
    write(tmp_path, "examples.toml", '[[examples]]\ncategory = "math"\ntitle = "t"\nprompt = "p"\n')
    write(tmp_path, "notes.txt", "x")
    assert [p.name for p in list_packs(tmp_path)] == ["a.toml", "b.csv"]
    assert list_packs(tmp_path / "missing") == []
    assert bundled_dir() / "starter.toml" in list_packs()
    assert bundled_dir() / "examples.toml" not in list_packs()


def test_a_cases_header_quoted_in_a_prompt_does_not_make_a_pack(tmp_path: Path) -> None:
    """list_packs and the pack's own line finder read `[[cases]]` by one rule (files.text_formats): a header
    inside a triple-quoted string is text. list_packs used to match it line by line, strings included."""
    write(tmp_path, "examples.toml", '[[examples]]\ncategory = "math"\ntitle = "t"\nprompt = """\n[[cases]]\n"""\n')
    assert list_packs(tmp_path) == []


def test_starter_pack() -> None:
    pack = load_pack(bundled_dir() / "starter.toml")
    assert len(pack.cases) >= 60
    assert pack.categories() == list(CATEGORIES)
    for category, cases in pack.by_category().items():
        assert len(cases) >= 7, category
    ids = [c.id for c in pack.cases]
    assert len(ids) == len(set(ids))
    for case in pack.cases:
        assert case.max_tokens is not None and case.max_tokens <= 200, case.id


def test_starter_long_context_fits_4096_tokens() -> None:
    """1,500-2,800 words of passage: about 1,800-3,300 SmolLM2 tokens, leaving room for the answer."""
    pack = load_pack(bundled_dir() / "starter.toml")
    for case in pack.by_category()["long-context"]:
        words = len(case.prompt.split())
        assert 1500 <= words <= 2900, (case.id, words)
        assert len(case.prompt) < 16500, case.id  # measured: ~1.17 SmolLM2 tokens a word, 4.6 characters a token


def test_starter_checks_accept_a_model_answer() -> None:
    """A sample of plausible correct answers passes and a wrong one fails: the checks are not broken."""
    pack = load_pack(bundled_dir() / "starter.toml")
    good = {
        "math-add-small": "2 + 3 = 5",
        "math-subtract-negative": "The answer is -7.",
        "math-apples-multistep": "3 x 12 = 36. 36 - 10 - 2 = 24.\nAnswer: 24",
        "code-def-add": "```python\ndef add(a, b):\n    return a + b\n```",
        "code-add-returns-sum": "def add(a, b):\n    return a + b",
        "code-factorial-recursive": "def factorial(n):\n    if n <= 1:\n        return 1\n    return n * factorial(n - 1)",
        "code-list-comprehension": "squares = [x**2 for x in range(1, 11)]",
        "code-class-dog": 'class Dog:\n    def bark(self):\n        return "Woof"',
        "cls-sentiment-positive": "Positive",
        "cls-spam": "Spam",
        "cls-not-spam": "Not spam",
        "ext-json-person": '```json\n{"name": "Tomasz Novak", "age": 34, "city": "Krakow"}\n```',
        "ext-json-order-items": '[{"item": "notebook", "quantity": 3}, {"item": "blue pen", "quantity": 2},'
        ' {"item": "stapler", "quantity": 1}]',
        "ext-meeting-date": "March 14",
        "sum-three-bullets": "- Opens at 8 a.m.\n- New student reading room\n- Free cards for over-65s",
        "sum-title-eight-words": "Record 512 kg Pumpkin Wins Autumn Fair",
        "rsn-shortest": "Cara",
        "rsn-arrival-time": "10:15",
        "long-arithmetic-on-fact": "27 + 9 = 36",
        "cls-topic-sports": "Sports, not politics.",
        "cls-intent-cancel": "Cancel (they want to cancel the booking)",
        "rsn-syllogism-yes": "Yes. All bloops are lazzies; there is no exception.",
        "rsn-dry-ground-no": "The answer is: No.",
        "rsn-weekday": "Tuesday, Wednesday, Thursday. So it will be Thursday.",
        "rsn-turns-direction": "First you face east, then south.",
        "rsn-odd-one-out": "Carrot, because the others are fruits like apples.",
    }
    bad = {
        "cls-spam": "Not spam",
        "cls-sentiment-positive": "Negative or positive",  # echo of the options
        "ext-meeting-date": "March 3",
        "sum-three-bullets": "Here is a summary:\n- a\n- b\n- c\n- d",
        "sum-title-eight-words": "A very long title that goes on and on for many words",
        "rsn-shortest": "Anna",
        "ext-json-person": '{"name": "Tomasz Novak", "age": 43, "city": "Krakow"}',
        "cls-not-spam": "This message is spam, not spam... not spam.",
        "cls-topic-technology": "The headline is about sports, politics, technology or cooking.",  # echo
        "cls-urgency-high": "Low, medium or high: high.",
        "rsn-syllogism-yes": "No, yes.",
        "rsn-weekday": "Thursday. Today is Monday, so in three days it is Friday.",
        "rsn-turns-direction": "South. No wait, west.",
    }
    for case_id, output in good.items():
        assert pack.case(case_id).check(output).passed, case_id
    for case_id, output in bad.items():
        assert not pack.case(case_id).check(output).passed, case_id


# --------------------------------------------------------------------------------- examples


def test_bundled_examples() -> None:
    examples = load_examples()
    assert set(examples) >= {"summarization", "extraction", "classification", "math", "code", "reasoning"}
    for category, items in examples.items():
        assert 2 <= len(items) <= 3, category
        for ex in items:
            assert ex.category == category and ex.title and ex.prompt


def test_examples_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "ex.toml", '[[examples]]\ncategory = "math"\ntitle = "t"\nprompt = "p"\n\n'
                 '[[examples]]\ncategory = "poems"\ntitle = "t"\nprompt = "p"\n')
    with pytest.raises(PackError, match=r"ex\.toml, line 6: example 2: category 'poems'"):
        load_examples(path)
    with pytest.raises(PackError, match="no examples"):
        load_examples(write(tmp_path, "none.toml", 'x = 1\n'))


# ---- hostile pack files (issue 24): the prompt sets' bounded readers protect packs too ------------------------
@pytest.mark.parametrize(
    ("fmt", "text", "line", "message"),
    [
        ("toml", GOOD_TOML + "x = " + "[" * 3000 + "]" * 3000 + "\n", None, "nested deeper than 20"),
        ("toml", GOOD_TOML + "x = " + "{a=" * 2000 + "1" + "}" * 2000 + "\n", None, "nested deeper than 20"),
        ("toml", GOOD_TOML + "n = " + "1" * 5000 + "\n", None, "5000 digits long"),
        ("csv", 'prompt,category,checker,expected\nWhat is 2+3?,math,number,5\n"What is 1+1?,math,number,2\n'
                "Name a colour,math,number,3\n", 3, "never closed"),
        ("csv", 'prompt,category,checker,expected\n"What is" 2+3?,math,number,5\n', 2, "after a closing quote"),
    ],
)
def test_hostile_pack_files_are_a_pack_error_naming_the_line(fmt: str, text: str, line: int | None,
                                                            message: str) -> None:
    with pytest.raises(PackError) as caught:
        parse_pack(text, fmt, source="up." + fmt)
    expected = line if line is not None else len(GOOD_TOML.splitlines()) + 1  # the line that nests or overflows
    assert caught.value.line == expected and message in str(caught.value)
