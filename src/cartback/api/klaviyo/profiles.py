"""Profiles: GET /api/profiles (filter, sort, cursor pages), GET /api/profiles/{id}, POST /api/profiles
(create_profile: 201, or 409 duplicate_profile naming the existing profile in `meta`) and
POST /api/profile-import (create_or_update_profile: 201 created, 200 updated).

A profile is a cartback subscriber; its id is the subscriber id. Attributes without a subscriber column
(organization, title, locale, image, location) live among the subscriber's attributes under Klaviyo's
`$`-names; `properties` are the other attributes, the ones the Sequenzy API calls customAttributes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from cartback.api import deps, scopes
from cartback.api.klaviyo import filters, jsonapi, limits, models, principal
from cartback.core import profiles
from cartback.store import subscribers as store
from cartback.store.db import Tx
from cartback.store.subscribers import Subscriber

router = APIRouter(tags=["klaviyo profiles"])

Who = deps.Principal
Svc = deps.Services

_EXTRA_KEYS = set(models.EXTRA_FIELDS.values())
_LOCATION_NUMBERS = ("latitude", "longitude")
_IDENTIFIER_FILTERS = {
    "id": "ids",
    "email": "emails",
    "phone_number": "phones",
    "external_id": "external_ids",
    "anonymous_id": "anonymous_ids",
}
_SORTS = ("created", "updated", "email", "id")


def _text(value: Any) -> str | None:
    # The SDK's profile attributes are strict strings; a number stored by another surface is shown as text.
    return None if value is None else value if isinstance(value, str) else str(value)


def _location(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: (v if k in _LOCATION_NUMBERS else _text(v)) for k, v in value.items() if v is not None}


def profile_resource(request: Request, sub: Subscriber, last_event: Any = None) -> dict[str, Any]:
    attrs = sub.attributes
    attributes = {
        "email": sub.email,
        "phone_number": sub.phone,
        "external_id": sub.external_id,
        "anonymous_id": sub.anonymous_id,
        "first_name": sub.first_name,
        "last_name": sub.last_name,
        "organization": _text(attrs.get("$organization")),
        "locale": _text(attrs.get("$locale")),
        "title": _text(attrs.get("$title")),
        "image": _text(attrs.get("$image")),
        "created": jsonapi.iso(sub.created_at),
        "updated": jsonapi.iso(sub.updated_at),
        "last_event_date": jsonapi.iso(last_event),
        "location": _location(attrs.get("$location")),
        "properties": {k: v for k, v in attrs.items() if k not in _EXTRA_KEYS},
    }
    url = f"{jsonapi.base_url(request)}/api/profiles/{sub.id}"
    return jsonapi.resource("profile", sub.id, attributes, url)


def resources(tx: Tx, request: Request, workspace_id: str, subs: list[Subscriber]) -> list[dict[str, Any]]:
    return [profile_resource(request, sub, profiles.last_event_at(tx, workspace_id, sub.id)) for sub in subs]


def _filter_query(text: str | None) -> dict[str, Any]:
    """`filter` as store.ProfileQuery arguments; a field or operator Klaviyo does not allow is a 400."""
    out: dict[str, Any] = {}
    if not text:
        return out
    try:
        conds = filters.conditions(text)
        for cond in conds:
            if cond.field in _IDENTIFIER_FILTERS and cond.op in ("equals", "any"):
                values = cond.value if cond.op == "any" else [cond.value]
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise filters.FilterError(f"{cond.field} takes strings")
                key = _IDENTIFIER_FILTERS[cond.field]
                previous = out.get(key)
                out[key] = tuple(v for v in values if previous is None or v in previous)
            elif cond.field in ("created", "updated") and cond.op in ("greater-than", "less-than"):
                moment = filters.as_datetime(cond.value)
                out[f"{cond.field}_{'after' if cond.op == 'greater-than' else 'before'}"] = moment
            elif cond.field == "_kx" and cond.op == "equals":
                # Klaviyo's tracking cookie value: cartback issues none, so it names nobody.
                out["ids"] = ()
            else:
                raise filters.FilterError(f"filter {cond.op}({cond.field},...) is not supported on profiles")
    except filters.FilterError as exc:
        raise jsonapi.Problem(400, f"Invalid filter: {exc}", parameter="filter") from exc
    return out


def _sort(sort: str | None) -> tuple[str, bool]:
    if not sort:
        return "id", False
    name = sort.removeprefix("-")
    if name not in _SORTS:
        raise jsonapi.Problem(
            400, f"Invalid sort {sort!r}: use one of {', '.join(_SORTS)}, or '-' before one", parameter="sort"
        )
    return name, sort.startswith("-")


@router.get("/profiles")
async def get_profiles(
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    filter: str | None = Query(None, max_length=10_000),
    sort: str | None = Query(None, max_length=50),
    page_size: int = Query(20, alias="page[size]", ge=1, le=100),
    page_cursor: str | None = Query(None, alias="page[cursor]", max_length=4000),
    fields_profile: str | None = Query(None, alias="fields[profile]", max_length=2000),
    additional_fields: str | None = Query(None, alias="additional-fields[profile]", max_length=2000),
) -> dict[str, Any]:
    """Profiles of this workspace, `filter=equals(email,"...")` and the like, `page_size` per page."""
    given = _filter_query(filter)
    name, descending = _sort(sort)
    token = jsonapi.page_cursor(page_cursor)
    after = None
    if token is not None:
        value, last_id = jsonapi.decode_cursor(token, 2)
        if not isinstance(last_id, str):
            raise jsonapi.Problem(400, "page[cursor] is not a valid cursor", parameter="page[cursor]")
        if name in ("created", "updated"):
            try:
                value = filters.as_datetime(value)
            except filters.FilterError as exc:
                raise jsonapi.Problem(
                    400, "page[cursor] is not a valid cursor", parameter="page[cursor]"
                ) from exc
        after = (value, last_id)
    query = store.ProfileQuery(**given, sort=name, descending=descending, after=after)

    def read(tx: Tx) -> tuple[list[dict[str, Any]], str | None]:
        subs = store.profile_page(tx, who.workspace_id, query, page_size + 1)
        more = len(subs) > page_size
        subs = subs[:page_size]
        cursor = None
        if more and subs:
            last = store.sort_value(subs[-1], name)
            last_value = jsonapi.iso(last) if name in ("created", "updated") else last
            cursor = jsonapi.encode_cursor([last_value, subs[-1].id])
        return resources(tx, request, who.workspace_id, subs), cursor

    data, cursor = await svc.db.read(read)
    return jsonapi.collection(data, request, cursor)


@router.get("/profiles/{profile_id}")
async def get_profile(
    profile_id: str, request: Request, who: Who = Depends(principal), svc: Svc = Depends(deps.services)
) -> dict[str, Any]:
    def read(tx: Tx) -> list[dict[str, Any]]:
        sub = store.find_by_id(tx, who.workspace_id, profile_id)
        return [] if sub is None else resources(tx, request, who.workspace_id, [sub])

    found = await svc.db.read(read)
    if not found:
        raise jsonapi.Problem(404, f"No profile with id {profile_id!r}.", parameter="id")
    return {"data": found[0], "links": {"self": str(request.url)}}


def _input(body: models.ProfileBody) -> profiles.ProfileInput:
    attrs = body.data.attributes
    sent = attrs.model_fields_set
    if attrs.properties:
        limits.check_properties(attrs.properties, "/data/attributes/properties")
    attributes: dict[str, Any] = {**(attrs.properties or {}), **attrs.extras()}
    for name, key in models.EXTRA_FIELDS.items():
        if name in sent and getattr(attrs, name) is None:
            attributes[key] = None
    patch = body.data.meta.patch_properties if body.data.meta else None
    unset: tuple[str, ...] = ()
    if patch is not None and patch.unset is not None:
        unset = (patch.unset,) if isinstance(patch.unset, str) else tuple(patch.unset)
    return profiles.ProfileInput(
        email=attrs.email,
        phone=attrs.phone_number,
        external_id=attrs.external_id,
        anonymous_id=attrs.anonymous_id,
        first_name=attrs.first_name,
        last_name=attrs.last_name,
        attributes=attributes,
        clear=frozenset(n for n in ("first_name", "last_name") if n in sent and getattr(attrs, n) is None),
        unset=unset,
        append=dict(patch.append or {}) if patch else {},
        unappend=dict(patch.unappend or {}) if patch else {},
    )


def _duplicate(exc: profiles.DuplicateProfile) -> jsonapi.Problem:
    return jsonapi.Problem(
        409,
        exc.message,
        code="duplicate_profile",
        pointer="/data/attributes",
        meta={"duplicate_profile_id": exc.profile_id},
    )


@router.post("/profiles", status_code=201, **scopes.requires(scopes.EVENTS_WRITE))
async def create_profile(
    body: models.ProfileBody,
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> dict[str, Any]:
    """Create a profile; one whose email, phone number, external_id or anonymous_id is taken is a 409
    with `meta.duplicate_profile_id`."""
    data = _input(body)
    if not data.names_someone():
        raise jsonapi.Problem(
            400,
            "A profile needs an email, phone_number, external_id or anonymous_id.",
            pointer="/data/attributes",
        )
    now = svc.clock.now()

    def write(tx: Tx) -> dict[str, Any]:
        sub = profiles.create(tx, who.workspace_id, data, now)
        return profile_resource(request, sub)

    try:
        resource = await svc.db.write(lambda tx: write(tx))
    except profiles.DuplicateProfile as exc:
        raise _duplicate(exc) from exc
    return {"data": resource, "links": {"self": resource["links"]["self"]}}


@router.post(
    "/profile-import",
    status_code=201,
    responses={200: {"description": "An existing profile was updated"}},
    **scopes.requires(scopes.EVENTS_WRITE),
)
async def create_or_update_profile(
    body: models.ProfileBody,
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
) -> jsonapi.JsonApiResponse:
    """Create or update a profile by its id or identifiers: 201 when created, 200 when updated."""
    data = _input(body)
    profile_id = body.data.id
    if profile_id is None and not data.names_someone():
        raise jsonapi.Problem(
            400,
            "A profile needs an id, email, phone_number, external_id or anonymous_id.",
            pointer="/data/attributes",
        )
    now = svc.clock.now()

    full = scopes.reads_back(who)

    def write(tx: Tx) -> tuple[dict[str, Any], bool]:
        sub, created = profiles.upsert(tx, who.workspace_id, data, now, profile_id=profile_id)
        if not full:
            # The id and, by the status, whether it was new; the SDK's attributes are all optional.
            url = f"{jsonapi.base_url(request)}/api/profiles/{sub.id}"
            return jsonapi.resource("profile", sub.id, {}, url), created
        return profile_resource(request, sub, profiles.last_event_at(tx, who.workspace_id, sub.id)), created

    try:
        resource, created = await svc.db.write(write)
    except profiles.DuplicateProfile as exc:
        raise _duplicate(exc) from exc
    return jsonapi.JsonApiResponse(
        {"data": resource, "links": {"self": resource["links"]["self"]}}, status_code=201 if created else 200
    )
