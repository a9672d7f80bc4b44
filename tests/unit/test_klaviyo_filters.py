"""Klaviyo filter expressions: the forms the SDK and Klaviyo's docs use, and clear errors for the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cartback.api.klaviyo.filters import Combined, Condition, FilterError, as_datetime, conditions, parse


def test_filters_equals_with_a_quoted_string():
    assert parse('equals(email,"jane@example.com")') == [Condition("equals", "email", "jane@example.com")]


def test_filters_single_quotes_and_escapes():
    assert parse(r"equals(name,'it\'s, (odd)')") == [Condition("equals", "name", "it's, (odd)")]
    assert parse(r'equals(name,"say \"hi\"")') == [Condition("equals", "name", 'say "hi"')]


def test_filters_datetimes_dates_and_offsets_become_utc():
    (cond,) = parse("greater-or-equal(datetime,2024-01-01T00:00:00)")
    assert cond.value == datetime(2024, 1, 1, tzinfo=UTC)
    (cond,) = parse("less-than(datetime,2024-01-03)")
    assert cond.value == datetime(2024, 1, 3, tzinfo=UTC)
    (cond,) = parse("less-than(datetime,2024-01-03T02:00:00+02:00)")
    assert cond.value == datetime(2024, 1, 3, tzinfo=UTC)
    (cond,) = parse("greater-than(updated,2024-01-01T00:00:00.250Z)")
    assert cond.value == datetime(2024, 1, 1, 0, 0, 0, 250000, tzinfo=UTC)
    assert cond.value.tzinfo is not None


def test_filters_numbers_booleans_null_and_lists():
    assert parse("greater-than(timestamp,1700000000)") == [Condition("greater-than", "timestamp", 1700000000)]
    assert parse("equals(x,-2.5)") == [Condition("equals", "x", -2.5)]
    assert parse("equals(flag,true)") == [Condition("equals", "flag", True)]
    assert parse("equals(flag,null)") == [Condition("equals", "flag", None)]
    assert parse('any(email,["a@x.com", "b@x.com"])') == [Condition("any", "email", ["a@x.com", "b@x.com"])]
    assert parse("any(n,[])") == [Condition("any", "n", [])]


def test_filters_and_nesting_and_top_level_commas():
    text = 'and(equals(metric_id,"M1"),greater-or-equal(datetime,2024-01-01),less-than(datetime,2024-02-01))'
    (node,) = parse(text)
    assert isinstance(node, Combined) and node.op == "and" and len(node.items) == 3
    flat = conditions(text)
    assert [c.op for c in flat] == ["equals", "greater-or-equal", "less-than"]
    assert conditions(' equals(metric_id,"M1") , has(profile) ') == [
        Condition("equals", "metric_id", "M1"),
        Condition("has", "profile"),
    ]


def test_filters_dotted_and_dollar_field_names():
    assert parse('equals(integration.name,"API")') == [Condition("equals", "integration.name", "API")]
    assert parse('equals($flow,"F1")')[0].field == "$flow"


def test_filters_or_and_not_parse_but_conditions_refuses_them():
    (node,) = parse('or(equals(a,"1"),not(equals(b,"2")))')
    assert isinstance(node, Combined) and node.op == "or"
    assert isinstance(node.items[1], Combined) and node.items[1].op == "not"
    with pytest.raises(FilterError, match="'or' is not supported"):
        conditions('or(equals(a,"1"),equals(b,"2"))')


@pytest.mark.parametrize(
    "text",
    [
        "",
        "equals(email)",
        'equals(email,"x"',
        'equals(email,"x)',
        "equals(email,nonsense)",
        'equals(email,"x") trailing',
        "(email,1)",
        'not(equals(a,"1"),equals(b,"2"))',
        "any(email,[1,)",
        "equals(email,2024-13-45)",
    ],
)
def test_filters_malformed_expressions_raise_filter_error(text):
    with pytest.raises(FilterError):
        parse(text)


def test_filters_as_datetime_accepts_strings_numbers_and_datetimes():
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    assert as_datetime(moment) is moment
    assert as_datetime(1704067200) == moment
    assert as_datetime("2024-01-01T01:00:00+01:00") == moment
    assert as_datetime("2024-01-01").tzinfo is UTC
    assert as_datetime("2024-01-01T00:00:00+05:30").utcoffset() == timedelta(0)
    with pytest.raises(FilterError):
        as_datetime("soon")
    with pytest.raises(FilterError):
        as_datetime(True)
