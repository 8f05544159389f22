"""The built wheel works on its own: the che.* layout, package data, and the CLI from outside the repo."""

import json
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("che_bench-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return wheel, site, tmp


def run_installed(site, cwd, *args):
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("CHE_PLUGINS", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_wheel_installs_subpackages_under_che_only(installed_wheel):
    wheel, _, _ = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    from che import __version__

    assert top_level == {"che", f"che_bench-{__version__}.dist-info"}  # no generic top-level tasks/models/runners
    for expected in ("che/tasks/dcf/solve_equation.py", "che/models/positional/dape.py",
                     "che/runners/train.py", "che/reference/dape2024_che_table2.csv",
                     "che/runners/sweeps/cpu_leaderboard.toml", "che/data/tasks.json", "che/data/pes.json"):
        assert expected in names


def test_installed_wheel_runs_from_outside_the_repository(installed_wheel):
    _, site, tmp = installed_wheel
    where = run_installed(site, tmp, "-c", "import che, che.tasks, che.models; print(che.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(site))
    tasks = run_installed(site, tmp, "-m", "che", "tasks", "--json")
    assert len(json.loads(tasks.stdout)) == 15
    run = run_installed(site, tmp, "-m", "che", "run", "--task", "parity_check", "--pe", "dape-alibi",
                        "--preset", "smoke", "--results", str(tmp / "runs"), "--quiet")
    assert run.returncode == 0, run.stderr
    board = run_installed(site, tmp, "-m", "che", "leaderboard", "--results", str(tmp / "runs"),
                          "--reference", "dape2024_che_table2", "--format", "json")
    assert board.returncode == 0, board.stderr
    cells = {(c["task"], c["pe"]): c for c in json.loads(board.stdout)["cells"]}
    assert cells[("parity_check", "dape-alibi")]["reference"] == pytest.approx(50.30)
