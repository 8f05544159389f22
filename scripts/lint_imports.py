"""Check che's import layers (the contracts in pyproject.toml, [tool.importlinter]) with import-linter,
and that no two modules import each other, even through others (lazy imports count).

    python scripts/lint_imports.py

import-linter reads a package from the folders it lives in; che's subpackages live beside it
(tasks/, models/, runners/ install as che.tasks, che.models, che.runners: pyproject.toml's
package-dir), so the files are first laid out as they install, in a temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def stage(target: Path, root: Path = REPO, data: bool = False) -> Path:
    """The che package of the source tree at `root` as it installs (its pyproject.toml's
    package-dir), copied under `target` (with `data`, its data files too)."""
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    skip = ("__pycache__", "*.pyc") if data else ("__pycache__", "*.pyc", "*.json", "*.csv", "*.md", "*.toml")
    for package, folder in sorted(setup["package-dir"].items(), key=lambda item: item[0].count(".")):
        destination = target.joinpath(*package.split("."))
        shutil.copytree(root / folder, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip))
    return target


def cycles(staged: Path) -> list[list[str]]:
    """Groups of modules that import each other (directly or through others): the strongly connected
    components of the import graph with more than one module."""
    import grimp

    sys.path.insert(0, str(staged))
    graph = grimp.build_graph("che", cache_dir=None)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(module):  # Tarjan's algorithm, iteratively deep enough for a package of this size
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in modules:
        if module not in index:
            visit(module)
    return found


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        staged = stage(Path(tmp))
        shutil.copy(REPO / "pyproject.toml", staged / "pyproject.toml")
        env = dict(os.environ, PYTHONPATH=str(staged))
        linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
        layers = subprocess.run([linter, "--config", str(staged / "pyproject.toml"), "--no-cache"], cwd=staged,
                                env=env, capture_output=True, text=True)
        print(layers.stdout.strip() or layers.stderr.strip())
        found = cycles(staged)
    for group in found:
        print("import cycle: " + " <-> ".join(group))
    if not found:
        print("no import cycle between modules")
    return 1 if layers.returncode or found else 0


if __name__ == "__main__":
    sys.exit(main())
