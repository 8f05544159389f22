"""The Python API (che.run, che.load_results, che.leaderboard), and the README's Python example and
the example notebook that use it, run as written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import write_results

import che


def test_the_api_runs_loads_and_aggregates(runs_folder):
    runs = che.load_results(runs_folder)
    assert isinstance(runs, pd.DataFrame) and len(runs) == 6
    assert {"run_id", "task", "pe", "seed", "lr", "ood_accuracy", "steps", "train_length", "accuracy_by_length"} <= set(
        runs.columns)
    board = che.leaderboard(runs, agg="mean")
    cell = board.cell("reverse_string", "alibi")
    scores = 100 * runs[runs.pe == "alibi"].ood_accuracy
    assert cell["runs"] == 3 and cell["value"] == pytest.approx(scores.mean())
    assert cell["ci_low"] <= cell["value"] <= cell["ci_high"]
    assert che.leaderboard(runs, agg="max").cell("reverse_string", "alibi")["value"] == pytest.approx(scores.max())


def test_load_results_gives_each_score_as_a_fraction_and_in_percent(tmp_path, smoke_result):
    import che

    runs = che.load_results(write_results(tmp_path / "runs", smoke_result, [{"pe": "alibi", "ood": 0.625}]))
    assert runs.ood_accuracy[0] == pytest.approx(0.625) and runs.ood_accuracy_percent[0] == pytest.approx(62.5)
    assert runs.chance_accuracy_percent[0] == pytest.approx(50.0)
    assert runs.in_distribution_accuracy_percent[0] == pytest.approx(100 * runs.in_distribution_accuracy[0])


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    block = readme.split("```python\nimport che\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("import che\n" + block, namespace)
    assert len(namespace["runs"]) == 6 and len(namespace["table"]) == 1
    assert namespace["board"].cell("reverse_string", "dape-kerple-log")["runs"] == 3


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    """examples/quickstart.ipynb, its code cells run in order (as a kernel would), in a temporary folder."""
    from conftest import EXAMPLES

    notebook = json.loads((EXAMPLES / "quickstart.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), namespace)
    assert (tmp_path / "notebook-accuracy.png").stat().st_size > 10_000
    assert (tmp_path / "notebook-show.png").stat().st_size > 10_000
    assert len(namespace["runs"]) == 9
