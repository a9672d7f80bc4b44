"""Klaviyo's published OpenAPI spec as a response check: `tests/fixtures/klaviyo_openapi_2026-07-15.json`
holds, unchanged, the response schemas of the operations cartback serves and every component they
reference (from Klaviyo's openapi/stable.json, revision 2026-07-15).

The spec is OpenAPI 3.0, so it is read as 3.0 defines it: `nullable: true` lets a typed value be null,
and the siblings of a `$ref` are ignored, so a `$ref` marked nullable (a profile's `location`) is not."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema_rs

SPEC = Path(__file__).parent / "fixtures" / "klaviyo_openapi_2026-07-15.json"
_NOT_VALIDATION = ("nullable", "example", "description", "deprecated")


def _as_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_as_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": node["$ref"]}
    out = {k: _as_json_schema(v) for k, v in node.items() if k not in _NOT_VALIDATION}
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC.read_text())


@functools.cache
def _validator(operation: str) -> Any:
    spec = _spec()
    components = {"schemas": {k: _as_json_schema(v) for k, v in spec["components"]["schemas"].items()}}
    root = {**_as_json_schema(spec["responses"][operation]["schema"]), "components": components}
    return jsonschema_rs.Draft4Validator(root, validate_formats=True)


def problems(operation: str, body: Any) -> list[str]:
    """Where `body` breaks the spec's response schema of `operation` (`GET /api/events`)."""
    return [f"{list(e.instance_path)}: {e.message}" for e in _validator(operation).iter_errors(body)]


def status(operation: str) -> int:
    return int(_spec()["responses"][operation]["status"])
