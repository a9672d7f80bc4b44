"""Transactional sends and templates, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from cartback.store.messages import MESSAGE_COLUMNS, WITH_BODY
from cartback.store.tables import message_delivery, messages


def _messages(db, workspace_id: str) -> list:
    return db.read_sync(
        lambda tx: tx.execute(
            sa.select(
                *MESSAGE_COLUMNS, message_delivery.c.next_attempt_at, message_delivery.c.idempotency_key
            )
            .select_from(WITH_BODY)
            .join(message_delivery, message_delivery.c.message_id == messages.c.id)
            .where(messages.c.workspace_id == workspace_id)
            .order_by(messages.c.created_at, messages.c.id)
        ).all()
    )


def test_transactional_template_crud_and_syntax_errors(app_client):
    bad = app_client.post(
        "/transactional", {"name": "Receipt", "subject": "Hi", "html": "<p>ok</p>\n<p>{% bogus %}</p>"}
    )
    assert bad.status_code == 400
    assert "line 2" in bad.json()["error"]
    assert "html" in bad.json()["error"]

    created = app_client.post(
        "/transactional",
        {"name": "Order Receipt", "subject": "Order {{ orderId }}", "html": "<p>Hi {{ firstName }}</p>"},
    )
    assert created.status_code == 200, created.text
    tpl = created.json()["transactional"]
    assert tpl["slug"] == "order-receipt"
    assert tpl["variables"] == ["orderId"]
    assert app_client.post("/transactional", {"name": "Order Receipt"}).status_code == 409

    assert app_client.get("/transactional/order-receipt").json()["transactional"]["id"] == tpl["id"]
    assert app_client.get(f"/transactional/{tpl['id']}").json()["transactional"]["slug"] == "order-receipt"
    assert [t["slug"] for t in app_client.get("/transactional").json()["transactional"]] == ["order-receipt"]

    patched = app_client.patch("/transactional/order-receipt", {"subject": "Your order {{ orderId }}"})
    assert patched.json()["transactional"]["subject"] == "Your order {{ orderId }}"
    broken = app_client.patch("/transactional/order-receipt", {"subject": "{{ orderId "})
    assert broken.status_code == 400
    assert "subject" in broken.json()["error"] and "line 1" in broken.json()["error"]

    other = app_client.as_other_workspace()
    assert app_client.http.get("/api/v1/transactional/order-receipt", headers=other).status_code == 404

    deleted = app_client.delete("/transactional/order-receipt")
    assert deleted.json()["deleted"]["slug"] == "order-receipt"
    assert app_client.get("/transactional/order-receipt").status_code == 404


def test_transactional_send_queues_one_message_per_recipient(app_client, db):
    app_client.post("/subscribers", {"email": "jane@example.com", "firstName": "Jane"})
    app_client.post(
        "/transactional", {"name": "Welcome", "subject": "Hi {{ firstName }}", "html": "<p>{{ code }}</p>"}
    )
    sent = app_client.post(
        "/transactional/send",
        {
            "to": ["jane@example.com", "bob@example.com", "JANE@example.com"],
            "slug": "welcome",
            "variables": {"code": "<b>42</b>", "extra": 1},
        },
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["to"] == ["jane@example.com", "bob@example.com"]
    assert body["emailSendId"].startswith("msg_")
    assert body["idempotentReplay"] is False
    assert body["transactional"]["slug"] == "welcome"
    diag = body["diagnostics"]
    assert set(diag) >= {"status", "message", "missingRequiredVariables", "unusedVariables"}
    assert [v["name"] for v in diag["unusedVariables"]] == ["extra"]

    rows = _messages(db, app_client.tenant.id)
    assert [(r.to_email, r.kind, r.status) for r in rows] == [
        ("jane@example.com", "transactional", "queued"),
        ("bob@example.com", "transactional", "queued"),
    ]
    assert rows[0].subject == "Hi Jane"
    assert rows[0].subscriber_id is not None and rows[1].subscriber_id is None
    assert "&lt;b&gt;42&lt;/b&gt;" in rows[0].html
    assert all(r.next_attempt_at is not None for r in rows)


def test_transactional_send_idempotency_key(app_client, db):
    request = {"to": "key@example.com", "subject": "Receipt", "body": "<p>Thanks</p>"}
    headers = {"Idempotency-Key": "order-1001"}
    first = app_client.post("/transactional/send", request, headers=headers).json()
    replay = app_client.post("/transactional/send", request, headers=headers)
    assert replay.status_code == 200
    assert replay.json()["emailSendId"] == first["emailSendId"]
    assert replay.json()["idempotentReplay"] is True
    changed = app_client.post("/transactional/send", {**request, "body": "<p>Other</p>"}, headers=headers)
    assert changed.status_code == 409
    assert changed.json()["success"] is False
    assert len(_messages(db, app_client.tenant.id)) == 1
    # The same key in another workspace is another send.
    other = app_client.as_other_workspace()
    elsewhere = app_client.http.post("/api/v1/transactional/send", json=request, headers={**other, **headers})
    assert elsewhere.json()["idempotentReplay"] is False

    many = {"to": ["m1@example.com", "m2@example.com"], "subject": "S", "html": "<p>x</p>"}
    a = app_client.post("/transactional/send", many, headers={"Idempotency-Key": "k2"}).json()
    b = app_client.post("/transactional/send", many, headers={"Idempotency-Key": "k2"}).json()
    assert [r["emailSendId"] for r in a["recipients"]] == [r["emailSendId"] for r in b["recipients"]]
    assert len(_messages(db, app_client.tenant.id)) == 3


def test_transactional_send_skips_bounced_but_reaches_unsubscribed(app_client, db):
    for email, reason in (("bounced@example.com", "bounced"), ("unsub@example.com", "unsubscribed")):
        app_client.post("/suppressions", {"email": email, "reason": reason})
    sent = app_client.post(
        "/transactional/send",
        {"to": ["bounced@example.com", "unsub@example.com"], "subject": "S", "body": "<p>x</p>"},
        headers={"Idempotency-Key": "sup-1"},
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["suppressed"] == [{"email": "bounced@example.com", "reason": "address bounced (api)"}]
    assert "bounced@example.com" in body["diagnostics"]["message"]
    rows = {r.to_email: r for r in _messages(db, app_client.tenant.id)}
    assert rows["bounced@example.com"].status == "suppressed"
    assert rows["bounced@example.com"].next_attempt_at is None
    assert rows["unsub@example.com"].status == "queued"
    replay = app_client.post(
        "/transactional/send",
        {"to": ["bounced@example.com", "unsub@example.com"], "subject": "S", "body": "<p>x</p>"},
        headers={"Idempotency-Key": "sup-1"},
    ).json()
    assert replay["idempotentReplay"] is True and len(_messages(db, app_client.tenant.id)) == 2

    marketing = app_client.post(
        "/transactional/send",
        {
            "to": "unsub@example.com",
            "subject": "Sale",
            "body": "<p>{{ unsubscribe_url }}</p>",
            "emailType": "marketing",
        },
    ).json()
    assert marketing["emailType"] == "marketing"
    assert marketing["recipients"][0]["status"] == "suppressed"
    fresh = app_client.post(
        "/transactional/send",
        {
            "to": "new@example.com",
            "subject": "Hi",
            "body": "<a href='{{ unsubscribe_url }}'>u</a>",
            "emailType": "marketing",
        },
    ).json()
    assert fresh["recipients"][0]["status"] == "queued"
    assert app_client.get("/subscribers/new@example.com").status_code == 200
    row = {r.to_email: r for r in _messages(db, app_client.tenant.id)}["new@example.com"]
    assert row.kind == "marketing" and "/u/" in row.html


def test_transactional_send_preview_headers_and_errors(app_client, db):
    preview = app_client.post(
        "/transactional/send",
        {
            "to": "p@example.com",
            "subject": "Hi {{ name }}",
            "body": "<p>{{ missing }}</p>",
            "preview": True,
            "variables": {"name": "Pat"},
        },
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["preview"] is True and body["emailSendId"] is None
    assert body["rendered"][0]["subject"] == "Hi Pat"
    assert [v["name"] for v in body["diagnostics"]["missingRequiredVariables"]] == ["missing"]
    assert _messages(db, app_client.tenant.id) == []

    text_preview = app_client.post(
        "/transactional/send",
        {
            "to": "p@example.com",
            "subject": "S",
            "body": "<p>x</p>",
            "preview": "Your receipt inside",
            "headers": {"X-Campaign": "a", "Subject": "no", "bad name": "v"},
        },
    )
    assert text_preview.status_code == 200
    assert {h["name"]: h["reason"] for h in text_preview.json()["ignoredHeaders"]} == {
        "Subject": "reserved",
        "bad name": "invalid_name",
    }
    assert _messages(db, app_client.tenant.id)[0].preheader == "Your receipt inside"

    def status(payload: dict) -> int:
        return app_client.post("/transactional/send", payload).status_code

    assert status({"to": "a@example.com", "slug": "nope"}) == 404
    assert status({"to": "a@example.com", "subject": "S"}) == 400
    assert status({"to": "a@example.com", "subject": "S", "body": "{% if %}"}) == 400
    assert status({"to": "a@example.com", "subject": "S", "body": "b", "html": "c"}) == 400
    assert status({"to": "a@example.com", "subject": "S", "body": "b", "cc": ["c@example.com"]}) == 400
    assert status({"to": "nope", "subject": "S", "body": "b"}) == 400
    for bad in ("not an address", "a,b@example.com", "a@@example.com", "a<b>@example.com"):
        assert status({"to": "a@example.com", "subject": "S", "body": "b", "replyTo": bad}) == 400, bad
    assert status({"to": "a@example.com", "subject": "S", "body": "b", "replyToName": "Desk"}) == 400
    assert status({"to": "a@example.com", "subject": "S", "body": "b", "from": "not an address"}) == 400
    named = {"to": "a@example.com", "subject": "S", "body": "b", "replyTo": "help@example.com"}
    assert status({**named, "replyToName": "Help\r\nBcc: x@evil.example"}) == 400
    assert status({**named, "fromEmail": "shop@example.com", "fromName": "Shop\nX: y"}) == 400
    assert (
        status(
            {"to": ["a@example.com", "b@example.com"], "subject": "S", "body": "b", "emailType": "marketing"}
        )
        == 400
    )
    assert (
        status(
            {"to": "a@example.com", "subject": "S", "body": "b", "from": "x", "fromEmail": "f@example.com"}
        )
        == 400
    )


def test_transactional_send_applies_reply_to_and_custom_headers(app_client, db):
    sent = app_client.post(
        "/transactional/send",
        {
            "to": "pat@example.com",
            "subject": "Your receipt",
            "body": "<p>Thanks</p>",
            "replyTo": "help@shop.example.com",
            "replyToName": "Help, Desk",
            "headers": {
                "X-Campaign": "spring-sale",
                "X-Order-Ref": "A-1001",
                "Subject": "no",
                "From": "x@y.z",
            },
        },
    )
    assert sent.status_code == 200, sent.text
    assert {h["name"]: h["reason"] for h in sent.json()["ignoredHeaders"]} == {
        "Subject": "reserved",
        "From": "reserved",
    }
    assert "warnings" not in sent.json()
    (row,) = _messages(db, app_client.tenant.id)
    assert row.reply_to == '"Help, Desk" <help@shop.example.com>'
    assert row.headers == {"X-Campaign": "spring-sale", "X-Order-Ref": "A-1001"}


NESTED_LOOPS = "{% for i in (1..3000) %}{% for j in (1..3000) %}{% endfor %}{% endfor %}"


def test_transactional_templates_over_the_render_limits_are_refused_and_fail_their_send(app_client, db):
    """Refused at save (create and update) and in a preview or send of direct content, each a quick 400
    naming the field; a template stored over the limits anyway (written before the check) fails its own
    send with the reason and stores nothing, while other sends go on."""
    import time

    from cartback.store.tables import transactional_templates

    started = time.perf_counter()
    created = app_client.post("/transactional", {"name": "Heavy", "subject": "Hi", "html": NESTED_LOOPS})
    assert created.status_code == 400
    assert created.json()["error"].startswith("html: template exceeds the resource limits")
    ok = app_client.post("/transactional", {"name": "Light", "subject": "Hi", "html": "<p>ok</p>"})
    assert ok.status_code == 200
    patched = app_client.patch("/transactional/light", {"subject": NESTED_LOOPS})
    assert patched.status_code == 400 and "subject: template exceeds" in patched.json()["error"]
    for preview in (True, None):
        sent = app_client.post(
            "/transactional/send",
            {"to": "p@example.com", "subject": "S", "body": "<p>x</p>" + NESTED_LOOPS, "preview": preview},
        )
        assert sent.status_code == 400 and "more than 10,000 loop iterations" in sent.json()["error"]
    assert time.perf_counter() - started < 5

    db.write_sync(
        lambda tx: tx.execute(
            transactional_templates.update()
            .where(
                transactional_templates.c.workspace_id == app_client.tenant.id,
                transactional_templates.c.slug == "light",
            )
            .values(html="<p>stored</p>" + NESTED_LOOPS)
        )
    )
    stored = app_client.post("/transactional/send", {"to": "p@example.com", "slug": "light"})
    assert stored.status_code == 400, stored.text
    assert "html: template exceeds the resource limits" in stored.json()["error"]
    assert _messages(db, app_client.tenant.id) == []
    fine = app_client.post("/transactional/send", {"to": "q@example.com", "subject": "S", "body": "<p>b</p>"})
    assert fine.status_code == 200
    assert [m.to_email for m in _messages(db, app_client.tenant.id)] == ["q@example.com"]


@pytest.mark.parametrize(
    "body",
    [
        {"to": [], "fromName": None},
        {"to": [], "slug": "", "subject": "", "body": "", "from": "", "fromName": "", "headers": {}},
    ],
    ids=["no-recipient", "empty-fields"],
)
def test_transactional_send_without_a_recipient_is_a_400(app_client, db, body):
    """Found by the OpenAPI fuzz run: an empty `to` list was a 500."""
    res = app_client.post("/transactional/send", body, headers={"Idempotency-Key": "k-" + str(len(body))})
    assert res.status_code == 400, res.text
    assert res.json()["success"] is False
    assert "to" in res.json()["error"]
