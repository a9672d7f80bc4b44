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
from cartback.core import lists, profiles
from cartback.core.profiles import Subscriber

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
# What Klaviyo's spec lists for GET /api/profiles, and for GET /api/profiles/{id}. cartback has lists;
# it has no segments, push tokens or conversations, so those relationships are always empty.
_LIST_INCLUDES = ("conversations", "push-tokens")
_ONE_INCLUDES = ("conversations", "lists", "push-tokens", "segments")
_RESOURCE_TYPES = {
    "conversations": "conversation",
    "lists": "list",
    "push-tokens": "push-token",
    "segments": "segment",
}
# Klaviyo's profile location: every key present, null when unknown.
_LOCATION_KEYS = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
    "ip",
)


def _text(value: Any) -> str | None:
    # The SDK's profile attributes are strict strings; a number stored by another surface is shown as text.
    return None if value is None else value if isinstance(value, str) else str(value)


def _location(value: Any) -> dict[str, Any]:
    """Always an object, as Klaviyo's spec has it (the profile's `location` is a ProfileLocation)."""
    given = value if isinstance(value, dict) else {}
    shown = {k: (v if k in _LOCATION_NUMBERS else _text(v)) for k, v in given.items() if v is not None}
    return {**dict.fromkeys(_LOCATION_KEYS), **shown}


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


def resources(request: Request, found: list[profiles.ProfileView]) -> list[dict[str, Any]]:
    return [profile_resource(request, view.subscriber, view.last_event_at) for view in found]


def list_resource(request: Request, item: lists.SubscriberList) -> dict[str, Any]:
    attributes = {
        "name": item.name,
        "created": jsonapi.iso(item.created_at),
        "updated": jsonapi.iso(item.updated_at),
        # cartback adds people to lists directly: there is no confirmation step.
        "opt_in_process": "single_opt_in",
    }
    return jsonapi.resource("list", item.id, attributes, f"{jsonapi.base_url(request)}/api/lists/{item.id}")


def _with_includes(
    request: Request, views: list[profiles.ProfileView], data: list[dict[str, Any]], wanted: list[str]
) -> list[dict[str, Any]] | None:
    """Each asked relationship on every profile, and the included resources (None: none was asked)."""
    if not wanted:
        return None
    included: list[dict[str, Any]] = []
    for view, resource in zip(views, data, strict=True):
        relationships = resource.setdefault("relationships", {})
        for name in wanted:
            found = (view.lists or []) if name == "lists" else []
            relationships[name] = jsonapi.to_many(_RESOURCE_TYPES[name], [item.id for item in found])
            included.extend(list_resource(request, item) for item in found)
    # A list on several profiles is included once.
    return list({(r["type"], r["id"]): r for r in included}.values())


def _filter_query(text: str | None) -> dict[str, Any]:
    """`filter` as profiles.ProfileQuery arguments; a field or operator Klaviyo does not allow is a 400."""
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
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    """Profiles of this workspace, `filter=equals(email,"...")` and the like, `page_size` per page with
    `links.next` and `links.prev` cursors."""
    given = _filter_query(filter)
    name, descending = _sort(sort)
    wanted = jsonapi.includes(include, _LIST_INCLUDES)
    cursor = jsonapi.read_cursor(page_cursor, 2)
    after = None
    if cursor is not None:
        value, last_id = cursor.key
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
    # A prev cursor reads the rows before it in the opposite order; paginate turns them back.
    backward = cursor is not None and cursor.backward
    query = profiles.ProfileQuery(**given, sort=name, descending=descending != backward, after=after)

    def key(sub: Subscriber) -> list[Any]:
        value = profiles.sort_value(sub, name)
        return [jsonapi.iso(value) if name in ("created", "updated") else value, sub.id]

    with_lists = "lists" in wanted
    page = await svc.db.read(
        lambda tx: profiles.read_page(tx, who.workspace_id, query, page_size, with_lists=with_lists)
    )
    found, following, prev = jsonapi.paginate(page.profiles, page.more, cursor, lambda v: key(v.subscriber))
    data = resources(request, found)
    included = _with_includes(request, found, data, wanted)
    return jsonapi.collection(data, request, following, included, prev)


@router.get("/profiles/{profile_id}")
async def get_profile(
    profile_id: str,
    request: Request,
    who: Who = Depends(principal),
    svc: Svc = Depends(deps.services),
    include: str | None = Query(None, max_length=200),
) -> dict[str, Any]:
    wanted = jsonapi.includes(include, _ONE_INCLUDES)

    with_lists = "lists" in wanted
    view = await svc.db.read(
        lambda tx: profiles.read_profile(tx, who.workspace_id, profile_id, with_lists=with_lists)
    )
    if view is None:
        raise jsonapi.Problem(404, f"No profile with id {profile_id!r}.", parameter="id")
    data = resources(request, [view])
    included = _with_includes(request, [view], data, wanted)
    return jsonapi.document(data[0], request, included=included)


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

    try:
        sub = await svc.db.write(lambda tx: profiles.create(tx, who.workspace_id, data, now))
    except profiles.DuplicateProfile as exc:
        raise _duplicate(exc) from exc
    resource = profile_resource(request, sub)
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

    try:
        view, created = await svc.db.write(
            lambda tx: profiles.import_profile(
                tx, who.workspace_id, data, now, profile_id=profile_id, read_back=full
            )
        )
    except profiles.DuplicateProfile as exc:
        raise _duplicate(exc) from exc
    sub = view.subscriber
    if full:
        resource = profile_resource(request, sub, view.last_event_at)
    else:
        # The id and, by the status, whether it was new; the SDK's attributes are all optional.
        url = f"{jsonapi.base_url(request)}/api/profiles/{sub.id}"
        resource = jsonapi.resource("profile", sub.id, {}, url)
    return jsonapi.JsonApiResponse(
        {"data": resource, "links": {"self": resource["links"]["self"]}}, status_code=201 if created else 200
    )
