"""The Segment-protocol clients from npm that the compat tests run (tests/compat/segment/node)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """tests/compat/segment/node with its packages installed from the lock file (node_modules is not
    committed). Installed again when one is missing, so a machine that kept an older node_modules gets a
    package added since."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "these tests need Node.js and npm (the project's machines have both)"
    wanted = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    if not all((NODE_DIR / "node_modules" / name / "package.json").is_file() for name in wanted):
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=NODE_DIR, check=True, timeout=600
        )
    return NODE_DIR
