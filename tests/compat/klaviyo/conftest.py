"""The official `klaviyo-api` SDK pointed at a real `cartback serve` (host override, as a user would)."""

from __future__ import annotations

import pytest
from klaviyo_api import KlaviyoAPI


@pytest.fixture
def tenant(make_workspace):
    return make_workspace()


@pytest.fixture
def klaviyo(server, tenant) -> KlaviyoAPI:
    # max_retries=1: one attempt, so a wrong status shows as a failure instead of a retry.
    return KlaviyoAPI(api_key=tenant.key, test_host=server.url, max_retries=1, max_delay=1)
