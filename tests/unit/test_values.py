"""The storable-values rule and its helpers, without a server: what `find_unstorable` refuses and where,
the read-side clip, money conversion bounds and the event-time window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartback import money, values


def test_values_ordinary_bodies_pass():
    body = {
        "checkoutId": "c1",
        "customer": {"email": "a@example.com", "attributes": {"vip": True, "n": 2**63 - 1, "m": -(2**63)}},
        "items": [{"title": "Café ☕", "quantity": 1, "price": 1.5e300}],
        "none": None,
    }
    assert values.find_unstorable(body) is None


@pytest.mark.parametrize(
    ("body", "path", "says"),
    [
        ({"a": {"b": 2**63}}, ("a", "b"), "64-bit"),
        ({"a": [1, -(2**63) - 1]}, ("a", 1), "64-bit"),
        ({"a": float("nan")}, ("a",), "finite"),
        ({"a": [float("-inf")]}, ("a", 0), "finite"),
        ({"a": "x\ud800"}, ("a",), "surrogate"),
        ({"a": {"\udc00": 1}}, ("a", "\udc00"), "surrogate"),
    ],
)
def test_values_find_unstorable_names_the_path(body, path, says):
    found = values.find_unstorable(body)
    assert found is not None and found.path == path and says in found.reason


def test_values_depth_limit_counts_the_body_as_level_one():
    deepest = {"a": None}
    for _ in range(values.MAX_DEPTH - 1):
        deepest = {"a": deepest}
    assert values.find_unstorable(deepest) is None
    found = values.find_unstorable({"a": deepest})
    assert found is not None and found.path == ("a",) * values.MAX_DEPTH and "nested" in found.reason


def test_values_first_problem_in_document_order_is_reported():
    found = values.find_unstorable({"a": 1, "b": float("nan"), "c": 2**70})
    assert found is not None and found.path == ("b",)


def test_values_a_body_nested_far_past_the_recursion_limit_is_walked():
    body: object = 1
    for _ in range(50_000):
        body = [body]
    found = values.find_unstorable(body)
    assert found is not None and len(found.path) == values.MAX_DEPTH


def test_values_clip_depth_replaces_only_what_is_deeper_than_the_bound():
    shallow = {"a": [1, {"b": 2}]}
    assert values.clip_depth(shallow, 3) is shallow
    assert values.clip_depth({"a": {"b": {"c": 1}}, "d": [[1]]}, 2) == {"a": {"b": None}, "d": [None]}


def test_values_clip_depth_keeps_a_document_renderable():
    deep: object = "x"
    for _ in range(400):
        deep = {"a": deep}
    assert len(json.dumps(values.clip_depth(deep))) < 1000


def test_values_event_time_window():
    now = datetime(2026, 12, 5, tzinfo=UTC)
    values.check_time(values.EARLIEST, now)
    values.check_time(now + values.LATEST_AHEAD, now)
    with pytest.raises(ValueError, match="2000"):
        values.check_time(datetime(1, 1, 1, tzinfo=UTC), now)
    with pytest.raises(ValueError, match="future"):
        values.check_time(now + values.LATEST_AHEAD + timedelta(seconds=1), now)


@pytest.mark.parametrize(
    ("amount", "currency", "cents"),
    [
        ("64.5", "USD", 6450),
        ("6450", "JPY", 6450),
        ("1.2345", "KWD", 1235),
        ("-0.004", "USD", 0),
        ("1e-99999", "USD", 0),
    ],
)
def test_money_to_minor_is_exact(amount, currency, cents):
    assert money.to_minor(Decimal(amount), currency) == cents


@pytest.mark.parametrize(
    "amount", ["1e300", "1E+999999999", "-1e300", "-1", "10000000000000.005", "NaN", "Infinity"]
)
def test_money_to_minor_refuses_what_does_not_fit_without_overflowing(amount):
    with pytest.raises(ValueError):
        money.to_minor(Decimal(amount), "USD")


def test_money_to_minor_allows_negative_amounts_when_asked():
    assert money.to_minor(Decimal("-5"), "USD", allow_negative=True) == -500
    with pytest.raises(ValueError):
        money.to_minor(Decimal("-1e300"), "USD", allow_negative=True)


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.sampled_from(["x\ud800", "\udfff", "ok"]),
)
_KEYS = st.one_of(st.text(max_size=3), st.sampled_from(["\ud800", "k"]))


def _nested(depth: int) -> st.SearchStrategy[object]:
    """Documents up to `depth` levels deep: lists and objects around leaves."""
    inner = _LEAVES
    for _ in range(depth):
        inner = st.one_of(
            _LEAVES,
            st.lists(inner, max_size=3),
            st.dictionaries(_KEYS, inner, max_size=3),
        )
    return inner


@settings(max_examples=400, deadline=None)
@given(doc=_nested(4))
def test_values_quick_check_agrees_with_the_full_walk(doc):
    """The yes/no walk that runs on every body refuses exactly what the walk naming the place refuses."""
    assert values.find_unstorable(doc) == values._locate(doc)


@pytest.mark.parametrize("levels", [values.MAX_DEPTH - 1, values.MAX_DEPTH, values.MAX_DEPTH + 1])
@pytest.mark.parametrize("leaf", [1, "x", 2**64, "\ud800", float("inf")])
def test_values_quick_check_agrees_at_the_depth_limit(levels, leaf):
    for wrap in (lambda v: [v], lambda v: {"k": v}):
        doc: object = leaf
        for _ in range(levels):
            doc = wrap(doc)
        assert values.find_unstorable(doc) == values._locate(doc)
