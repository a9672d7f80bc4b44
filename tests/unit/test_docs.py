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


def test_docs_architecture_names_only_files_and_functions_that_exist():
    """docs/architecture.md follows one checkout file by file: each `path.py` it names exists (under
    src/cartback/, or from the repository's root for tests/), and each `path.py` `name` pair names a
    function, class or method (`Class.method`) of that file."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for path in sorted(set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text))):
        if not ((ROOT / "src" / "cartback" / path).exists() or (ROOT / path).exists()):
            missing.append(path)
    for path, name in re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`\s+`([A-Za-z_.]+)`", text):
        source = ROOT / "src" / "cartback" / path
        code = source.read_text() if source.exists() else ""
        for part in name.split("."):
            if not re.search(rf"^\s*(?:async def|def|class) {part}\b", code, re.M):
                missing.append(f"{path} {name}")
    assert missing == []
