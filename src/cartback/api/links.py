"""OpenAPI `links` between the API's operations: which answer's field names the object a later call reads,
changes or deletes (the subscriber a POST /api/v1/subscribers made is GET /api/v1/subscribers/{email}).

Clients and tools follow them to chain calls; the stateful fuzz test (tests/integration/test_stateful_fuzz.py)
builds its sequences of requests from them. Each link names its target by method and path here and is
written into /openapi.json with the target's operationId, so a renamed route fails `install`'s check
instead of leaving a link to nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI


@dataclass(frozen=True)
class Link:
    """From the `status` answer of `source` (method, path) to `target`, with the target's path
    parameters taken from runtime expressions (`$response.body#/...`, `$request.path.name`)."""

    source: tuple[str, str]
    status: str
    target: tuple[str, str]
    parameters: dict[str, str]


def _from(
    source: tuple[str, str], status: str, param: str, field: str, *targets: tuple[str, str], **extra: str
) -> list[Link]:
    """Links from one answer to each of `targets`, its path parameter `param` read from the body's `field`."""
    return [Link(source, status, t, {f"path.{param}": f"$response.body#{field}", **extra}) for t in targets]


_V1 = "/api/v1"
_SUBSCRIBER = f"{_V1}/subscribers/{{email}}"
_SEQUENCE = f"{_V1}/sequences/{{sequence_id}}"
_LIST = f"{_V1}/lists/{{list_id}}"
_TEMPLATE = f"{_V1}/transactional/{{id_or_slug}}"
_SUPPRESSION = f"{_V1}/suppressions/{{email}}"
_WEBHOOK = f"{_V1}/webhooks/{{webhook_id}}"
_PROFILE = "/api/profiles/{profile_id}"

LINKS: list[Link] = [
    *_from(
        ("post", f"{_V1}/subscribers"),
        "200",
        "email",
        "/subscriber/email",
        ("get", _SUBSCRIBER),
        ("patch", _SUBSCRIBER),
        ("delete", _SUBSCRIBER),
    ),
    *_from(
        ("post", f"{_V1}/sequences"),
        "200",
        "sequence_id",
        "/sequence/id",
        ("get", _SEQUENCE),
        ("put", _SEQUENCE),
        ("delete", _SEQUENCE),
        ("post", f"{_SEQUENCE}/enable"),
        ("post", f"{_SEQUENCE}/disable"),
        ("get", f"{_SEQUENCE}/enrollments"),
        ("post", f"{_SEQUENCE}/enrollments/cancel"),
        ("get", f"{_SEQUENCE}/stats"),
        ("get", f"{_SEQUENCE}/simulate"),
        ("get", f"{_SEQUENCE}/explain"),
        ("get", f"{_V1}/metrics/sequences/{{sequence_id}}"),
    ),
    *_from(
        ("post", f"{_V1}/lists"),
        "200",
        "list_id",
        "/list/id",
        ("patch", _LIST),
        ("delete", _LIST),
        ("post", f"{_LIST}/subscribers"),
        ("post", f"{_LIST}/subscribers/remove"),
    ),
    *_from(
        ("post", f"{_V1}/transactional"),
        "200",
        "id_or_slug",
        "/transactional/id",
        ("get", _TEMPLATE),
        ("patch", _TEMPLATE),
        ("delete", _TEMPLATE),
    ),
    *_from(
        ("post", f"{_V1}/suppressions"),
        "200",
        "email",
        "/suppression/email",
        ("get", _SUPPRESSION),
        ("delete", _SUPPRESSION),
    ),
    *_from(
        ("post", f"{_V1}/webhooks"),
        "200",
        "webhook_id",
        "/webhook/id",
        ("patch", _WEBHOOK),
        ("delete", _WEBHOOK),
        ("post", f"{_WEBHOOK}/test"),
        ("post", f"{_WEBHOOK}/secrets"),
        ("get", f"{_WEBHOOK}/deliveries"),
    ),
    *_from(
        ("post", f"{_WEBHOOK}/test"),
        "200",
        "delivery_id",
        "/delivery/id",
        ("get", f"{_WEBHOOK}/deliveries/{{delivery_id}}/attempts"),
        ("post", f"{_WEBHOOK}/deliveries/{{delivery_id}}/replay"),
        **{"path.webhook_id": "$request.path.webhook_id"},
    ),
    *_from(("post", "/api/profiles"), "201", "profile_id", "/data/id", ("get", _PROFILE)),
    *_from(("post", "/api/profile-import"), "201", "profile_id", "/data/id", ("get", _PROFILE)),
]


def add_links(document: dict[str, Any]) -> None:
    """Write LINKS into the document's responses; KeyError when a source or target is not in it."""
    paths = document["paths"]
    for link in LINKS:
        target = paths[link.target[1]][link.target[0]]
        response = paths[link.source[1]][link.source[0]]["responses"][link.status]
        name = f"{link.target[0].upper()} {link.target[1]}"
        response.setdefault("links", {})[name] = {
            "operationId": target["operationId"],
            "parameters": dict(link.parameters),
        }


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # The document is generated once and cached; writing the same links again changes nothing.
        schema = generate()
        add_links(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
