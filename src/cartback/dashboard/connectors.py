"""Settings > Store connectors: add one (the platform's secret, or one made here for a platform where the
shop pastes ours, shown once), rotate its secret (the previous one stays valid for the grace period, as
`cartback connector rotate` does) and remove it. The section is templates/_connectors.html on the
settings page; each change is one core use case for the viewer's workspace."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from cartback import errors
from cartback.api.hooks import sealer_of
from cartback.core import connectors
from cartback.dashboard import settings, web

router = APIRouter()

# A grace period longer than a month keeps a secret the shop meant to retire.
GRACE_MAX_HOURS = 24 * 30


def _grace(value: str) -> timedelta:
    hours = value.strip() or str(int(connectors.DEFAULT_GRACE.total_seconds() // 3600))
    if not hours.isdigit() or int(hours) > GRACE_MAX_HOURS:
        raise errors.InvalidInput(f"The grace period must be 0 to {GRACE_MAX_HOURS} hours.")
    return timedelta(hours=int(hours))


@router.post("/settings/connectors")
async def add_connector(request: Request, viewer: web.Viewer = Depends(web.viewer)) -> Response:
    form = await settings._form(request)
    new = connectors.NewConnector(
        await sealer_of(request),
        settings._one(form, "platform"),
        settings._one(form, "name"),
        settings._one(form, "secret"),
    )
    try:
        made = await web.write(request, viewer, connectors.create, new)
    except errors.InvalidInput as exc:
        return await settings._page(request, viewer, problem=exc.message, status_code=400)
    return await settings._page(request, viewer, connector=made)


@router.post("/settings/connectors/{connector_id}/rotate")
async def rotate_connector(
    request: Request, connector_id: str, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    connector_id = web.object_id(connector_id, "connector")
    form = await settings._form(request)
    try:
        rotation = connectors.Rotation(
            await sealer_of(request),
            connector_id,
            settings._one(form, "secret"),
            _grace(settings._one(form, "grace_hours")),
        )
        made = await web.write(request, viewer, connectors.change_secret, rotation)
    except errors.InvalidInput as exc:
        return await settings._page(request, viewer, problem=exc.message, status_code=400)
    return await settings._page(request, viewer, connector=made)


@router.post("/settings/connectors/{connector_id}/remove")
async def remove_connector(
    request: Request, connector_id: str, viewer: web.Viewer = Depends(web.viewer)
) -> Response:
    connector_id = web.object_id(connector_id, "connector")
    await web.write(request, viewer, connectors.delete, connector_id)
    return settings._done("connector-removed", "connectors")
