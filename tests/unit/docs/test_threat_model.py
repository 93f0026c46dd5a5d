"""docs/threat-model.md stays in step with the tests: every test it cites exists.

A cell cites ``path/to/test_file.py`` (relative to ``tests/``), ``path::test_name``, or, right
after one of those, ``::test_name`` in the same file.
"""

from __future__ import annotations

import ast
import re

from tests.paths import REPO_ROOT

TESTS = REPO_ROOT / "tests"
_CITATION = re.compile(r"`((?:unit|integration)/[\w/]+\.py)?(?:::(\w+))?`")


def _citations() -> list[tuple[str, str | None]]:
    text = (REPO_ROOT / "docs" / "threat-model.md").read_text()
    cited: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in _CITATION.finditer(text):
        path, name = match.group(1), match.group(2)
        if path is None and name is None:
            continue
        if path is not None:
            current = path
        assert current is not None, f"::{name} cited before any test file"
        cited.append((current, name))
    return cited


def _test_names(path: str) -> set[str]:
    tree = ast.parse((TESTS / path).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_cited_test_exists() -> None:
    cited = _citations()
    assert len(cited) >= 40
    missing = []
    for path, name in cited:
        if not (TESTS / path).is_file():
            missing.append(path)
        elif name is not None and name not in _test_names(path):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/threat-model.md cites tests that do not exist: {missing}"
