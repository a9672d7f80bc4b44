"""The render and password-hash processes (cartback/processes.py) end with the server that started them,
even one killed outright: they would otherwise wait for work forever, each holding its memory."""

from __future__ import annotations

import time

import httpx
import pytest
from tests import processes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pool_processes_end_when_their_server_is_killed(start_server, db_url, make_workspace) -> None:
    server = start_server(db_url)
    key = make_workspace().key
    answer = httpx.post(  # a preview renders in a render process, starting it
        server.url + "/api/v1/transactional/send",
        headers={"Authorization": f"Bearer {key}"},
        json={"to": "me@example.com", "subject": "Hi {{ 1 | plus: 1 }}", "body": "<p>x</p>", "preview": True},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    children = processes.children(server.proc.pid)
    assert children, "the render process should have started"
    server.proc.kill()
    server.proc.wait()
    deadline = time.monotonic() + 10
    while any(processes.alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(processes.alive(pid) for pid in children), "pool processes outlived their killed server"
