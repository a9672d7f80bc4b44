"""The Sequenzy sequences API: definitions, graph edits, validation, isolation."""

from __future__ import annotations

import pytest

FLOW = {
    "name": "Abandoned checkout",
    "trigger": "event_received",
    "eventName": "Checkout Started",
    "steps": [
        {
            "type": "email",
            "delay": {"hours": 1},
            "subject": "Your cart",
            "html": "<p>{{ event.checkoutUrl }}</p>",
        },
        {"type": "email", "delay": {"days": 1}, "subject": "Still there?", "html": "<p>again</p>"},
    ],
}


def create(app_client, body=FLOW) -> dict:
    res = app_client.post("/sequences", body)
    assert res.status_code == 200, res.text
    return res.json()["sequence"]


def test_create_is_a_draft_with_canonical_trigger_and_a_chain_of_nodes(app_client):
    seq = create(app_client)
    assert seq["status"] == "draft" and seq["effectiveStatus"] == "draft"
    assert seq["eventName"] == "ecommerce.checkout_started"
    assert [n["nodeType"] for n in seq["nodes"]] == [
        "logic_delay",
        "action_email",
        "logic_delay",
        "action_email",
    ]
    assert [(e["sourceNodeId"], e["targetNodeId"]) for e in seq["edges"]] == [
        ("node_1", "node_2"),
        ("node_2", "node_3"),
        ("node_3", "node_4"),
    ]
    assert seq["stopOnOrder"] is True  # a checkout flow stops on any order unless it says otherwise
    enabled = app_client.post(f"/sequences/{seq['id']}/enable").json()
    assert (enabled["status"], enabled["effectiveStatus"], enabled["acceptsNewEnrollments"]) == (
        "active",
        "live",
        True,
    )
    assert app_client.post(f"/sequences/{seq['id']}/disable").json()["status"] == "paused"


def test_update_edits_emails_by_node_id_and_inserts_steps(app_client):
    seq = create(app_client)
    res = app_client.http.put(
        f"/api/v1/sequences/{seq['id']}",
        json={
            "steps": [{"nodeId": "node_2", "subject": "Forgot something?"}],
            "insertSteps": {
                "afterNodeId": "node_2",
                "steps": [{"nodeType": "action_add_tag", "config": {"tagName": "reminded"}}],
            },
        },
    )
    assert res.status_code == 200, res.text
    updated = res.json()["sequence"]
    nodes = {n["id"]: n for n in updated["nodes"]}
    assert nodes["node_2"]["config"]["subject"] == "Forgot something?"
    assert nodes["node_2"]["config"]["html"] == "<p>{{ event.checkoutUrl }}</p>"
    assert ("node_2", "node_5") in [(e["sourceNodeId"], e["targetNodeId"]) for e in updated["edges"]]
    assert ("node_5", "node_3") in [(e["sourceNodeId"], e["targetNodeId"]) for e in updated["edges"]]
    assert updated["graphRevision"] == "2"


def test_update_branch_and_delete_node(app_client):
    seq = create(app_client)
    res = app_client.http.put(
        f"/api/v1/sequences/{seq['id']}",
        json={
            "branch": {
                "afterNodeId": "node_2",
                "branches": [
                    {
                        "conditionType": "has_tag",
                        "tagName": "vip",
                        "steps": [{"type": "email", "subject": "VIP offer", "html": "<p>10% off</p>"}],
                    }
                ],
            }
        },
    )
    assert res.status_code == 200, res.text
    nodes = {n["id"]: n for n in res.json()["sequence"]["nodes"]}
    condition = next(n for n in nodes.values() if n["type"] == "condition")
    edges = {(e["sourceNodeId"], e["targetNodeId"], e["condition"]) for e in res.json()["sequence"]["edges"]}
    assert ("node_2", condition["id"], None) in edges
    assert (condition["id"], "node_3", "else") in edges  # without elseSteps the old flow continues
    res = app_client.http.put(
        f"/api/v1/sequences/{seq['id']}",
        json={"graphEdit": {"action": "delete_node", "nodeId": "node_3", "expectedRevision": "2"}},
    )
    assert res.status_code == 200, res.text
    edges = {(e["sourceNodeId"], e["targetNodeId"], e["condition"]) for e in res.json()["sequence"]["edges"]}
    assert (condition["id"], "node_4", "else") in edges


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({**FLOW, "steps": [{"type": "email", "subject": "x", "html": "<p>\n{% if %}\n</p>"}]}, "line 2"),
        ({**FLOW, "steps": [{"type": "email", "subject": "{{ oops }", "html": "<p>x</p>"}]}, "subject"),
        ({**FLOW, "trigger": "teleport"}, "unknown trigger"),
        ({**FLOW, "trigger": "event_received", "eventName": ""}, "eventName"),
        ({**FLOW, "enrollmentMode": "matching_field"}, "enrollmentFieldPath"),
        ({**FLOW, "steps": [{"type": "sms", "text": "hi"}]}, "not supported"),
        ({**FLOW, "steps": [{"type": "email", "html": "<p>x</p>"}]}, "subject is required"),
        (
            {**FLOW, "propertyFilters": [{"path": "value", "operator": "bigger", "value": 1}]},
            "propertyFilters",
        ),
        (
            {
                **FLOW,
                "stopCondition": {"type": "event_received", "value": "x", "matchConfig": {"mode": "nope"}},
            },
            "matchConfig.mode",
        ),
        ({**FLOW, "sendingWindow": {"enabled": True, "timezone": "Mars/Olympus"}}, "sendingWindow"),
        (
            {**FLOW, "steps": [{"type": "email", "delay": {"hours": -1}, "subject": "x", "text": "y"}]},
            "delay.hours",
        ),
        ({"trigger": "manual"}, "name"),
    ],
    ids=[
        "html-syntax-line",
        "subject-syntax",
        "trigger",
        "event-name",
        "matching-field-path",
        "sms",
        "no-subject",
        "filter-operator",
        "match-mode",
        "timezone",
        "negative-delay",
        "no-name",
    ],
)
def test_invalid_definitions_are_refused_with_where(app_client, body, needle):
    res = app_client.post("/sequences", body)
    assert res.status_code == 400, res.text
    assert res.json()["success"] is False
    assert needle in res.json()["error"]


def test_enable_needs_steps_and_sequences_are_per_workspace(app_client):
    empty = create(app_client, {"name": "empty", "trigger": "contact_added"})
    assert app_client.post(f"/sequences/{empty['id']}/enable").status_code == 400
    seq = create(app_client)
    other = app_client.as_other_workspace()
    assert app_client.http.get(f"/api/v1/sequences/{seq['id']}", headers=other).status_code == 404
    assert app_client.http.post(f"/api/v1/sequences/{seq['id']}/enable", headers=other).status_code == 404
    assert app_client.get(f"/sequences/{seq['id']}").json()["sequence"]["status"] == "draft"
    listed = app_client.get("/sequences").json()
    assert {s["id"] for s in listed["sequences"]} == {empty["id"], seq["id"]}
    app_client.delete(f"/sequences/{seq['id']}")
    assert {s["id"] for s in app_client.get("/sequences").json()["sequences"]} == {empty["id"]}
    assert app_client.get("/sequences", params={"status": "archived"}).json()["pagination"]["total"] == 1


def test_frequency_cap_roundtrip(app_client):
    assert app_client.get("/frequency-cap").json()["frequencyCap"] is None
    res = app_client.http.put("/api/v1/frequency-cap", json={"maxEmails": 1, "windowHours": 16})
    assert res.json()["frequencyCap"] == {"maxEmails": 1, "windowHours": 16, "action": "skip"}
    assert app_client.get("/frequency-cap").json()["frequencyCap"]["windowHours"] == 16
    assert app_client.delete("/frequency-cap").json()["frequencyCap"] is None


def test_email_step_can_use_the_shipped_abandoned_cart_template(app_client):
    body = {**FLOW, "steps": [{"type": "email", "delay": {"hours": 1}, "template": "abandoned_cart"}]}
    seq = create(app_client, body)
    email = next(n for n in seq["nodes"] if n["type"] == "email")
    assert email["config"]["subject"] and "checkoutUrl" in email["config"]["html"]
    bad = app_client.post("/sequences", {**FLOW, "steps": [{"type": "email", "template": "nope"}]})
    assert bad.status_code == 400 and "unknown template" in bad.json()["error"]


NESTED_LOOPS = "{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}"


def test_a_template_over_the_render_limits_is_refused_at_save_naming_the_step(app_client):
    import time

    steps = [FLOW["steps"][0], {**FLOW["steps"][1], "html": "<p>again</p>" + NESTED_LOOPS}]
    started = time.perf_counter()
    res = app_client.post("/sequences", {**FLOW, "steps": steps})
    assert time.perf_counter() - started < 2
    assert res.status_code == 400, res.text
    error = res.json()["error"]
    assert res.json()["success"] is False
    assert "steps (" in error and ".html: template exceeds the resource limits" in error
    assert "more than 10,000 loop iterations" in error and "line 1" in error
    seq = create(app_client)
    edit = app_client.http.put(
        f"/api/v1/sequences/{seq['id']}", json={"steps": [{"nodeId": "node_2", "html": NESTED_LOOPS}]}
    )
    assert edit.status_code == 400 and "steps (node_2).html" in edit.json()["error"]
    assert "loop iterations" in edit.json()["error"]
    kept = app_client.get(f"/sequences/{seq['id']}").json()["sequence"]
    assert {n["id"]: n for n in kept["nodes"]}["node_2"]["config"]["html"] == FLOW["steps"][0]["html"]


def _email(delay: object) -> dict:
    return {"type": "email", "delay": delay, "subject": "Your cart", "text": "Come back"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {**FLOW, "steps": [_email({"hour": 1})]},
            'steps[0].delay.hour: unknown key; did you mean "hours"?',
        ),
        (
            {**FLOW, "steps": [_email({"mins": 30})]},
            'steps[0].delay.mins: unknown key; did you mean "minutes"?',
        ),
        (
            {**FLOW, "steps": [_email({"seconds": 30})]},
            "steps[0].delay.seconds: unknown key; known keys: days,",
        ),
        ({**FLOW, "steps": [_email({})]}, "steps[0].delay: set days, hours or minutes"),
        (
            {**FLOW, "stopConditon": {"type": "none"}},
            'stopConditon: unknown key; did you mean "stopCondition"?',
        ),
        (
            {**FLOW, "stopCondition": {"type": "event_received", "value": "x", "matchConfig": {"mod": "x"}}},
            'stopCondition.matchConfig.mod: unknown key; did you mean "mode"?',
        ),
        (
            {**FLOW, "steps": [{**_email({"hours": 1}), "subjet": "x"}]},
            'steps[0].subjet: unknown key; did you mean "subject"?',
        ),
    ],
    ids=["hour", "mins", "seconds", "empty-delay", "top-level", "match-config", "step"],
)
def test_an_unknown_key_or_an_empty_delay_is_refused_by_path_and_nothing_is_stored(app_client, body, message):
    res = app_client.post("/sequences", body)
    assert res.status_code == 400, res.text
    assert message in res.json()["error"]
    assert app_client.get("/sequences").json()["pagination"]["total"] == 0


def test_an_unknown_key_in_an_update_is_refused_and_the_definition_kept(app_client):
    seq = create(app_client)
    res = app_client.http.put(
        f"/api/v1/sequences/{seq['id']}",
        json={"steps": [{"type": "email", "delay": {"hour": 2}, "subject": "x", "text": "y"}]},
    )
    assert res.status_code == 400 and "steps[0].delay.hour" in res.json()["error"]
    kept = app_client.get(f"/sequences/{seq['id']}").json()["sequence"]
    assert (kept["graphRevision"], kept["nodes"][0]["config"]) == ("1", {"mode": "duration", "hours": 1})


def test_an_event_name_never_received_is_accepted_with_a_warning(app_client):
    res = app_client.post("/sequences", {**FLOW, "eventName": "checkout_started"})
    assert res.status_code == 200, res.text
    assert [w for w in res.json()["warnings"] if "checkout_started" in w] == [
        "eventName: no event named 'checkout_started' has been received in this workspace yet; "
        'did you mean "ecommerce.checkout_started"?'
    ]
    stop = {"type": "event_received", "value": "Payment Failed"}
    assert any(
        "stopCondition.value" in w
        for w in app_client.post("/sequences", {**FLOW, "stopCondition": stop}).json()["warnings"]
    )
    # Canonical names and aliases never warn; a custom name does not once the workspace has received it.
    assert not any("no event named" in w for w in app_client.post("/sequences", FLOW).json()["warnings"])
    assert (
        app_client.post(
            "/subscribers/events", {"email": "a@example.com", "event": "Payment Failed"}
        ).status_code
        < 300
    )
    again = app_client.post("/sequences", {**FLOW, "stopCondition": stop}).json()["warnings"]
    assert not any("no event named" in w for w in again)
