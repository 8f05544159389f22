"""The architecture, enforced: che's layers (pyproject.toml's import-linter contracts, lazy imports
counted) and no import cycle between modules; no source file over 500 lines."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_the_layers_hold_and_no_modules_import_each_other():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "lint_imports.py")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout and "no import cycle between modules" in result.stdout


def test_no_source_file_is_over_500_lines():
    sources = [p for folder in ("che", "tasks", "models", "runners", "scripts") for p in (REPO / folder).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in sources if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
