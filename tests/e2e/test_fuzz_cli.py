"""Schemathesis' own command line against a real `cartback serve`, as someone outside the project runs it:
/openapi.json over HTTP, each API with the authentication its clients send, rate limits off, every phase
(the stateful one follows the document's links), the issue's `--max-examples 15 --seed 7`. No answer may
be a 5xx, the server must still be ready afterwards, and its log must hold no traceback or error line,
which the in-process fuzzers (tests/integration/test_*_fuzz.py) cannot see. What a run reaches depends on
what the database already holds, so the cases it once found are kept as tests of their own
(test_bad_input.py, test_values.py); this run is the outside view over a new server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cartback.api.klaviyo import SDK_REVISION
from cartback.core.clock import system_clock
from cartback.store import workspaces
from cartback.store.db import Database

# (the surface's authentication, the paths it owns); Klaviyo's tree is /api/..., beside /api/v1/...
SURFACES = {
    "sequenzy": (["-H", "Authorization: Bearer {key}"], "^/api/v1/"),
    "klaviyo": (
        ["-H", "Authorization: Klaviyo-API-Key {key}", "-H", f"revision: {SDK_REVISION}"],
        "^/api/(?!v1/)",
    ),
    "segment": (["-a", "{key}:"], "^/v1/"),
}


@pytest.mark.parametrize("surface", SURFACES)
def test_fuzz_cli_finds_no_server_error_and_the_server_stays_up(start_server, tmp_path, surface):
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    db = Database(url)
    db.migrate()

    def create(tx: workspaces.Tx) -> str:
        ws = workspaces.create_workspace(tx, "fuzz", system_clock.now())
        return workspaces.create_api_key(tx, ws.id, system_clock.now())[1]

    key = db.write_sync(create)
    db.close()
    server = start_server(url)
    auth, paths = SURFACES[surface]
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{server.url}/openapi.json",
        *[part.format(key=key) for part in auth],
        "--include-path-regex",
        paths,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "15",
        "--seed",
        "7",
        "--workers",
        "1",
        "--checks",
        "not_a_server_error",
        "--suppress-health-check",
        "all",
        "--output-truncate",
        "false",
    ]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = ran.stdout + ran.stderr
    assert ran.returncode == 0, report[-6000:]
    assert "Scenarios:" in report, report[-3000:]  # the stateful phase ran

    assert httpx.get(server.url + "/readyz", timeout=5).status_code == 200
    assert server.log is not None
    log = server.log.read_text()
    assert "Traceback" not in log and '"level":"error"' not in log, log[-6000:]
