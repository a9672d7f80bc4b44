"""Every third-party package the code imports is a declared runtime dependency: a test environment has the
dev extras installed, so without this check a missing one only shows on a user's `pip install cartback`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "src" / "cartback").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cartback", "__future__"}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(re.split(r"[<>=!\[; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    # Packages that only arrive as part of a declared one (FastAPI brings Starlette, pydantic-core...).
    bundled = {"starlette": "fastapi", "pydantic-core": "pydantic"}
    distributions = packages_distributions()
    missing = []
    for module in sorted(_imported_top_level_modules()):
        dists = {_normalise(d) for d in distributions.get(module, [module])}
        if not dists & declared and not any(bundled.get(d) in declared for d in dists):
            missing.append(f"{module} (from {', '.join(sorted(dists))})")
    assert missing == [], f"imported but not in [project].dependencies: {missing}"
