"""Reading SLIs from Prometheus queries by their label matchers (engine.core.importers.promql)."""

from __future__ import annotations

import pytest

from engine.core.importers.promql import Matcher, QueryError, read_ratio, selectors


def test_selectors_reads_metrics_matchers_and_skips_functions_groupings_and_ranges() -> None:
    query = (
        'sum by (job, code) (rate(http_requests_total{job="api", code=~"5.."}[5m]))'
        " / on(job) group_left sum(rate(http_requests_total[{{.window}}] offset 1h))"
    )
    found = selectors(query)
    assert [s.metric for s in found] == ["http_requests_total", "http_requests_total"]
    assert found[0].matchers == (Matcher("job", "=", "api"), Matcher("code", "=~", "5.."))
    assert found[1].matchers == ()


def test_selectors_unescapes_strings_and_reads_bare_braces() -> None:
    found = selectors(r'{__name__="x", path="a\"b", code=~"5\\d\\d"}')
    assert found[0].metric is None
    assert [m.value for m in found[0].matchers] == ["x", 'a"b', r"5\d\d"]


@pytest.mark.parametrize("query", ['x{job="a"', 'x{job="a}', "x{job=}", "sum by (a x"])
def test_selectors_refuses_what_it_cannot_read(query: str) -> None:
    with pytest.raises(QueryError):
        selectors(query)


@pytest.mark.parametrize("regex", ["5..", "^5..$", "5.*", r"5\\d\\d", "5[0-9][0-9]"])
def test_a_5xx_error_query_is_availability(regex: str) -> None:
    reading = read_ratio(
        {
            "bad": f'sum(rate(http_requests_total{{job="api",code=~"{regex}"}}[5m]))',
            "total": 'sum(rate(http_requests_total{job="api"}[5m]))',
        }
    )
    assert reading.usable, reading.problems
    assert reading.fields == {"service": "api", "sli": "availability"}
    assert reading.problems == []


def test_a_good_query_excluding_5xx_is_availability_with_operation() -> None:
    reading = read_ratio(
        {
            "good": 'rate(reqs{service="cart", operation="GET /cart", code!~"5.."}[5m])',
            "total": 'rate(reqs{service="cart", operation="GET /cart"}[5m])',
        }
    )
    assert reading.fields == {"service": "cart", "operation": "GET /cart", "sli": "availability"}


def test_status_class_5xx_is_availability() -> None:
    reading = read_ratio({"bad": 'x{app="a", status_class="5xx"}', "total": 'x{app="a"}'})
    assert reading.fields["sli"] == "availability"


@pytest.mark.parametrize(
    ("metric", "le", "threshold", "noted"),
    [
        ("http_request_duration_seconds_bucket", "0.3", 300, False),
        ("rpc_latency_milliseconds_bucket", "250", 250, False),
        ("rpc_latency_ms_bucket", "12.5", 12.5, False),
        ("request_latency_bucket", "1", 1000, True),
    ],
)
def test_an_le_bucket_is_a_latency_threshold(
    metric: str, le: str, threshold: float, noted: bool
) -> None:
    reading = read_ratio(
        {"good": f'sum(rate({metric}{{job="api",le="{le}"}}[5m]))', "total": 'x_count{job="api"}'}
    )
    assert reading.usable
    assert reading.fields == {"service": "api", "sli": "latency", "threshold_ms": threshold}
    assert any("gives no unit" in m for _, m in reading.problems) == noted


@pytest.mark.parametrize(
    ("bad", "total", "expected"),
    [
        ('x{job="a",code=~"500|503"}', 'x{job="a"}', "not exactly the HTTP 5xx"),
        ('x{job="a",code="500"}', 'x{job="a"}', "not exactly the HTTP 5xx"),
        ('x{job="a"}', 'x{job="b"}', "ambiguous service"),
        ('x{job=~"a|b",code=~"5.."}', 'x{job=~"a|b"}', "only an exact value"),
        ('x{job="a",code=~"5..",le="0.3"}', 'x{job="a"}', "cannot tell availability"),
        ('x{job="a"}', 'x{job="a"}', "cannot tell the SLI"),
        ('x{job="a",le="0.1"} - x{job="a",le="0.2"}', 'x{job="a"}', "several `le` buckets"),
        ('x{job="a"', 'x{job="a"}', "cannot read the query"),
    ],
)
def test_ambiguous_queries_are_not_usable_and_say_why(bad: str, total: str, expected: str) -> None:
    reading = read_ratio({"bad": bad, "total": total})
    assert not reading.usable
    assert any(expected in message for _, message in reading.problems), reading.problems


def test_other_matchers_are_problems_but_the_sli_still_maps() -> None:
    reading = read_ratio(
        {
            "bad": 'x{job="a", namespace="prod", code=~"5.."}',
            "total": 'x{job="a", namespace="prod"}',
        }
    )
    assert reading.usable
    assert [(w, m.split(":")[0]) for w, m in reading.problems] == [
        ("bad", 'namespace="prod"'),
        ("total", 'namespace="prod"'),
    ]


def test_no_service_matcher_is_a_problem() -> None:
    reading = read_ratio({"bad": 'x{code=~"5.."}', "total": "x"})
    assert reading.usable
    assert "service" not in reading.fields
    assert ("total", "no service, job or app matcher names the service") in reading.problems
