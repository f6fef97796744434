"""The install ships every package: the user's top-level folders are mapped into servegate by
an explicit list in pyproject.toml, which must not fall behind the tree."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    expected = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "__pycache__" in rel.parts:
                continue
            expected.add(".".join((package, *rel.parts)))
    # a folder mapped elsewhere is not also a sub-package of servegate/
    missing = sorted(expected - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(listed - expected)
    assert not stale, f"listed in pyproject.toml but no such package folder: {stale}"
