"""Checkers: every kind, the edge cases models produce, and clear errors for bad specs."""

from __future__ import annotations

import re

import pytest

from workbench.quality.checkers import (
    CHECKER_KINDS,
    Verdict,
    build_checker,
    describe_spec,
    extract_answer_number,
    extract_json,
    extract_numbers,
    validate_schema,
)


def check(spec: dict, output: str) -> Verdict:
    return build_checker(spec).check(output)


def test_all_kinds_are_known() -> None:
    assert set(CHECKER_KINDS) == {"exact", "contains", "regex", "number", "json", "contains_all", "contains_none"}


def test_verdict_is_truthy_when_passed() -> None:
    assert Verdict(True, "ok") and not Verdict(False, "no")


# ------------------------------------------------------------------------------------ exact


def test_exact_strips_and_collapses_whitespace() -> None:
    assert check({"kind": "exact", "expected": "Paris"}, "  Paris \n").passed
    assert check({"kind": "exact", "expected": "New York"}, "New   York").passed


def test_exact_is_case_sensitive_by_default() -> None:
    v = check({"kind": "exact", "expected": "Paris"}, "paris")
    assert not v.passed and "'Paris'" in v.detail and "'paris'" in v.detail


def test_exact_ignore_case() -> None:
    assert check({"kind": "exact", "expected": "Paris", "ignore_case": True}, "PARIS").passed


def test_exact_rejects_extra_words() -> None:
    assert not check({"kind": "exact", "expected": "Paris"}, "Paris.").passed
    assert not check({"kind": "exact", "expected": "Paris"}, "The answer is Paris").passed


# --------------------------------------------------------------------------------- contains


def test_contains_is_case_insensitive_by_default() -> None:
    assert check({"kind": "contains", "expected": "maria lopez"}, "The name is Maria Lopez.").passed


def test_contains_case_sensitive_option() -> None:
    assert not check({"kind": "contains", "expected": "maria", "ignore_case": False}, "Maria").passed


def test_contains_failure_detail_names_the_text() -> None:
    v = check({"kind": "contains", "expected": "Biscuit"}, "I do not know.")
    assert not v.passed and "'Biscuit' not found" in v.detail


def test_contains_all_and_none() -> None:
    spec = {"kind": "contains_all", "expected": ["egg", "milk", "flour"]}
    assert check(spec, "Eggs, MILK and flour").passed
    v = check(spec, "eggs and flour")
    assert not v.passed and "'milk'" in v.detail and "missing 1 of 3" in v.detail
    none = {"kind": "contains_none", "expected": ["$", "12,000"]}
    assert check(none, "The client approved the design.").passed
    v = check(none, "It costs $12,000.")
    assert not v.passed and "'$'" in v.detail and "'12,000'" in v.detail


def test_contains_all_case_sensitive() -> None:
    assert not check({"kind": "contains_all", "expected": ["Milk"], "ignore_case": False}, "milk").passed


# ------------------------------------------------------------------------------------ regex


def test_regex_searches_anywhere() -> None:
    spec = {"kind": "regex", "pattern": r"def\s+add\s*\("}
    assert check(spec, "Sure!\n```python\ndef add(a, b):\n    return a + b\n```").passed
    assert not check(spec, "def subtract(a, b): ...").passed


@pytest.mark.parametrize("flags", ["i", "I", "IGNORECASE", ["IGNORECASE"], ["re.IGNORECASE"], "ignorecase"])
def test_regex_ignorecase_spellings(flags) -> None:
    assert check({"kind": "regex", "pattern": "positive", "flags": flags}, "POSITIVE").passed


def test_regex_is_case_sensitive_without_flags() -> None:
    assert not check({"kind": "regex", "pattern": "positive"}, "POSITIVE").passed


def test_regex_multiline_and_dotall() -> None:
    text = "intro\nAnswer: yes\nmore"
    assert not check({"kind": "regex", "pattern": r"^Answer: yes$"}, text).passed
    assert check({"kind": "regex", "pattern": r"^Answer: yes$", "flags": "m"}, text).passed
    assert not check({"kind": "regex", "pattern": r"intro.*more"}, text).passed
    assert check({"kind": "regex", "pattern": r"intro.*more", "flags": ["DOTALL"]}, text).passed
    assert build_checker({"kind": "regex", "pattern": "x", "flags": "ims"}).flags == re.I | re.M | re.S
    assert build_checker({"kind": "regex", "pattern": "x", "flags": "MULTILINE|DOTALL"}).flags == re.M | re.S


def test_regex_hedging_pattern_used_by_the_starter_pack() -> None:
    spec = {"kind": "regex", "pattern": r"^(?!.*\bnegative\b).*\bpositive\b", "flags": "is"}
    assert check(spec, "Positive").passed
    assert check(spec, "The sentiment is\npositive.").passed
    assert not check(spec, "positive or negative").passed
    assert not check(spec, "Negative").passed


def test_regex_bad_pattern_and_flags_are_value_errors() -> None:
    with pytest.raises(ValueError, match="does not compile"):
        build_checker({"kind": "regex", "pattern": "def (add"})
    with pytest.raises(ValueError, match="unknown flag 'UNICORN'"):
        build_checker({"kind": "regex", "pattern": "a", "flags": ["UNICORN"]})
    with pytest.raises(ValueError, match="'flags' must be"):
        build_checker({"kind": "regex", "pattern": "a", "flags": 2})


# ----------------------------------------------------------------------------------- number


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("1,234 and -5 and 3.5", [1234.0, -5.0, 3.5]),
        ("1,234,567.89", [1234567.89]),
        ("1,2,3", [1.0, 2.0, 3.0]),
        ("$89.50.", [89.5]),
        ("\u22123.5", [-3.5]),  # Unicode minus
        ("x=-5", [-5.0]),
        ("10-4", [10.0, 4.0]),  # subtraction, not -4
        ("10 -4", [10.0, 4.0]),
        (".5 and 2e3", [0.5, 2000.0]),
        ("Q4_K_M and v1.2.3", []),  # digits glued to identifiers are not answers
        ("50% of it", [50.0]),
        ("no numbers here", []),
    ],
)
def test_extract_numbers(text: str, numbers: list[float]) -> None:
    assert extract_numbers(text) == numbers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5.0),
        ("2 + 3 = 5", 5.0),
        ("First 3 boxes of 12 is 36, minus 12 leaves 24", 24.0),  # last number without a marker
        ("The answer is 12. Because 3 times 4 is 12, not 13.", 12.0),  # marker wins over last number
        ("Answer: 24\n\nExplanation: 36 - 12 = 24, not 30", 24.0),
        ("Working... Final answer: -7", -7.0),
        ("The answer is 2 + 3 = 5.", 5.0),  # worked equation after the marker
        ("The answer is 5 because x = 3", 5.0),  # not an equation: words before "="
        ("#### 1,000", 1000.0),
        ("\\boxed{42} is it", 42.0),
        ("**Answer:** 7 apples", 7.0),
        ("The answer is 5.5.", 5.5),
    ],
)
def test_extract_answer_number(text: str, value: float) -> None:
    got, how = extract_answer_number(text)
    assert got == value, how


def test_extract_answer_number_none() -> None:
    assert extract_answer_number("I cannot say.") == (None, "no number in the output")


def test_number_with_commas_negative_and_decimals() -> None:
    assert check({"kind": "number", "expected": 4000}, "1,250 + 2,750 = 4,000").passed
    assert check({"kind": "number", "expected": -7}, "5 - 12 = -7").passed
    assert check({"kind": "number", "expected": 4.5}, "It is 4.5.").passed
    assert check({"kind": "number", "expected": "1,234"}, "1234").passed  # expected as text (CSV)


def test_number_exact_by_default() -> None:
    v = check({"kind": "number", "expected": 10}, "10.01")
    assert not v.passed and "10.01" in v.detail and "does not match 10" in v.detail


def test_number_absolute_tolerance_is_inclusive() -> None:
    spec = {"kind": "number", "expected": 10, "abs_tol": 0.5}
    assert check(spec, "10.5").passed
    assert check(spec, "9.5").passed
    assert not check(spec, "10.51").passed
    assert not check(spec, "9.49").passed
    assert check({"kind": "number", "expected": 10, "tolerance": 0.5}, "10.5").passed  # alias


def test_number_relative_tolerance_is_inclusive() -> None:
    spec = {"kind": "number", "expected": 200, "rel_tol": 0.01}
    assert check(spec, "202").passed
    assert check(spec, "198").passed
    assert not check(spec, "202.01").passed


def test_number_float_noise_does_not_flip() -> None:
    assert check({"kind": "number", "expected": 0.3}, "0.30000000000000004").passed


def test_number_without_a_number_fails_clearly() -> None:
    v = check({"kind": "number", "expected": 5}, "five")
    assert not v.passed and "no number" in v.detail


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "number"}, "needs 'expected'"),
        ({"kind": "number", "expected": "many"}, "'expected' must be a number"),
        ({"kind": "number", "expected": "about 5"}, "'expected' must be a number"),
        ({"kind": "number", "expected": True}, "'expected' must be a number"),
        ({"kind": "number", "expected": 1, "abs_tol": -1}, "must not be negative"),
        ({"kind": "number", "expected": 1, "abs_tol": 1, "tolerance": 1}, "not both"),
        ({"kind": "number", "expected": float("nan")}, "finite"),
    ],
)
def test_number_bad_specs(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_checker(spec)


# ------------------------------------------------------------------------------------- json


def test_json_without_schema_needs_valid_json() -> None:
    assert check({"kind": "json"}, '{"city": "Lisbon"}').passed
    v = check({"kind": "json"}, '{"city": Lisbon}')
    assert not v.passed and "no JSON object or array" in v.detail


def test_json_embedded_in_prose() -> None:
    out = 'Sure! Here is the JSON you asked for: {"city": "Lisbon"} Hope that helps.'
    assert check({"kind": "json", "schema": {"type": "object", "required": ["city"]}}, out).passed


def test_json_in_code_fence() -> None:
    out = 'Here you go:\n```json\n{\n  "name": "Tomasz Novak",\n  "age": 34\n}\n```\n'
    schema = {"type": "object", "required": ["name", "age"], "properties": {"age": {"type": "integer"}}}
    assert check({"kind": "json", "schema": schema}, out).passed


def test_json_prefers_value_of_schema_type() -> None:
    out = 'Items [1] and then {"a": 1}'
    assert extract_json(out) == [1]
    assert extract_json(out, "object") == {"a": 1}
    assert check({"kind": "json", "schema": {"type": "object", "required": ["a"]}}, out).passed


def test_json_skips_brackets_that_are_not_json() -> None:
    assert extract_json('See [note 1] and {bad} then [{"x": true}]') == [{"x": True}]


def test_json_invalid_is_a_failure_not_an_error() -> None:
    v = check({"kind": "json", "schema": {"type": "object"}}, "```json\n{'single': 'quotes'}\n```")
    assert not v.passed


@pytest.mark.parametrize(
    ("value", "schema", "problem"),
    [
        ({"name": 1}, {"properties": {"name": {"type": "string"}}}, "$.name: expected string, got integer"),
        ({}, {"required": ["city"]}, "missing required property 'city'"),
        ({"age": 33}, {"properties": {"age": {"minimum": 34}}}, "below the minimum 34"),
        ({"age": 35}, {"properties": {"age": {"maximum": 34}}}, "above the maximum 34"),
        ("Porto", {"enum": ["Lisbon"]}, 'is not one of ["Lisbon"]'),
        ([1, "x"], {"type": "array", "items": {"type": "integer"}}, "$[1]: expected integer, got string"),
        (True, {"type": "integer"}, "expected integer, got boolean"),  # bool is not a number in JSON
        (1, {"enum": [True]}, "is not one of"),
        ([{"item": "pen"}], {"items": {"required": ["item", "quantity"]}}, "$[0]: missing required property 'quantity'"),
    ],
)
def test_validate_schema_problems(value, schema, problem) -> None:
    problems = validate_schema(value, schema)
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        (34.0, {"type": "integer"}),  # JSON Schema counts 34.0 as an integer
        (3, {"type": "number"}),
        (None, {"type": ["string", "null"]}),
        ({"a": 1, "extra": 2}, {"type": "object", "properties": {"a": {"type": "integer"}}}),
        (34, {"minimum": 34, "maximum": 34}),
    ],
)
def test_validate_schema_accepts(value, schema) -> None:
    assert validate_schema(value, schema) == []


def test_json_schema_failure_detail() -> None:
    spec = {"kind": "json", "schema": {"type": "object", "required": ["name", "age"]}}
    v = check(spec, '{"name": "Ana"}')
    assert not v.passed and "missing required property 'age'" in v.detail


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "text"}, "schema.type must be one of"),
        ({"pattern": "^a"}, "unsupported keyword"),
        ({"properties": {"a": {"minLength": 1}}}, r"schema.properties.a uses unsupported keyword"),
        ({"required": "a"}, "required must be a list"),
        ({"minimum": "1"}, "minimum must be a number"),
        ([1], "must be a table"),
    ],
)
def test_json_bad_schema(schema, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_checker({"kind": "json", "schema": schema})


def test_json_schema_annotations_are_allowed() -> None:
    build_checker({"kind": "json", "schema": {"title": "Person", "description": "x", "type": "object"}})


# ---------------------------------------------------------------------------------- builder


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "no 'kind'"),
        ({"kind": "fuzzy"}, "unknown checker kind 'fuzzy'; use one of: exact, contains"),
        ({"kind": "contains"}, "contains checker needs 'expected'"),
        ({"kind": "contains", "expected": ""}, "non-empty string"),
        ({"kind": "contains", "expected": "a", "ignorecase": True}, "does not take 'ignorecase'"),
        ({"kind": "exact", "expected": "a", "ignore_case": "yes"}, "'ignore_case' must be true or false"),
        ({"kind": "regex"}, "regex checker needs 'pattern'"),
        ({"kind": "contains_all", "expected": []}, "non-empty list"),
        ({"kind": "contains_none"}, "needs 'expected'"),
        ("contains", "must be a table"),
    ],
)
def test_build_checker_errors(spec, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build_checker(spec)


def test_checker_keeps_its_spec() -> None:
    spec = {"kind": "number", "expected": 42, "abs_tol": 0.5}
    c = build_checker(spec)
    assert c.kind == "number" and c.spec == spec


def test_describe_spec() -> None:
    assert describe_spec({"kind": "number", "expected": 42, "abs_tol": 0.5}) == "number = 42 ±0.5"
    assert describe_spec({"kind": "regex", "pattern": "a+"}) == "regex /a+/"
    assert describe_spec({"kind": "contains_all", "expected": ["a", "b"]}) == "contains_all [a, b]"


def test_model_output_is_never_executed(tmp_path) -> None:
    """Code-looking output is only matched: a payload that would write a file must not run."""
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).write_text('x')"
    for spec in (
        {"kind": "regex", "pattern": "import"},
        {"kind": "number", "expected": 1},
        {"kind": "json"},
        {"kind": "exact", "expected": payload},
    ):
        build_checker(spec).check(payload)
    assert not marker.exists()
