"""The reliability taxonomy: status vocabularies, `ok` precedence, latency counting, the docs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.taxonomy import (
    DEFAULT_OPTIONS,
    GRPC_CODES,
    Outcome,
    SliKind,
    TaxonomyOptions,
    classify,
    latency_is_bad,
)

GOOD, BAD, UNKNOWN = Outcome.GOOD, Outcome.BAD, Outcome.UNKNOWN
STRICT = TaxonomyOptions(http_429_is_error=True, grpc_resource_exhausted_is_error=True)
DOC = Path(__file__).resolve().parents[3] / "docs" / "taxonomy.md"

# Written out here rather than read from the module, so a typo there cannot hide.
GRPC = [
    (0, "OK", GOOD),
    (1, "CANCELLED", GOOD),
    (2, "UNKNOWN", BAD),
    (3, "INVALID_ARGUMENT", GOOD),
    (4, "DEADLINE_EXCEEDED", BAD),
    (5, "NOT_FOUND", GOOD),
    (6, "ALREADY_EXISTS", GOOD),
    (7, "PERMISSION_DENIED", GOOD),
    (8, "RESOURCE_EXHAUSTED", GOOD),
    (9, "FAILED_PRECONDITION", GOOD),
    (10, "ABORTED", GOOD),
    (11, "OUT_OF_RANGE", GOOD),
    (12, "UNIMPLEMENTED", BAD),
    (13, "INTERNAL", BAD),
    (14, "UNAVAILABLE", BAD),
    (15, "DATA_LOSS", BAD),
    (16, "UNAUTHENTICATED", GOOD),
]
WORDS = {"ok": GOOD, "success": GOOD, "error": BAD, "fail": BAD, "failure": BAD, "timeout": BAD}
VOCABULARY = [name for _, name, _ in GRPC] + ["CANCELED", *WORDS]


def _verdict(outcome: Outcome) -> str:
    return outcome.name.lower()


# --- the enums and options ---------------------------------------------------------------


def test_the_enums_have_the_agreed_values() -> None:
    assert [(o.name, o.value) for o in Outcome] == [("GOOD", 0), ("BAD", 1), ("UNKNOWN", 2)]
    assert SliKind("availability") is SliKind.AVAILABILITY
    assert SliKind("latency") is SliKind.LATENCY
    assert f"{SliKind.LATENCY}" == "latency"


def test_grpc_codes_hold_all_17_canonical_names() -> None:
    assert dict(GRPC_CODES) == {name: number for number, name, _ in GRPC}


def test_options_default_to_throttling_being_good() -> None:
    assert TaxonomyOptions() == DEFAULT_OPTIONS
    assert DEFAULT_OPTIONS.http_429_is_error is False
    assert DEFAULT_OPTIONS.grpc_resource_exhausted_is_error is False


def test_options_decode_from_config_and_reject_unknown_keys() -> None:
    decoded = msgspec.json.decode(b'{"http_429_is_error": true}', type=TaxonomyOptions)
    assert decoded == TaxonomyOptions(http_429_is_error=True)
    with pytest.raises(msgspec.ValidationError, match="http_503_is_error"):
        msgspec.json.decode(b'{"http_503_is_error": true}', type=TaxonomyOptions)


# --- gRPC --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(status, verdict, id=f"grpc {name} {how} is {_verdict(verdict)}")
        for number, name, verdict in GRPC
        for status, how in (
            (name, "by name"),
            (number, f"by number {number}"),
            (str(number), f"by numeric string '{number}'"),
        )
    ],
)
def test_grpc_codes_by_name_and_number(status: int | str, expected: Outcome) -> None:
    assert classify(status, None) is expected


@pytest.mark.parametrize(
    ("status", "options", "expected"),
    [
        pytest.param(
            "RESOURCE_EXHAUSTED",
            DEFAULT_OPTIONS,
            GOOD,
            id="grpc RESOURCE_EXHAUSTED is good by default",
        ),
        pytest.param(8, DEFAULT_OPTIONS, GOOD, id="grpc 8 is good by default"),
        pytest.param(
            "RESOURCE_EXHAUSTED",
            TaxonomyOptions(grpc_resource_exhausted_is_error=True),
            BAD,
            id="grpc RESOURCE_EXHAUSTED is bad when configured as an error",
        ),
        pytest.param(
            8,
            TaxonomyOptions(grpc_resource_exhausted_is_error=True),
            BAD,
            id="grpc 8 is bad when configured",
        ),
        pytest.param(
            "8",
            TaxonomyOptions(grpc_resource_exhausted_is_error=True),
            BAD,
            id="grpc '8' is bad when configured",
        ),
        pytest.param(
            "resource-exhausted",
            TaxonomyOptions(http_429_is_error=True),
            GOOD,
            id="the http 429 option does not touch grpc RESOURCE_EXHAUSTED",
        ),
    ],
)
def test_grpc_resource_exhausted_follows_its_option(
    status: int | str, options: TaxonomyOptions, expected: Outcome
) -> None:
    assert classify(status, None, options) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("CANCELED", GOOD, id="the Go spelling CANCELED is grpc CANCELLED and good"),
        pytest.param("Canceled", GOOD, id="Go's Canceled string is good"),
        pytest.param(
            "unknown", BAD, id="the string unknown is grpc UNKNOWN and bad, not an unknown"
        ),
        pytest.param("ok", GOOD, id="grpc ok in lower case is good"),
    ],
)
def test_grpc_name_spellings(status: str, expected: Outcome) -> None:
    assert classify(status, None) is expected


# --- HTTP --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(99, UNKNOWN, id="http 99 is below the http range and unknown"),
        pytest.param(100, GOOD, id="http 100 is good"),
        pytest.param(199, GOOD, id="http 199 is good"),
        pytest.param(200, GOOD, id="http 200 is good for availability"),
        pytest.param(204, GOOD, id="http 204 is good"),
        pytest.param(301, GOOD, id="http 301 is good"),
        pytest.param(399, GOOD, id="http 399 is good"),
        pytest.param(400, GOOD, id="http 400 is a client error and good"),
        pytest.param(401, GOOD, id="http 401 is a client error and good"),
        pytest.param(403, GOOD, id="http 403 is a client error and good"),
        pytest.param(404, GOOD, id="http 404 is a client error and good"),
        pytest.param(408, GOOD, id="http 408 request timeout is the client's and good"),
        pytest.param(499, GOOD, id="http 499 client closed request is good"),
        pytest.param(500, BAD, id="http 500 is bad for availability"),
        pytest.param(502, BAD, id="http 502 is bad for availability"),
        pytest.param(503, BAD, id="http 503 is bad for availability"),
        pytest.param(504, BAD, id="http 504 is bad for availability"),
        pytest.param(599, BAD, id="http 599 is bad for availability"),
        pytest.param(600, UNKNOWN, id="http 600 is past the http range and unknown"),
    ],
)
def test_http_codes_and_boundaries(status: int, expected: Outcome) -> None:
    assert classify(status, None) is expected
    assert classify(status, None, STRICT) is expected
    assert classify(str(status), None) is expected


@pytest.mark.parametrize(
    ("status", "options", "expected"),
    [
        pytest.param(429, DEFAULT_OPTIONS, GOOD, id="http 429 is good by default"),
        pytest.param("429", DEFAULT_OPTIONS, GOOD, id="http '429' is good by default"),
        pytest.param(
            429, TaxonomyOptions(http_429_is_error=True), BAD, id="http 429 is bad when configured"
        ),
        pytest.param(
            "429",
            TaxonomyOptions(http_429_is_error=True),
            BAD,
            id="http '429' is bad when configured",
        ),
        pytest.param(
            429,
            TaxonomyOptions(grpc_resource_exhausted_is_error=True),
            GOOD,
            id="the grpc option does not touch http 429",
        ),
        pytest.param(
            428, TaxonomyOptions(http_429_is_error=True), GOOD, id="the 429 option leaves 428 good"
        ),
        pytest.param(
            430, TaxonomyOptions(http_429_is_error=True), GOOD, id="the 429 option leaves 430 good"
        ),
    ],
)
def test_http_429_follows_its_option(
    status: int | str, options: TaxonomyOptions, expected: Outcome
) -> None:
    assert classify(status, None, options) is expected


# --- words, case, separators, numeric strings --------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(word, verdict, id=f"the word {word} is {_verdict(verdict)}")
        for word, verdict in WORDS.items()
    ]
    + [
        pytest.param("ERROR", BAD, id="the word ERROR in capitals is bad"),
        pytest.param("Failure", BAD, id="the word Failure capitalised is bad"),
        pytest.param("time-out", BAD, id="the word time-out with a dash is timeout and bad"),
        pytest.param("SUCCESS", GOOD, id="the word SUCCESS in capitals is good"),
        pytest.param("failed", UNKNOWN, id="the word failed is not in the vocabulary and unknown"),
        pytest.param(
            "succeeded", UNKNOWN, id="the word succeeded is not in the vocabulary and unknown"
        ),
    ],
)
def test_words(status: str, expected: Outcome) -> None:
    assert classify(status, None) is expected


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("DEADLINE_EXCEEDED", id="upper snake case is deadline exceeded"),
        pytest.param("deadline_exceeded", id="lower snake case is deadline exceeded"),
        pytest.param("DeadlineExceeded", id="pascal case is deadline exceeded"),
        pytest.param("deadlineExceeded", id="camel case is deadline exceeded"),
        pytest.param("deadline-exceeded", id="kebab case is deadline exceeded"),
        pytest.param("Deadline Exceeded", id="words with a space are deadline exceeded"),
        pytest.param("deadline.exceeded", id="dotted is deadline exceeded"),
        pytest.param("  DEADLINE_EXCEEDED\n", id="surrounding whitespace is ignored"),
        pytest.param(
            "dEaDlInE__eXcEeDeD", id="mixed case and doubled separators are deadline exceeded"
        ),
    ],
)
def test_names_ignore_case_and_separators(status: str) -> None:
    assert classify(status, None) is BAD


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("503", BAD, id="the string 503 is http 503 and bad"),
        pytest.param("200", GOOD, id="the string 200 is http 200 and good"),
        pytest.param("404", GOOD, id="the string 404 is http 404 and good"),
        pytest.param("14", BAD, id="the string 14 is grpc UNAVAILABLE and bad"),
        pytest.param("0", GOOD, id="the string 0 is grpc OK and good"),
        pytest.param(" 503 ", BAD, id="a numeric string with surrounding spaces is the number"),
        pytest.param("0014", BAD, id="a numeric string with leading zeros is the number"),
        pytest.param("00000000000000000000503", BAD, id="many leading zeros are still the number"),
        pytest.param("42", UNKNOWN, id="the string 42 is no code and unknown"),
        pytest.param("600", UNKNOWN, id="the string 600 is no code and unknown"),
        pytest.param("1" * 5000, UNKNOWN, id="a huge numeric string is unknown without raising"),
        pytest.param("-1", UNKNOWN, id="the string -1 is not the number 1 and unknown"),
        pytest.param("5-03", UNKNOWN, id="separators do not join digits"),
        pytest.param("5 03", UNKNOWN, id="spaces do not join digits"),
        pytest.param("503.0", UNKNOWN, id="a decimal string is unknown"),
        pytest.param("+503", UNKNOWN, id="a signed numeric string is unknown"),
        pytest.param("\u0665\u0660\u0663", UNKNOWN, id="non ascii digits are unknown"),
    ],
)
def test_numeric_strings(status: str, expected: Outcome) -> None:
    assert classify(status, None) is expected


# --- ok, None and unknowns ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ok", "expected"),
    [
        pytest.param(503, True, GOOD, id="ok true overrides http 503"),
        pytest.param(200, False, BAD, id="ok false overrides http 200"),
        pytest.param("UNAVAILABLE", True, GOOD, id="ok true overrides grpc UNAVAILABLE"),
        pytest.param("OK", False, BAD, id="ok false overrides grpc OK"),
        pytest.param("error", True, GOOD, id="ok true overrides the word error"),
        pytest.param("teapot", True, GOOD, id="ok true overrides an unknown status"),
        pytest.param("teapot", False, BAD, id="ok false overrides an unknown status"),
        pytest.param(None, True, GOOD, id="ok true alone is good"),
        pytest.param(None, False, BAD, id="ok false alone is bad"),
        pytest.param(None, None, GOOD, id="no status and no ok is good"),
        pytest.param(503, None, BAD, id="without ok the status decides"),
    ],
)
def test_ok_comes_before_status(
    status: int | str | None, ok: bool | None, expected: Outcome
) -> None:
    assert classify(status, ok) is expected
    assert classify(status, ok, STRICT) is expected


@pytest.mark.parametrize(
    "status",
    [
        pytest.param("teapot", id="an unrecognised word is unknown"),
        pytest.param("", id="the empty string is unknown"),
        pytest.param("   ", id="a blank string is unknown"),
        pytest.param("-_-", id="a string of separators is unknown"),
        pytest.param("HTTP 503", id="a prefixed code is unknown"),
        pytest.param(-1, id="a negative integer is unknown"),
        pytest.param(17, id="integer 17 just past grpc is unknown"),
        pytest.param(42, id="integer 42 between grpc and http is unknown"),
        pytest.param(10**30, id="a huge integer is unknown"),
        pytest.param(True, id="a boolean true as status is unknown"),
        pytest.param(False, id="a boolean false as status is unknown"),
    ],
)
def test_unrecognised_statuses_are_unknown(status: int | str) -> None:
    assert classify(status, None) is UNKNOWN


def test_a_stray_float_status_is_unknown_not_an_error() -> None:
    assert classify(503.0, None) is UNKNOWN  # type: ignore[arg-type]


# --- latency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("latency_ms", "outcome", "failed_counts_bad", "expected"),
    [
        pytest.param(120.0, GOOD, True, False, id="fast and good is good"),
        pytest.param(300.0, GOOD, True, False, id="exactly at the threshold is good"),
        pytest.param(300.001, GOOD, True, True, id="just over the threshold is bad"),
        pytest.param(900.0, GOOD, True, True, id="slow and good is bad"),
        pytest.param(20.0, BAD, True, True, id="a fast failure is bad by default"),
        pytest.param(
            20.0, BAD, False, False, id="a fast failure is good when failures are judged by latency"
        ),
        pytest.param(
            900.0, BAD, False, True, id="a slow failure is bad when failures are judged by latency"
        ),
        pytest.param(20.0, UNKNOWN, True, False, id="a fast unknown is judged by latency and good"),
        pytest.param(900.0, UNKNOWN, True, True, id="a slow unknown is judged by latency and bad"),
        pytest.param(None, GOOD, True, None, id="no latency does not count"),
        pytest.param(None, BAD, True, None, id="a failure without latency does not count"),
        pytest.param(math.nan, BAD, True, None, id="a nan latency does not count"),
        pytest.param(0.0, GOOD, True, False, id="zero latency is good"),
    ],
)
def test_latency_is_bad(
    latency_ms: float | None, outcome: Outcome, failed_counts_bad: bool, expected: bool | None
) -> None:
    assert latency_is_bad(latency_ms, 300.0, outcome, failed_counts_bad) is expected


def test_latency_counts_failures_as_bad_by_default() -> None:
    assert latency_is_bad(1.0, 300.0, BAD) is True


# --- properties --------------------------------------------------------------------------

statuses = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.from_regex(r"\s*\d{1,6}\s*", fullmatch=True),
)
oks = st.one_of(st.none(), st.booleans())
options = st.builds(TaxonomyOptions, st.booleans(), st.booleans())


@given(statuses, oks, options)
def test_classify_never_raises_and_returns_an_outcome(
    status: int | str | None, ok: bool | None, opts: TaxonomyOptions
) -> None:
    assert isinstance(classify(status, ok, opts), Outcome)


@given(st.text(), options)
def test_classify_is_case_insensitive_for_any_text(text: str, opts: TaxonomyOptions) -> None:
    expected = classify(text, None, opts)
    assert classify(text.upper(), None, opts) is expected
    assert classify(text.lower(), None, opts) is expected
    assert classify(text.swapcase(), None, opts) is expected


@st.composite
def respelled(draw: st.DrawFn) -> tuple[str, str]:
    """A vocabulary entry, and the same entry in random case with random separators."""
    canonical = draw(st.sampled_from(VOCABULARY))
    letters = [ch for ch in canonical if ch != "_"]
    out = [draw(st.sampled_from(["", " ", "\t"]))]
    for ch in letters:
        out.append(ch.upper() if draw(st.booleans()) else ch.lower())
        out.append(draw(st.sampled_from(["", "", "_", "-", ".", " ", "__"])))
    return canonical, "".join(out)


@given(respelled(), options)
def test_any_case_and_separators_name_the_same_status(
    pair: tuple[str, str], opts: TaxonomyOptions
) -> None:
    canonical, spelled = pair
    assert classify(spelled, None, opts) is classify(canonical, None, opts)
    assert classify(spelled, None, opts) is not UNKNOWN


@given(st.integers(min_value=0, max_value=999), st.integers(0, 5), options)
def test_a_numeric_string_is_its_number(number: int, zeros: int, opts: TaxonomyOptions) -> None:
    assert classify("0" * zeros + str(number), None, opts) is classify(number, None, opts)


@given(statuses, st.booleans(), options)
def test_ok_always_wins(status: int | str | None, ok: bool, opts: TaxonomyOptions) -> None:
    assert classify(status, ok, opts) is (GOOD if ok else BAD)


@given(
    st.one_of(st.none(), st.floats(allow_infinity=True)),
    st.floats(min_value=0.001, max_value=1e9),
    st.sampled_from(Outcome),
    st.booleans(),
)
def test_latency_is_bad_never_raises(
    latency_ms: float | None, threshold_ms: float, outcome: Outcome, failed_counts_bad: bool
) -> None:
    verdict = latency_is_bad(latency_ms, threshold_ms, outcome, failed_counts_bad)
    if latency_ms is None or math.isnan(latency_ms):
        assert verdict is None
    else:
        assert isinstance(verdict, bool)


# --- the docs match the code -------------------------------------------------------------


def _doc_tables(heading: str) -> list[list[list[str]]]:
    """The tables under `## heading`, each as rows of stripped cells, header rows dropped."""
    tables: list[list[list[str]]] = []
    inside = False
    current: list[list[str]] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            inside = line == f"## {heading}"
        if inside and line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current[2:])
            current = []
    if current:
        tables.append(current[2:])
    assert tables, f"no table under '## {heading}' in {DOC}"
    return tables


def _doc_verdict(cell: str) -> Outcome:
    """The default verdict a docs cell states: its first word, `**bad**` or `good` or `unknown`."""
    word = re.split(r"[\s;(]", cell.replace("*", ""), maxsplit=1)[0]
    return {"good": GOOD, "bad": BAD, "unknown": UNKNOWN}[word]


def _doc_options(cell: str) -> TaxonomyOptions:
    """`name: true` options mentioned in a docs cell."""
    return TaxonomyOptions(**dict.fromkeys(re.findall(r"`(\w+): true`", cell), True))


def test_docs_grpc_table_matches_the_code() -> None:
    (rows,) = _doc_tables("gRPC status codes")
    assert len(rows) == 17
    for number, name, verdict, _why in rows:
        assert GRPC_CODES[name.strip("`")] == int(number)
        for status in (int(number), name.strip("`")):
            assert classify(status, None) is _doc_verdict(verdict), (number, name)
            assert classify(status, None, _doc_options(verdict)) is (
                BAD if "with" in verdict else _doc_verdict(verdict)
            )


def test_docs_http_tables_match_the_code() -> None:
    by_class, notable = _doc_tables("HTTP status codes")
    assert len(by_class) == 5
    for codes, _class, verdict in by_class:
        low, high = map(int, re.findall(r"\d+", codes))
        for bound in (low, high):
            assert classify(bound, None) is _doc_verdict(verdict), bound
    for code, _meaning, verdict in notable:
        assert classify(int(code), None) is _doc_verdict(verdict), code
        assert classify(int(code), None, _doc_options(verdict)) is (
            BAD if "with" in verdict else _doc_verdict(verdict)
        )


def test_docs_words_table_matches_the_code() -> None:
    (rows,) = _doc_tables("Words")
    assert {word.strip("`"): _doc_verdict(verdict) for word, verdict in rows} == WORDS
    for word, verdict in rows:
        assert classify(word.strip("`"), None) is _doc_verdict(verdict)


def test_docs_options_table_matches_the_code() -> None:
    (rows,) = _doc_tables("Options")
    documented = {name.strip("`"): json.loads(default.strip("`")) for name, default, _ in rows}
    assert documented == msgspec.structs.asdict(DEFAULT_OPTIONS)


def test_docs_availability_examples_match_the_code() -> None:
    (rows,) = _doc_tables("Availability SLOs")
    assert rows
    for event_cell, options_cell, verdict, _why in rows:
        event = json.loads(event_cell.strip("`"))
        got = classify(event.get("status"), event.get("ok"), _doc_options(options_cell))
        assert got is _doc_verdict(verdict), event_cell


def test_docs_latency_examples_match_the_code() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Latency SLOs", 1)[1]
    threshold_ms = float(re.findall(r"Examples for `threshold_ms: (\d+)`", section)[0])
    tables = _doc_tables("Latency SLOs")
    assert len(tables) == 1
    verdicts = {"good": False, "bad": True, "not counted": None}
    for event_cell, failed_cell, verdict in tables[0]:
        event = json.loads(event_cell.strip("`"))
        outcome = classify(event.get("status"), event.get("ok"))
        got = latency_is_bad(
            event.get("latency_ms"), threshold_ms, outcome, json.loads(failed_cell.strip("`"))
        )
        assert got is verdicts[verdict], event_cell
