"""The README's commands are what CI runs, and every import is declared by the package metadata."""

from __future__ import annotations

import ast
import re
import sys

import pytest
from conftest import REPO

try:
    import tomllib
except ImportError:  # pragma: no cover - Python < 3.11
    tomllib = pytest.importorskip("tomli")

# import name -> distribution name, where they differ
_DIST = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn"}


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(reqs):
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("-", "_") for r in reqs}


def _imports(paths):
    found = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for m in mods:
                top = m.split(".")[0]
                local = (path.parent / f"{top}.py").exists()  # a sibling module (e.g. another test file)
                if not local and top not in sys.stdlib_module_names and top not in ("pantiny", "tomli", "tomllib"):
                    found.setdefault(_DIST.get(top, top).lower().replace("-", "_"), set()).add(path.name)
    return found


# Modules imported only by optional features, with the extra that declares them.
_OPTIONAL = {"h5py": "train", "safetensors": None, "huggingface_hub": None, "tqdm": None,
             "dask": "dask", "distributed": "dask", "xarray": "dask", "rioxarray": "dask"}


def test_readme_commands_are_the_ci_commands():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    cmds = re.findall(r"^README_CMD_\d='(.*)'$", ci, flags=re.M)
    assert len(cmds) == 2
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert blocks[0] == cmds[0] and blocks[1] == cmds[1]
    assert 'bash -c "$README_CMD_1"' in ci and 'bash -c "$README_CMD_2"' in ci
    assert "python3 -m venv" in ci  # a fresh environment of its own


def test_library_imports_are_declared_dependencies():
    proj = _project()
    core = _names(proj["dependencies"])
    extras = {k: _names(v) for k, v in proj["optional-dependencies"].items()}
    for dist, files in _imports(sorted((REPO / "pantiny").rglob("*.py"))).items():
        if dist in core:
            continue
        extra = _OPTIONAL.get(dist)
        assert extra is not None and dist in extras.get(extra, set()), \
            f"{dist} is imported by {sorted(files)} but not declared in [project] dependencies"


def test_test_imports_are_in_the_test_extra():
    proj = _project()
    have = _names(proj["dependencies"]) | _names(proj["optional-dependencies"]["test"])
    missing = {d: sorted(f) for d, f in _imports(sorted((REPO / "tests").glob("*.py"))).items() if d not in have}
    assert not missing, f"imported by the tests but not installed by pip install '.[test]': {missing}"
