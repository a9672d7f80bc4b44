"""docs/storage.md lists every table, so that it stays the map of the schema."""

from __future__ import annotations

import re
from pathlib import Path

from cartback.store.tables import metadata

ROOT = Path(__file__).resolve().parents[2]


def test_docs_storage_lists_every_table():
    text = (ROOT / "docs" / "storage.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row)}
    assert sorted(set(metadata.tables) - listed) == []
