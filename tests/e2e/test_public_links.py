"""Without CARTBACK_PUBLIC_URL, the links in mail point at the port `cartback serve --port P` listens on."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))
from e2e.test_smtp_delivery import Api, checkout, sequence, wait
from smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_links_in_mail_use_the_port_serve_listens_on(tmp_path, start_server, make_workspace, db_url, host):
    tenant = make_workspace()
    who = f"walker-{host.replace('.', '')}-{tenant.id.lower()}@example.com"
    with SmtpSink() as sink:
        server = start_server(db_url, env={"CARTBACK_SMTP_URL": sink.url}, args=["--host", host])
        port = server.port
        assert port != 8000
        api = Api(server, tenant.key)
        flow = sequence()
        flow["steps"] = [
            {
                "type": "email",
                "subject": "Your cart",
                "html": "<p><a href='{{ event.checkoutUrl }}'>cart</a></p>",
            }
        ]
        api.active_sequence(flow)
        api.post("/checkouts", checkout("chk-port", who))
        wait(lambda: [m for m in sink.received if m.rcpt_tos == [who]], what="the message at the sink")
        [mail] = [m.message for m in sink.received if m.rcpt_tos == [who]]
        api.http.close()
    unsubscribe = mail["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    assert unsubscribe.startswith(f"http://127.0.0.1:{port}/u/")
    html = mail.get_body(("html",)).get_content()
    click = re.search(r'href="(http[^"]*/t/c/[^"]*)"', html)
    pixel = re.search(r'src="(http[^"]*/t/o/[^"]*)"', html)
    assert click and click.group(1).startswith(f"http://127.0.0.1:{port}/t/c/")
    assert pixel and pixel.group(1).startswith(f"http://127.0.0.1:{port}/t/o/")
    # And they work against that server.
    assert httpx.get(unsubscribe).status_code == 200
    went = httpx.get(click.group(1).replace("&amp;", "&"), follow_redirects=False)
    assert went.status_code in (302, 303, 307) and went.headers["location"].endswith("/checkout/chk-port")
