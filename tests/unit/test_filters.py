from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartback.core import filters
from cartback.core.filters import PropertyFilter

CART = {
    "checkoutId": "chk_1",
    "total": 75,
    "currency": "EUR",
    "customer": {"email": "ada@example.com", "vip": True, "tags": ["VIP", "newsletter"], "note": None},
    "items": [
        {"title": "Slim Jeans", "price": "49.99", "quantity": 1, "variants": [{"size": "M"}, {"size": "L"}]},
        {"title": "Shirt", "price": 25.01, "quantity": 2, "variants": [{"size": "S"}]},
    ],
}


def check(data: Any, path: str, operator: str, value: Any = None) -> bool:
    wire = {"path": path, "operator": operator}
    if value is not None:
        wire["value"] = value
    return bool(filters.match(data, [PropertyFilter.from_wire(wire)]))


# --- resolve ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("checkoutId", ["chk_1"], id="top-level"),
        pytest.param("customer.email", ["ada@example.com"], id="nested"),
        pytest.param("customer.missing", [], id="missing-leaf"),
        pytest.param("nope.email", [], id="missing-parent"),
        pytest.param("total.cents", [], id="through-a-scalar"),
        pytest.param("customer.note", [None], id="explicit-null"),
        pytest.param("customer.tags", [["VIP", "newsletter"]], id="list-without-fan-out-is-one-value"),
        pytest.param("items[].title", ["Slim Jeans", "Shirt"], id="fan-out"),
        pytest.param("items.0.title", ["Slim Jeans"], id="numeric-index"),
        pytest.param("items[1].title", ["Shirt"], id="bracket-index"),
        pytest.param("items.7.title", [], id="index-out-of-range"),
        pytest.param("items.title", [], id="key-on-a-list-needs-fan-out"),
        pytest.param("items[].variants[].size", ["M", "L", "S"], id="nested-fan-out"),
        pytest.param("customer.tags[]", ["VIP", "newsletter"], id="fan-out-leaf"),
        pytest.param("checkoutId[]", [], id="fan-out-over-a-scalar"),
    ],
)
def test_resolve_paths(path: str, expected: list[Any]) -> None:
    assert filters.resolve(CART, path) == expected


def test_resolve_deep_nested_fan_out() -> None:
    data = {"a": {"b": [{"c": [{"d": 1}, {"d": 2}]}, {"c": []}, {"c": [{"e": 3}, {"d": 4}]}]}}
    assert filters.resolve(data, "a.b[].c[].d") == [1, 2, 4]


def test_resolve_numeric_key_in_a_mapping() -> None:
    assert filters.resolve({"scores": {"0": "zero"}}, "scores.0") == ["zero"]


@pytest.mark.parametrize("path", ["", "a..b", "items[", "items]x", "items[x]", "."])
def test_resolve_malformed_path_raises(path: str) -> None:
    with pytest.raises(ValueError, match="bad path"):
        filters.resolve(CART, path)


# --- operators -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "operator", "value", "expected"),
    [
        # value >= 50: the extension Sequenzy lacks
        pytest.param({"value": 50}, "value", "greater_than_or_equal", 50, True, id="gte-equal"),
        pytest.param({"value": 75}, "value", "greater_than_or_equal", 50, True, id="gte-above"),
        pytest.param({"value": 49.99}, "value", "greater_than_or_equal", 50, False, id="gte-below"),
        pytest.param({"value": "50"}, "value", "gte", 50, True, id="gte-alias-numeric-string"),
        pytest.param({"value": 50}, "value", "less_than_or_equal", "50", True, id="lte-equal"),
        pytest.param({"value": 50.01}, "value", "lte", 50, False, id="lte-alias-above"),
        # greater_than / less_than
        pytest.param({"value": 50}, "value", "greater_than", 49.99, True, id="gt-cents-workaround"),
        pytest.param({"value": 50}, "value", "greater_than", 50, False, id="gt-equal-is-false"),
        pytest.param({"value": "75"}, "value", "greater_than", "50", True, id="gt-both-strings-numeric"),
        pytest.param({"value": "9"}, "value", "greater_than", "10", False, id="gt-numeric-not-lexical"),
        pytest.param({"value": "abc"}, "value", "greater_than", 1, False, id="gt-non-numeric-actual"),
        pytest.param({"value": True}, "value", "greater_than", 0, False, id="gt-bool-is-not-a-number"),
        pytest.param({"value": None}, "value", "less_than", 1, False, id="lt-null"),
        pytest.param({}, "value", "less_than", 1, False, id="lt-missing"),
        pytest.param({"value": -3}, "value", "less_than", "0", True, id="lt-negative"),
        pytest.param({"value": 10**20 + 1}, "value", "greater_than", 10**20, True, id="gt-big-int-exact"),
        # equals / not_equals
        pytest.param({"value": "50"}, "value", "equals", 50, True, id="eq-numeric-string-vs-number"),
        pytest.param({"value": 50.0}, "value", "equals", 50, True, id="eq-float-vs-int"),
        pytest.param({"value": 50}, "value", "equals", "50.0", True, id="eq-number-vs-decimal-string"),
        pytest.param({"value": "Jeans"}, "value", "equals", "jeans", False, id="eq-case-sensitive"),
        pytest.param({"value": True}, "value", "equals", True, True, id="eq-bool"),
        pytest.param({"value": True}, "value", "equals", "true", True, id="eq-bool-vs-true-string"),
        pytest.param({"value": "False"}, "value", "equals", False, True, id="eq-false-string-vs-bool"),
        pytest.param({"value": True}, "value", "equals", 1, False, id="eq-bool-is-not-one"),
        pytest.param({"value": 1}, "value", "equals", True, False, id="eq-one-is-not-true"),
        pytest.param({"value": "yes"}, "value", "equals", True, False, id="eq-other-string-vs-bool"),
        pytest.param({"value": "50"}, "value", "not_equals", 50, False, id="neq-numeric-string"),
        pytest.param({"value": "EUR"}, "value", "not_equals", "USD", True, id="neq-different"),
        pytest.param({}, "value", "not_equals", "USD", True, id="neq-missing-is-not-equal"),
        # one_of
        pytest.param({"c": "EUR"}, "c", "one_of", ["USD", "EUR"], True, id="one-of-hit"),
        pytest.param({"c": "GBP"}, "c", "one_of", ["USD", "EUR"], False, id="one-of-miss"),
        pytest.param({"c": "50"}, "c", "one_of", [10, 50], True, id="one-of-numeric-string"),
        pytest.param({"c": "eur"}, "c", "one_of", ["EUR"], False, id="one-of-case-sensitive"),
        pytest.param({}, "c", "one_of", ["EUR"], False, id="one-of-missing"),
        # contains
        pytest.param({"t": "Slim Jeans"}, "t", "contains", "jeans", True, id="contains-substring-any-case"),
        pytest.param({"t": "Shirt"}, "t", "contains", "Jeans", False, id="contains-substring-miss"),
        pytest.param({"t": ["VIP", "x"]}, "t", "contains", "vip", True, id="contains-list-membership"),
        pytest.param({"t": ["VIPs"]}, "t", "contains", "VIP", False, id="contains-list-is-not-substring"),
        pytest.param({"t": [1, 2]}, "t", "contains", "2", True, id="contains-list-numeric"),
        pytest.param({"t": "SKU-50"}, "t", "contains", 50, True, id="contains-number-in-string"),
        pytest.param({"t": 1234}, "t", "contains", "23", False, id="contains-on-a-number-is-false"),
        pytest.param({"t": "a"}, "t", "not_contains", "b", True, id="not-contains"),
        pytest.param({"t": ["a", "b"]}, "t", "not_contains", "B", False, id="not-contains-list"),
        # exists / not_exists
        pytest.param({"e": ""}, "e", "exists", None, True, id="exists-empty-string"),
        pytest.param({"e": 0}, "e", "exists", None, True, id="exists-zero"),
        pytest.param({"e": None}, "e", "exists", None, False, id="exists-null-is-absent"),
        pytest.param({}, "e", "exists", None, False, id="exists-missing"),
        pytest.param({"e": None}, "e", "not_exists", None, True, id="not-exists-null"),
        pytest.param({}, "e", "not_exists", None, True, id="not-exists-missing"),
        pytest.param({"e": False}, "e", "not_exists", None, False, id="not-exists-false-is-a-value"),
    ],
)
def test_match_operators(data: dict[str, Any], path: str, operator: str, value: Any, expected: bool) -> None:
    assert check(data, path, operator, value) is expected


@pytest.mark.parametrize(
    ("path", "operator", "value", "expected"),
    [
        pytest.param("items[].title", "contains", "Jeans", True, id="contains-any-item"),
        pytest.param("items[].title", "equals", "Shirt", True, id="equals-any-item"),
        pytest.param("items[].title", "not_equals", "Shirt", False, id="not-equals-no-item"),
        pytest.param("items[].title", "not_equals", "Hat", True, id="not-equals-none-is-hat"),
        pytest.param("items[].price", "greater_than", 40, True, id="gt-any-item"),
        pytest.param("items[].price", "less_than", 20, False, id="lt-no-item"),
        pytest.param("items[].variants[].size", "one_of", ["L", "XL"], True, id="one-of-nested"),
        pytest.param("items[].giftWrap", "exists", None, False, id="exists-in-no-item"),
        pytest.param("items[].giftWrap", "not_exists", None, True, id="not-exists-in-any-item"),
        pytest.param("items[].quantity", "not_exists", None, False, id="not-exists-but-some-have"),
        pytest.param("customer.tags", "contains", "newsletter", True, id="list-leaf-membership"),
    ],
)
def test_match_over_arrays_any_or_none(path: str, operator: str, value: Any, expected: bool) -> None:
    assert check(CART, path, operator, value) is expected


def test_match_not_equals_and_not_exists_over_empty_array() -> None:
    empty: dict[str, Any] = {"items": []}
    assert check(empty, "items[].title", "not_equals", "Jeans")
    assert check(empty, "items[].title", "not_exists")
    assert not check(empty, "items[].title", "exists")


def test_match_jeans_filter_admits_cart_with_jeans_and_refuses_one_without() -> None:
    jeans = [PropertyFilter.from_wire({"path": "items[].title", "operator": "contains", "value": "Jeans"})]
    with_jeans = {"items": [{"title": "Hat"}, {"title": "Slim Jeans"}, {"title": "Socks"}]}
    without = {"items": [{"title": "Shirt"}, {"title": "Hat"}]}
    assert filters.match(with_jeans, jeans).ok
    assert not filters.match(without, jeans).ok


def test_match_all_filters_must_hold_and_empty_list_passes() -> None:
    wanted = [
        PropertyFilter("currency", "equals", "EUR"),
        PropertyFilter("total", "greater_than_or_equal", 50),
        PropertyFilter("customer.vip", "equals", True),
    ]
    assert filters.match(CART, wanted).ok
    assert not filters.match(CART, [*wanted, PropertyFilter("currency", "equals", "USD")]).ok
    assert filters.match(CART, []).ok


# --- explain -------------------------------------------------------------------------------------------


def test_match_reason_names_filter_and_found_values() -> None:
    cart = {"items": [{"title": "Shirt"}, {"title": "Hat"}]}
    jeans = PropertyFilter("items[].title", "contains", "Jeans")
    result = filters.match(cart, [PropertyFilter("items", "exists"), jeans])
    assert not result.ok
    assert result.failed == jeans
    assert result.actual == ["Shirt", "Hat"]
    assert result.reason == "items[].title contains 'Jeans' failed: found ['Shirt', 'Hat']"


def test_match_reason_for_valueless_operator_and_missing_data() -> None:
    result = filters.match({}, [PropertyFilter("customer.email", "exists")])
    assert (result.ok, result.actual, result.reason) == (False, [], "customer.email exists failed: found []")


def test_match_success_has_no_failure() -> None:
    result = filters.match(CART, [PropertyFilter("total", "greater_than_or_equal", 75)])
    assert result == filters.Match(ok=True)
    assert bool(result)


# --- wire ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        pytest.param(
            {"path": "total", "operator": "bigger"}, "'total' 'bigger': unknown operator", id="unknown"
        ),
        pytest.param(
            {"path": "total", "operator": "equals"}, "'total' 'equals': needs a value", id="no-value"
        ),
        pytest.param(
            {"path": "total", "operator": "greater_than", "value": None}, "needs a value", id="null-value"
        ),
        pytest.param(
            {"path": "total", "operator": "greater_than", "value": "lots"}, "must be a number", id="gt-text"
        ),
        pytest.param(
            {"path": "c", "operator": "one_of", "value": "EUR"}, "non-empty list", id="one-of-scalar"
        ),
        pytest.param({"path": "c", "operator": "one_of", "value": []}, "non-empty list", id="one-of-empty"),
        pytest.param(
            {"path": "c", "operator": "one_of", "value": [{"a": 1}]}, "list items", id="one-of-dicts"
        ),
        pytest.param({"path": "c", "operator": "equals", "value": [1]}, "string, number", id="equals-list"),
        pytest.param({"path": "", "operator": "exists"}, "non-empty string path", id="empty-path"),
        pytest.param({"operator": "exists"}, "non-empty string path", id="no-path"),
        pytest.param({"path": "c"}, "'c' needs an operator", id="no-operator"),
        pytest.param({"path": "a..b", "operator": "exists"}, "bad path", id="bad-path"),
    ],
)
def test_property_filter_from_wire_rejects(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PropertyFilter.from_wire(wire)


def test_property_filter_from_wire_rejects_non_object() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        PropertyFilter.from_wire(["total"])  # type: ignore[arg-type]


def test_property_filter_constructor_validates_too() -> None:
    with pytest.raises(ValueError, match="unknown operator 'gte'"):
        PropertyFilter("total", "gte", 50)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(
            {"path": "items[].title", "operator": "contains", "value": "Jeans"},
            {"path": "items[].title", "operator": "contains", "value": "Jeans"},
            id="contains",
        ),
        pytest.param(
            {"path": "total", "operator": "gte", "value": 50},
            {"path": "total", "operator": "greater_than_or_equal", "value": 50},
            id="alias-is-canonicalised",
        ),
        pytest.param(
            {"path": "email", "operator": "exists", "value": None},
            {"path": "email", "operator": "exists"},
            id="valueless-drops-value",
        ),
        pytest.param(
            {"path": "c", "operator": "one_of", "value": ["EUR", 5, True]},
            {"path": "c", "operator": "one_of", "value": ["EUR", 5, True]},
            id="one-of",
        ),
    ],
)
def test_property_filter_wire_round_trip(wire: dict[str, Any], expected: dict[str, Any]) -> None:
    parsed = PropertyFilter.from_wire(wire)
    assert parsed.to_wire() == expected
    assert PropertyFilter.from_wire(parsed.to_wire()) == parsed


def test_property_filter_accepts_every_sequenzy_operator() -> None:
    for operator in filters.SEQUENZY_OPERATORS:
        value = ["a"] if operator == "one_of" else 1
        parsed = PropertyFilter.from_wire({"path": "x", "operator": operator, "value": value})
        assert parsed.operator == operator


# --- properties ----------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=5)
)


@given(values=st.lists(scalars, max_size=4), expected=st.one_of(st.integers(-5, 5), st.text(max_size=2)))
def test_match_negative_operators_are_complements_over_arrays(values: list[Any], expected: Any) -> None:
    data = {"items": [{"v": value} for value in values]}
    for positive, negative in (("equals", "not_equals"), ("contains", "not_contains")):
        holds = check(data, "items[].v", positive, expected)
        assert check(data, "items[].v", negative, expected) is not holds
    assert check(data, "items[].v", "exists") is not check(data, "items[].v", "not_exists")


@given(actual=st.one_of(st.integers(-100, 100), st.floats(-100, 100)), bound=st.integers(-100, 100))
def test_match_gte_is_gt_or_equals(actual: float, bound: int) -> None:
    data = {"v": actual}
    either = check(data, "v", "greater_than", bound) or check(data, "v", "equals", bound)
    assert check(data, "v", "greater_than_or_equal", bound) is either
    assert check({"v": str(actual)}, "v", "gte", str(bound)) is either
