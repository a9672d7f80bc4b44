"""The README's first sequence works as written: its curl body through the API, its SDK code through the
official client, each saved without a warning about its event names and enabled."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import httpx
from sequenzy import Sequenzy

README = (Path(__file__).parents[3] / "README.md").read_text()
SECTION = README.split("### Your first abandoned-checkout sequence", 1)[1]


def test_readme_sequence_curl_example_is_accepted(server, make_workspace):
    tenant = make_workspace()
    block = re.search(r"```sh\n(.*?)```", SECTION, re.S).group(1)
    command = block.split("\n# ", 1)[0].replace("\\\n", " ")
    words = shlex.split(command)
    body = json.loads(words[words.index("-d") + 1])
    reply = httpx.post(
        server.api + "/sequences", json=body, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert not [w for w in reply.json()["warnings"] if "no event named" in w]
    steps = [n["type"] for n in reply.json()["sequence"]["nodes"]]
    assert steps == ["delay", "email", "delay", "email"]


def test_readme_sequence_sdk_example_runs(server, make_workspace):
    tenant = make_workspace()
    code = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
    with httpx.Client(timeout=10) as http:
        client = Sequenzy(api_key=tenant.key, base_url=server.api, max_retries=0, httpx_client=http)
        scope: dict[str, object] = {"client": client}
        exec(code, scope)
        created = scope["created"]
        assert created.sequence.email_count == 1  # type: ignore[attr-defined]
        assert client.sequences.get(sequence_id=created.sequence.id).sequence.status == "active"  # type: ignore[attr-defined]


def test_readme_names_the_dashboard_form_and_how_to_run_cartback(server):
    """The README points a new owner at the dashboard's prefilled New sequence form (a real page of the
    dashboard: signed out, it sends to the sign-in page, not a 404) and spells out how to run `cartback`
    from the repository's virtualenv."""
    assert "**Sequences → New sequence** (`/app/sequences/new`)" in SECTION
    assert "`.venv/bin/cartback ...`" in README
    page = httpx.get(server.url + "/app/sequences/new", follow_redirects=False)
    assert page.status_code in (302, 303) and "/app/login" in page.headers["location"]
