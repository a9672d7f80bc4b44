"""The render and password-hash processes (cartback/processes.py) end with the server that started them,
even one killed outright: they would otherwise wait for work forever, each holding its memory."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


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
    children = _children(server.proc.pid)
    assert children, "the render process should have started"
    server.proc.kill()
    server.proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "pool processes outlived their killed server"
