import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def cli():
    """Invoke the `che` app in-process: cli("sample", "--task", ...) -> click Result."""
    from che.cli import app

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def run_che(*args, env=None, cwd=None, timeout=300):
    """Run `python -m che ...` in a fresh process (for entry points, env plugins, signals)."""
    full_env = dict(os.environ)
    full_env.pop("CHE_PLUGINS", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "che", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)
