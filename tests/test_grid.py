"""A sweep's grid (che.runners.grid) from options and TOML sweep files, the shipped sweeps by name, and
bad sweep files refused in one line."""

from __future__ import annotations

import pytest
from che.runners.grid import build_grid, read_spec


def test_sweep_file_with_command_line_overrides(cli, tmp_path):
    spec = tmp_path / "grid.toml"
    spec.write_text('preset = "smoke"\ntasks = ["parity_check", "bucket_sort"]\npes = ["dape-kerple"]\n'
                    'seeds = [3, 5]\nlrs = [1e-3, 5e-4]\nresults = "from-file"\n[overrides]\nsteps = 7\n')
    label, values = read_spec(str(spec))
    grid = build_grid(values, label, tasks="parity_check", steps=9)
    assert grid.tasks == ["parity_check"] and grid.pes == ["dape-kerple-log"] and grid.seeds == [3, 5]
    assert grid.lrs == [1e-3, 5e-4] and str(grid.results) == "from-file"
    configs = grid.configs()
    assert len(configs) == 4 and {c.steps for c in configs} == {9} and {c.preset for c in configs} == {"smoke"}
    assert {(c.seed, c.lr) for c in configs} == {(3, 1e-3), (5, 1e-3), (3, 5e-4), (5, 5e-4)}


def test_shipped_sweeps_by_name():
    label, values = read_spec("cpu_leaderboard")
    grid = build_grid(values, label)
    assert grid.preset == "cpu" and len(grid.tasks) == 15 and str(grid.results) == "results/cpu-rerun/runs"
    assert grid.pes == ["none", "alibi", "kerple-log", "dape-kerple-log"] and grid.seeds == [0, 1, 2]
    assert len(grid.configs()) == 180
    label, values = read_spec("dape_table2")
    grid = build_grid(values, label)
    assert grid.preset == "paper" and len(grid.tasks) == 14 and "binary_multiplication" not in grid.tasks
    assert grid.lrs == [1e-4, 3e-4, 5e-4] and grid.seeds == [0, 1, 2] and len(grid.pes) == 10
    assert len(grid.configs()) == 14 * 10 * 3 * 3
    assert all(c.model.rand_mode == "reference" for c in grid.configs())   # the RPE code's randomization


BAD_FILES = {
    "unknown_key.toml": ('tasks = ["parity_check"]\npes = ["none"]\nseed = 3\n',
                         "unknown sweep-file key 'seed'; did you mean 'seeds'?"),
    "not_toml.toml": ('tasks = ["parity_check"\n', "not valid TOML"),
    "bad_override.toml": ('tasks = ["parity_check"]\npes = ["none"]\n[overrides]\nstepz = 3\n',
                          "unknown setting 'stepz'; did you mean 'steps'?"),
    "override_type.toml": ('tasks = ["parity_check"]\npes = ["none"]\n[overrides]\nsteps = "many"\n',
                           "steps must be int, got 'many'"),
    "override_axis.toml": ('tasks = ["parity_check"]\npes = ["none"]\n[overrides]\nseed = 2\n',
                           "'seed' is a grid axis; set `seeds` instead"),
    "bad_task.toml": ('tasks = ["parity_chek"]\npes = ["none"]\n',
                      "unknown task 'parity_chek'; did you mean 'parity_check'?"),
    "bad_seeds.toml": ('tasks = ["parity_check"]\npes = ["none"]\nseeds = 0\n', "seeds must be between 1 and 10000"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_sweep_file_is_a_one_line_error(cli, tmp_path, name):
    text, message = BAD_FILES[name]
    spec = tmp_path / name
    spec.write_text(text)
    result = cli("sweep", spec, "--results", tmp_path / "runs", "--preset", "smoke")
    assert result.exit_code == 2, result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
