"""The built wheel works on its own: the che.* layout, package data, and the CLI from outside the repo.

The wheel is installed --no-deps into a fresh virtual environment whose dependencies come from the
test environment's site-packages (one .pth line; no network), and every command runs from an empty
folder: what che reads then comes from the wheel, never from the source tree."""

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """(the wheel, the fresh environment's bin folder, an empty folder to run in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("che_bench-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    purelib = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    # The dependencies: this environment's site-packages, after the fresh one's (a plain path line, so
    # the .pth files there, che's editable install among them, are not run).
    Path(purelib, "test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    empty = tmp / "empty"
    empty.mkdir()
    return wheel, bin_dir, empty


def run_installed(bin_dir, cwd, program, *args):
    """A program of the fresh environment (python, che), with a cache of its own and no plugins."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "CHE_PLUGINS")}
    env["XDG_CACHE_HOME"] = str(Path(cwd).parent / "cache")  # no calibration measured or cached before
    return subprocess.run([str(bin_dir / program), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_wheel_installs_subpackages_under_che_only(installed_wheel):
    wheel, _, _ = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names}
    from che import __version__

    assert top_level == {"che", f"che_bench-{__version__}.dist-info"}  # no generic top-level tasks/models/runners
    for expected in ("che/tasks/dcf/solve_equation.py", "che/models/positional/dape.py",
                     "che/runners/train.py", "che/reference/dape2024_che_table2.csv",
                     "che/reference/dape2024_che_table2.protocol.json", "che/runners/sweeps/cpu_leaderboard.toml",
                     "che/data/tasks.json", "che/data/pes.json", "che/data/calibrations.json"):
        assert expected in names


def test_the_installed_wheel_works_from_an_empty_folder(installed_wheel):
    _, bin_dir, empty = installed_wheel
    where = run_installed(bin_dir, empty, "python", "-c", "import che, che.runners.cost; print(che.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(bin_dir.parent) and not Path(where.stdout.strip()).is_relative_to(REPO)

    pes = run_installed(bin_dir, empty, "che", "pes")
    assert pes.returncode == 0 and "kerple-log-sym" in pes.stdout, pes.stderr
    tasks = run_installed(bin_dir, empty, "che", "tasks", "--json")
    assert tasks.returncode == 0 and len(json.loads(tasks.stdout)) == 15, tasks.stderr
    # the shipped GPU calibration, read from the wheel: nothing measured on a login node
    dry = run_installed(bin_dir, empty, "che", "sweep", "dape_table2", "--dry-run", "--executor", "slurm")
    assert dry.returncode == 0, dry.stderr
    assert "1260 pending" in dry.stdout and "on nodes like cuda: NVIDIA H200" in dry.stdout
    assert list(empty.iterdir()) == []  # a dry run writes nothing

    run = run_installed(bin_dir, empty, "che", "run", "--task", "parity_check", "--pe", "dape-alibi",
                        "--preset", "smoke", "--quiet")
    assert run.returncode == 0, run.stderr
    board = run_installed(bin_dir, empty, "che", "leaderboard", "--reference", "dape2024_che_table2", "--format", "json")
    assert board.returncode == 0, board.stderr
    published = json.loads(board.stdout)
    cells = {(c["task"], c["pe"]): c for c in published["cells"]}
    assert cells[("parity_check", "dape-alibi")]["reference"] == pytest.approx(50.30)
    assert published["protocol_differences"]  # the table's protocol file was read: smoke is not the paper's
