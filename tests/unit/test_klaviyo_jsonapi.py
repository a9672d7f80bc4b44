"""The page cursor in the three forms the Klaviyo SDK sends it, and the error objects' shapes."""

from __future__ import annotations

import json

import pytest

from cartback import errors
from cartback.api import errors as api_errors
from cartback.api.klaviyo import jsonapi


def test_jsonapi_page_cursor_accepts_token_equals_token_and_full_links():
    token = jsonapi.encode_cursor(["2026-01-01T00:00:00+00:00", "evt_1"])
    assert jsonapi.page_cursor(token) == token
    assert jsonapi.page_cursor("=" + token) == token
    link = f"http://127.0.0.1:8000/api/events?filter=x&page%5Bsize%5D=3&page%5Bcursor%5D={token}"
    assert jsonapi.page_cursor(link) == token
    assert jsonapi.page_cursor(f"https://h/api/events?page[cursor]={token}&x=1") == token
    assert jsonapi.page_cursor(None) is None
    assert jsonapi.decode_cursor(token, 2) == ["2026-01-01T00:00:00+00:00", "evt_1"]


@pytest.mark.parametrize("raw", ["http://h/api/events?page[size]=3", "!!!", "e30", "WzFd"])
def test_jsonapi_bad_cursors_are_400_naming_the_parameter(raw):
    with pytest.raises(jsonapi.Problem) as info:
        token = jsonapi.page_cursor(raw)
        jsonapi.decode_cursor(token or "", 2)
    assert info.value.status_code == 400
    assert info.value.parameter == "page[cursor]"


def test_jsonapi_error_objects_carry_every_member_klaviyo_sends():
    response = jsonapi.render_error(errors.NotFound("gone"))
    body = json.loads(response.body)
    (error,) = body["errors"]
    assert error["status"] == 404 and error["code"] == "not_found" and error["detail"] == "gone"
    assert error["title"] == "Not found." and error["source"] == {"pointer": "/data/"}
    assert response.media_type == "application/vnd.api+json"

    duplicate = jsonapi.Problem(
        409, "taken", code="duplicate_profile", meta={"duplicate_profile_id": "sub_1"}
    )
    (error,) = json.loads(jsonapi.render_error(duplicate).body)["errors"]
    assert error["meta"] == {"duplicate_profile_id": "sub_1"}


def test_jsonapi_validation_errors_point_at_each_member():
    problems = [
        {"loc": ("body", "data", "attributes", "metric"), "type": "missing", "msg": "Field required"},
        {"loc": ("query", "page[size]"), "type": "less_than_equal", "msg": "too big"},
        {"loc": ("header", "revision"), "type": "missing", "msg": "Field required"},
    ]
    failed = api_errors.ValidationFailed("bad", problems)
    body = json.loads(jsonapi.render_error(failed).body)
    assert [e["source"] for e in body["errors"]] == [
        {"pointer": "/data/attributes/metric"},
        {"parameter": "page[size]"},
        {"parameter": "revision"},
    ]
    assert body["errors"][0]["detail"] == "'metric' is a required field."
