"""The query pieces against naive references: SLO name regexes against set membership,
regex-escaped service names against `re`."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from engine.adapters.grafana.promql import quote, service_selector, services_of, slo_pattern
from engine.core.config import parse_config

NAMES = st.from_regex(r"[a-z0-9_.-]{1,12}", fullmatch=True)


@given(st.lists(NAMES, min_size=1, max_size=6, unique=True), st.lists(NAMES, max_size=6))
def test_slo_pattern_matches_exactly_its_names(chosen: list[str], others: list[str]) -> None:
    pattern = re.compile(f"(?:{slo_pattern(chosen)})")
    for name in chosen + others:
        assert bool(pattern.fullmatch(name)) == (name in chosen), name


@given(st.lists(st.text(min_size=1, max_size=10), min_size=2, max_size=4, unique=True))
def test_service_selector_matches_exactly_its_services(services: list[str]) -> None:
    selector = service_selector(services)
    literal = selector.removeprefix("service=~")
    # the PromQL string literal, unquoted as Prometheus reads it (Go's escapes)
    regex = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), literal[1:-1])
    pattern = re.compile(f"(?:{regex})", re.DOTALL)
    for s in services:
        assert pattern.fullmatch(s), (s, selector)
    assert not pattern.fullmatch(services[0] + services[1])


def test_one_service_is_an_equality_matcher_with_quotes_escaped() -> None:
    assert service_selector(['a"b\\c']) == 'service="a\\"b\\\\c"'
    assert quote("x") == '"x"'


def test_composites_are_listed_under_each_service_of_their_members() -> None:
    cfg = parse_config(
        "slos:\n"
        "  - {name: a, service: s1, sli: availability, objective: 99}\n"
        "  - {name: b, service: s2, sli: availability, objective: 99}\n"
        "  - {name: c, service: s1, sli: availability, objective: 99}\n"
        "  - {name: ab, composite: [{slo: a}, {slo: b}], objective: 99}\n"
        "  - {name: ac, composite: [{slo: a}, {slo: c}], objective: 99}\n"
    )
    assert services_of(cfg) == {"s1": ["a", "c", "ab", "ac"], "s2": ["b", "ab"]}
