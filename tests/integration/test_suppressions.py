"""Suppressions API and inbound bounce/complaint notifications (generic, Amazon SES via SNS, Postmark),
on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import pytest


def _sub(client, email: str) -> dict:
    response = client.post("/subscribers", {"email": email})
    assert response.status_code == 200, response.text
    return client.get(f"/subscribers/{email}").json()["subscriber"]


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"sns:{key}".encode()).decode()}


def test_suppressions_add_list_get_remove(app_client):
    _sub(app_client, "a+b@example.com")
    created = app_client.post("/suppressions", {"email": "a+b@example.com", "reason": "bounced"})
    assert created.status_code == 200, created.text
    assert created.json()["created"] is True
    again = app_client.post("/suppressions", {"email": "A+B@example.com", "reason": "bounced"})
    assert again.json()["created"] is False
    app_client.post("/suppressions", {"email": "c@example.com", "reason": "complaint", "source": "dashboard"})
    app_client.post("/suppressions", {"email": "d@example.com", "reason": "unsubscribed"})

    listed = app_client.get("/suppressions", params={"sort": "email", "order": "asc"}).json()
    assert [s["email"] for s in listed["suppressions"]] == [
        "a+b@example.com",
        "c@example.com",
        "d@example.com",
    ]
    assert listed["pagination"]["total"] == 3
    by_email = {s["email"]: s for s in listed["suppressions"]}
    assert by_email["a+b@example.com"]["reason"] == "bounced"
    assert by_email["a+b@example.com"]["suppressionType"] == "unknown_hard_bounce"
    assert by_email["a+b@example.com"]["scope"] == "company"
    assert by_email["c@example.com"]["reason"] == "complaint"
    assert by_email["c@example.com"]["source"] == "dashboard"
    assert by_email["d@example.com"]["reason"] == "unsubscribed"
    assert app_client.get("/suppressions", params={"search": "c@ex"}).json()["total"] == 1
    page2 = app_client.get("/suppressions", params={"limit": 2, "page": 2, "sort": "email", "order": "asc"})
    assert [s["email"] for s in page2.json()["suppressions"]] == ["d@example.com"]

    got = app_client.get("/suppressions/a+b@example.com").json()
    assert got["suppression"]["suppressed"] is True
    assert got["suppression"]["knownRecipient"] is True
    assert got["suppression"]["local"]["reason"] == "bounced"
    assert app_client.get("/subscribers/a+b@example.com").json()["subscriber"]["status"] == "bounced"

    removed = app_client.delete("/suppressions/a+b@example.com")
    assert removed.status_code == 200, removed.text
    body = removed.json()
    assert body["removed"] is True and body["removedLocalBounce"] is True
    assert len(body["reactivatedSubscriberIds"]) == 1
    assert app_client.get("/subscribers/a+b@example.com").json()["subscriber"]["status"] == "active"
    assert app_client.get("/suppressions/a+b@example.com").json()["suppression"]["suppressed"] is False
    assert app_client.delete("/suppressions/a+b@example.com").status_code == 404


def test_suppressions_delete_unsubscribe_resubscribes_and_keeps_remaining_reasons(app_client):
    _sub(app_client, "u@example.com")
    app_client.post("/suppressions", {"email": "u@example.com", "reason": "unsubscribed"})
    app_client.post("/suppressions", {"email": "u@example.com", "reason": "bounced"})
    only_bounce = app_client.delete("/suppressions/u@example.com", params={"reason": "bounced"}).json()
    assert only_bounce["reactivatedSubscriberIds"] == []
    assert only_bounce["remainingSuppression"]["reason"] == "unsubscribed"
    assert app_client.get("/subscribers/u@example.com").json()["subscriber"]["status"] == "unsubscribed"
    everything = app_client.delete("/suppressions/u@example.com").json()
    assert everything["removedReasons"] == ["unsubscribed"]
    assert app_client.get("/subscribers/u@example.com").json()["subscriber"]["status"] == "active"


def test_suppressions_are_per_workspace(app_client):
    app_client.post("/suppressions", {"email": "iso@example.com", "reason": "bounced"})
    other = app_client.as_other_workspace()
    listed = app_client.http.get("/api/v1/suppressions", headers=other).json()
    assert listed["suppressions"] == []
    got = app_client.http.get("/api/v1/suppressions/iso@example.com", headers=other).json()
    assert got["suppression"]["suppressed"] is False
    assert app_client.http.delete("/api/v1/suppressions/iso@example.com", headers=other).status_code == 404
    assert app_client.get("/suppressions/iso@example.com").json()["suppression"]["suppressed"] is True


def test_suppressions_bad_input(app_client):
    assert app_client.post("/suppressions", {"email": "nope", "reason": "bounced"}).status_code == 400
    bad = app_client.post("/suppressions", {"email": "x@example.com", "reason": "sad"})
    assert bad.status_code == 400
    assert bad.json()["success"] is False
    assert app_client.get("/suppressions", params={"sort": "size"}).status_code == 400


# -- inbound ------------------------------------------------------------------------------------------


def test_inbound_generic_suppresses_idempotently_and_soft_bounces_do_not(app_client):
    _sub(app_client, "hard@example.com")
    _sub(app_client, "soft@example.com")
    notices = [
        {"type": "bounce", "email": "hard@example.com", "bounceType": "hard", "detail": "550 user unknown"},
        {"type": "complaint", "email": "spam@example.com"},
        {"type": "bounce", "email": "soft@example.com", "bounceType": "soft", "detail": "452 mailbox full"},
    ]
    first = app_client.post("/inbound/bounces", notices)
    assert first.status_code == 200, first.text
    assert [r["action"] for r in first.json()["results"]] == ["suppressed", "suppressed", "recorded"]
    replay = app_client.post("/inbound/bounces", notices).json()
    assert [r["action"] for r in replay["results"]] == [
        "already_suppressed",
        "already_suppressed",
        "recorded",
    ]

    listed = app_client.get("/suppressions").json()
    assert sorted(s["email"] for s in listed["suppressions"]) == ["hard@example.com", "spam@example.com"]
    hard = app_client.get("/suppressions/hard@example.com").json()["suppression"]
    assert hard["entries"][0]["detail"] == "550 user unknown"
    assert hard["entries"][0]["source"] == "webhook:generic"
    assert app_client.get("/subscribers/soft@example.com").json()["subscriber"]["status"] == "active"
    assert app_client.get("/subscribers/hard@example.com").json()["subscriber"]["status"] == "bounced"

    single = app_client.post("/inbound/bounces", {"type": "bounce", "email": "one@example.com"})
    assert single.json()["suppressed"] == 1


def test_inbound_soft_bounce_event_recorded_once(app_client, db):
    import sqlalchemy as sa

    from cartback.store.tables import events

    notice = {"type": "bounce", "email": "soft2@example.com", "bounceType": "soft", "id": "n-1"}
    app_client.post("/inbound/bounces", notice)
    app_client.post("/inbound/bounces", notice)
    app_client.post("/inbound/bounces", {**notice, "id": "n-2"})
    count = db.read_sync(
        lambda tx: tx.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.workspace_id == app_client.tenant.id, events.c.name == "email.delivery_delayed")
        ).scalar_one()
    )
    assert count == 2


def test_inbound_auth_bearer_or_basic(app_client):
    notice = {"type": "bounce", "email": "auth@example.com"}
    anonymous = app_client.http.post("/api/v1/inbound/bounces", json=notice, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert anonymous.json()["success"] is False
    wrong = app_client.http.post("/api/v1/inbound/bounces", json=notice, headers=_basic("cb_wrong"))
    assert wrong.status_code == 401
    basic = app_client.http.post(
        "/api/v1/inbound/bounces", json=notice, headers=_basic(app_client.tenant.key)
    )
    assert basic.status_code == 200, basic.text
    other = app_client.as_other_workspace()
    assert app_client.http.get("/api/v1/suppressions", headers=other).json()["suppressions"] == []


def _sns(message: dict, message_id: str = "sns-msg-1") -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-notices",
            "Message": json.dumps(message),
            "Timestamp": "2026-01-01T00:00:00.000Z",
        }
    )


SES_HARD = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "NoEmail",
        "bouncedRecipients": [{"emailAddress": "gone@example.com", "diagnosticCode": "smtp; 550 5.1.1"}],
        "feedbackId": "fb-1",
    },
    "mail": {"messageId": "m-1", "destination": ["gone@example.com"]},
}


def test_inbound_ses_via_sns_text_plain(app_client):
    headers = {**_basic(app_client.tenant.key), "Content-Type": "text/plain; charset=UTF-8"}
    post = app_client.http.post
    first = post("/api/v1/inbound/ses", content=_sns(SES_HARD), headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["suppressed"] == 1
    replay = post("/api/v1/inbound/ses", content=_sns(SES_HARD), headers=headers).json()
    assert replay["results"][0]["action"] == "already_suppressed"
    entry = app_client.get("/suppressions/gone@example.com").json()["suppression"]["entries"][0]
    assert entry["suppressionType"] == "invalid_recipient"
    assert (entry["bounceType"], entry["bounceSubType"], entry["source"]) == (
        "Permanent",
        "NoEmail",
        "webhook:ses",
    )

    bounce = {**SES_HARD["bounce"], "bounceType": "Transient"}
    transient = {
        **SES_HARD,
        "bounce": {**bounce, "bouncedRecipients": [{"emailAddress": "full@example.com"}]},
    }
    soft = post("/api/v1/inbound/ses", content=_sns(transient, "sns-msg-2"), headers=headers).json()
    assert soft["results"][0]["action"] == "recorded"
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "Angry <angry@example.com>"}],
            "feedbackId": "c1",
        },
        "mail": {"messageId": "m-2"},
    }
    got = post("/api/v1/inbound/ses", content=_sns(complaint, "sns-msg-3"), headers=headers).json()
    assert got["results"] == [{"email": "angry@example.com", "kind": "complaint", "action": "suppressed"}]
    delivery = {"notificationType": "Delivery", "mail": {"messageId": "m-3"}}
    ignored = post("/api/v1/inbound/ses", content=_sns(delivery, "sns-msg-4"), headers=headers).json()
    assert ignored["processed"] == 0 and ignored["ignored"] == "Delivery"
    emails = sorted(s["email"] for s in app_client.get("/suppressions").json()["suppressions"])
    assert emails == ["angry@example.com", "gone@example.com"]
    # text/plain stays refused elsewhere under /api/.
    assert post("/api/v1/inbound/bounces", content="{}", headers=headers).status_code == 415


def test_inbound_ses_raw_event_and_subscription_confirmation(app_client):
    raw = {**SES_HARD, "eventType": "Bounce"}
    del raw["notificationType"]
    raw["bounce"] = {**SES_HARD["bounce"], "bouncedRecipients": [{"emailAddress": "raw@example.com"}]}
    assert app_client.post("/inbound/ses", raw).json()["suppressed"] == 1

    confirmation = {
        "Type": "SubscriptionConfirmation",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-notices",
        "SubscribeURL": "http://127.0.0.1:9/confirm?Token=abc",
        "Token": "abc",
    }
    confirmed = app_client.post("/inbound/ses", confirmation)
    assert confirmed.status_code == 200
    # Not an SNS host: logged, never fetched.
    assert confirmed.json()["confirmed"] is False
    assert confirmed.json()["subscribeUrl"] == confirmation["SubscribeURL"]
    unreadable = app_client.post(
        "/inbound/ses", {**confirmation, "SubscribeURL": "https://[sns.amazonaws.com/"}
    )
    assert unreadable.status_code == 200 and unreadable.json()["confirmed"] is False
    assert app_client.post("/inbound/ses", {"Type": "Notification", "Message": "not json"}).status_code == 400


def test_inbound_postmark_bounce_complaint_and_soft(app_client):
    hard = {
        "RecordType": "Bounce",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": "pm-hard@example.com",
        "Description": "The server was unable to deliver your message",
        "Inactive": True,
    }
    first = app_client.post("/inbound/postmark", hard).json()
    assert first["suppressed"] == 1
    assert app_client.post("/inbound/postmark", hard).json()["results"][0]["action"] == "already_suppressed"
    spam = {"RecordType": "SpamComplaint", "ID": 2, "Type": "SpamComplaint", "Email": "pm-spam@example.com"}
    assert app_client.post("/inbound/postmark", spam).json()["suppressed"] == 1
    soft = {"RecordType": "Bounce", "ID": 3, "Type": "SoftBounce", "Email": "pm-soft@example.com"}
    assert app_client.post("/inbound/postmark", soft).json()["results"][0]["action"] == "recorded"
    delivery = {"RecordType": "Delivery", "Recipient": "x@example.com"}
    assert app_client.post("/inbound/postmark", delivery).json()["processed"] == 0
    listed = {s["email"]: s for s in app_client.get("/suppressions").json()["suppressions"]}
    assert sorted(listed) == ["pm-hard@example.com", "pm-spam@example.com"]
    assert listed["pm-hard@example.com"]["source"] == "webhook:postmark"
    assert listed["pm-spam@example.com"]["reason"] == "complaint"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "bounce"},
        {"type": "nope", "email": "a@example.com"},
        [{"type": "bounce", "email": "bad"}],
    ],
)
def test_inbound_generic_bad_input(app_client, body):
    response = app_client.post("/inbound/bounces", body)
    assert response.status_code == 400
    assert response.json()["success"] is False
