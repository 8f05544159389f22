"""Results a researcher can publish: kept models evaluated again, pictures, confidence intervals and
significance, the leaderboard against a published table, and the Python API."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import che
from che.comparisons import across_tasks, summary
from che.stats import (
    bootstrap_difference_ci,
    bootstrap_mean_ci,
    holm,
    permutation_p_value,
    sign_flip_p_value,
    smallest_p_value,
)


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    """3 seeds x 2 PEs on one task, smoke preset, trained through the API."""
    folder = tmp_path_factory.mktemp("published") / "runs"
    for pe in ("alibi", "none"):
        che.run("reverse_string", pe, preset="smoke", seeds=[0, 1, 2], results=folder, device="cpu")
    return folder


# -- the API and the kept models --------------------------------------------------------------------
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


def test_every_run_keeps_its_model_and_it_loads_as_the_run(runs_folder):
    """The stored weights (safetensors, about 1 MB) reproduce the run's own evaluation exactly."""
    import torch
    from che.runners.evaluate import evaluate
    from che.runners.stored import find_run, load_model, model_path

    record, path = find_run(str(next(runs_folder.rglob("*.json"))))
    weights = model_path(path)
    assert weights.is_file() and 0.9e6 < weights.stat().st_size < 1.2e6 and record["model"] == weights.name
    model, config, task = load_model(record, path, torch.device("cpu"))
    assert evaluate(model, task, config, torch.device("cpu"))[0] == pytest.approx(record["accuracy_by_length"])
    by_id, _ = find_run(record["run_id"], runs_folder)
    assert by_id["run_id"] == record["run_id"]


def test_no_save_model_keeps_none(cli, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--set", "save_model=false",
                 "--results", tmp_path, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert not list(tmp_path.rglob("*.safetensors")) and json.loads(next(tmp_path.rglob("*.json")).read_text())[
        "model"] is None


def test_che_eval_evaluates_a_stored_run_again_for_the_leaderboard(cli, runs_folder, tmp_path):
    run = next(runs_folder.rglob("*.json"))
    result = cli("eval", run, "--max-test-length", 12, "--out-results", tmp_path / "evals", "--quiet")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(next((tmp_path / "evals").rglob("*.json")).read_text())
    original = json.loads(run.read_text())
    assert evaluation["evaluation_of"]["run_id"] == original["run_id"]
    assert len(evaluation["accuracy_by_length"]) == 12 and evaluation["config"]["max_test_length"] == 12
    assert evaluation["accuracy_by_length"][:8] == pytest.approx(original["accuracy_by_length"])  # same data
    board = cli("leaderboard", "--results", tmp_path / "evals", "--format", "json")
    assert board.exit_code == 0 and json.loads(board.stdout)["cells"][0]["runs"] == 1


def test_che_eval_changes_only_the_evaluation(runs_folder):
    import torch
    from che.runners.inspection import reevaluate
    from che.runners.stored import find_run

    from che.errors import CheError

    record, path = find_run(str(next(runs_folder.rglob("*.json"))))
    with pytest.raises(CheError, match="changes only the evaluation"):
        reevaluate(record, path, torch.device("cpu"), runs_folder, steps=5)


# -- pictures -------------------------------------------------------------------------------------------
def test_che_show_draws_bias_correction_and_attention(cli, tmp_path):
    result = cli("run", "--task", "reverse_string", "--pe", "dape-kerple", "--preset", "smoke", "--results",
                 tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.stderr
    import torch
    from che.runners.inspection import attention_maps
    from che.runners.stored import find_run

    record, path = find_run(str(next((tmp_path / "runs").rglob("*.json"))))
    recorded, about = attention_maps(record, path, torch.device("cpu"), layer=1, length=5, sample=2)
    tokens = 10  # 5 inputs + 5 outputs
    assert recorded["bias"].shape == (8, tokens, tokens) and recorded["f"].shape == (8, tokens, tokens)
    assert torch.allclose(recorded["probs"].sum(-1), torch.ones(8, tokens), atol=1e-5)
    # what the softmax saw is S + B + f(S, B), DAPE's formula
    assert torch.allclose(recorded["logits"], recorded["scores"] + recorded["bias"] + recorded["f"], atol=1e-5)
    out = tmp_path / "show.png"
    drawn = cli("show", path, "--out", out, "--layer", 1, "--heads", "0,3", "--length", 5)
    assert drawn.exit_code == 0, drawn.stderr
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    bad = cli("show", path, "--out", tmp_path / "x.png", "--heads", "9")
    assert bad.exit_code == 2 and "heads 0..7" in bad.stderr


@pytest.mark.parametrize("pe, panels", [
    ("dape-kerple", ["bias B", "DAPE's correction f(S, B)", "attention"]),
    ("alibi", ["bias B", "attention"]),
    ("fox", ["FoX's decays D", "attention"]),
    ("fox-alibi", ["FoX's decays D", "bias B", "attention"]),
    ("stick-breaking", ["attention"]),
])
def test_che_show_names_each_panel_and_keeps_its_title_whole(cli, tmp_path, monkeypatch, pe, panels):
    """Each panel says what it shows (FoX's decays are not a bias B, ALiBi's bias is drawn), and the
    title fits the figure however few panels it has."""
    import matplotlib.figure
    import torch

    from che.config import make_config
    from che.runners.inspection import attention_maps
    from che.runners.stored import find_run
    from conftest import run_alone

    path = run_alone(make_config("reverse_string", pe, "smoke"), tmp_path / "runs", device="cpu").path
    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        renderer = figure.canvas.get_renderer()
        drawn["titles"] = [ax.get_title() for ax in figure.axes if ax.get_title()]
        drawn["heading"] = figure._suptitle.get_window_extent(renderer)
        drawn["width"] = figure.bbox.width
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    result = cli("show", path, "--out", tmp_path / "show.png", "--heads", "0,1")
    assert result.exit_code == 0, result.stderr
    assert drawn["titles"] == panels * 2
    assert 0 <= drawn["heading"].x0 and drawn["heading"].x1 <= drawn["width"]
    if pe == "fox-alibi":  # what the softmax saw: the scores, FoX's decays and ALiBi's bias, apart
        recorded, _ = attention_maps(*find_run(str(path)), torch.device("cpu"), layer=0, length=5, sample=0)
        torch.testing.assert_close(recorded["logits"], recorded["scores"] + recorded["decay"] + recorded["bias"])


def test_pes_show_plots_the_initial_bias(cli, tmp_path):
    out = tmp_path / "bias.svg"
    result = cli("pes", "--show", "kerple-log", "--length", 12, "--n-heads", 4, "--plot", out)
    assert result.exit_code == 0, result.stderr and out.read_text().startswith("<?xml")
    assert cli("pes", "--show", "none", "--plot", out).exit_code == 2


def test_the_leaderboard_plot_has_published_markers_legend_and_caption(runs_folder, tmp_path, monkeypatch):
    import matplotlib.figure

    from che.plots import accuracy_vs_length

    runs = che.load_results(runs_folder).replace({"pe": {"alibi": "rand-alibi"}})  # a PE of the table
    board = che.leaderboard(runs, reference="dape2024_che_table2")
    texts, legends = [], []
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        texts.extend(t.get_text() for t in figure.texts)
        legends.extend(t.get_text() for legend in figure.legends for t in legend.get_texts())
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    accuracy_vs_length(board, tmp_path / "plot.png")
    assert {"rand-alibi", "none", "training lengths", "chance", "published (dape2024_che_table2)"} <= set(legends)
    assert any("10 steps of batch 8" in t and "3-3 seed(s) per cell" in t for t in texts)


# -- the leaderboard ----------------------------------------------------------------------------------
def test_the_terminal_table_shows_the_published_numbers(cli, runs_folder):
    """The published numbers are in the table, in columns of their own (each cell on one line)."""
    result = cli("leaderboard", "--results", runs_folder, "--reference", "dape2024_che_table2", "--agg", "mean")
    assert result.exit_code == 0, result.stderr
    published = pd.read_csv("results/reference/dape2024_che_table2.csv").set_index("task").loc["reverse_string"]
    row = next(line for line in result.stdout.splitlines() if "reverse_string" in line)
    cells = [cell.strip() for cell in row.split("│")]
    for pe in ("rand-alibi", "rand-relative", "dape-kerple", "dape-fire"):
        assert f"{published[pe]:.1f}" in cells, pe
    assert "Not the protocol of dape2024_che_table2" in result.stderr and "train_length 5 vs 40" in result.stderr


def test_strict_refuses_another_protocol(cli, runs_folder):
    result = cli("leaderboard", "--results", runs_folder, "--reference", "dape2024_che_table2", "--strict")
    assert result.exit_code == 2 and "protocol differs" in result.stderr


def test_mean_aggregation_shows_intervals_and_runs(cli, runs_folder):
    result = cli("leaderboard", "--results", runs_folder, "--agg", "mean", "--format", "json")
    cells = {c["pe"]: c for c in json.loads(result.stdout)["cells"]}
    assert cells["alibi"]["runs"] == 3 and cells["alibi"]["ci_low"] <= cells["alibi"]["mean"] <= cells["alibi"]["ci_high"]
    md = cli("leaderboard", "--results", runs_folder, "--agg", "mean", "--format", "md").stdout
    assert "(3)" in md and "95% bootstrap confidence interval" in md


# -- comparisons and statistics ---------------------------------------------------------------------------
def test_che_compare_json_has_one_record_per_task(cli, runs_folder):
    result = cli("compare", "--pes", "alibi,none", "--results", runs_folder, "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 1
    record = records[0]
    for key in ("task", "difference", "ci_low", "ci_high", "p_value", "p_adjusted", "runs_a", "runs_b"):
        assert key in record, key
    runs = che.load_results(runs_folder)
    a, b = (100 * runs[runs.pe == pe].ood_accuracy for pe in ("alibi", "none"))
    assert record["difference"] == pytest.approx(a.mean() - b.mean()) and record["runs_a"] == 3
    assert record["p_value"] >= smallest_p_value(3, 3) == pytest.approx(0.1)
    table = cli("compare", "--pes", "alibi,none", "--results", runs_folder)
    assert "cannot give p below 0.1" in table.stdout
    assert cli("compare", "--pes", "alibi,alibi", "--results", runs_folder).exit_code == 2


def test_the_permutation_test_is_exact():
    # 3 vs 3 fully separated: 2 of the C(6, 3) = 20 splits are as extreme (the split and its mirror)
    assert permutation_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert permutation_p_value([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert permutation_p_value([1, 5, 3], [2, 4, 3]) == 1.0   # equal means
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 30), rng.normal(0, 1, 30)       # Monte Carlo branch: p in (0, 1]
    assert 0 < permutation_p_value(a, b) <= 1


def test_the_sign_flip_test_over_tasks_is_exact():
    # all 5 differences positive: 2 of the 2^5 sign patterns (all +, all -) are as extreme
    assert sign_flip_p_value([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert sign_flip_p_value([1, -1, 2, -2]) == 1.0
    # 15 tasks, all one way: p = 2 / 2^15, what 3 seeds per cell can reach across the benchmark
    assert sign_flip_p_value(np.arange(1, 16)) == pytest.approx(2 / 2**15)


def test_compare_reports_the_across_task_test():
    rows = [{"task": task, "level": "regular", "pe": pe, "ood_accuracy": 0.5 + (0.1 if pe == "alibi" else 0) + 0.01 * seed}
            for task in ("even_pairs", "parity_check", "cycle_navigation", "modular_arithmetic", "reverse_string")
            for pe in ("alibi", "none") for seed in range(3)]
    table = che.compare(pd.DataFrame(rows), "alibi", "none")
    assert table.difference.to_numpy() == pytest.approx([10.0] * 5)
    assert across_tasks(table) == {"tasks": 5, "difference": pytest.approx(10.0), "p_value": pytest.approx(2 / 32)}
    assert "Across the 5 tasks (each task one unit): mean difference +10.0 points, sign-flip test p = 0.062" \
        in summary(table, "alibi", "none")


def test_the_bootstrap_difference_interval_brackets_the_difference():
    low, high = bootstrap_difference_ci([60, 62, 64], [50, 51, 52])
    assert 8 < low < 11 < high < 14
    assert bootstrap_difference_ci([0.6, 0.6], [0.5, 0.5]) == pytest.approx((0.1, 0.1))
    assert all(math.isnan(v) for v in bootstrap_difference_ci([0.7], [0.5, 0.6]))  # one run: no spread known


def test_holm_adjusts_step_down_and_stays_monotone():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.2]) == [0.2]


def test_the_bootstrap_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        sample = rng.normal(50, 10, 30)
        low, high = bootstrap_mean_ci(sample, samples=2000, seed=trial)
        covered += low <= 50 <= high
    assert 0.88 <= covered / 200 <= 0.99
    assert bootstrap_mean_ci([0.7]) == (0.7, 0.7)
    assert not math.isnan(bootstrap_mean_ci([0.1, 0.9])[0])


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


def test_the_committed_cpu_leaderboard_is_what_its_results_give(cli, tmp_path):
    """results/cpu/leaderboard.md and the README's table are `che leaderboard --agg mean` of the
    committed runs (3 seeds in every cell), not numbers edited by hand."""
    from conftest import REPO

    results = REPO / "results" / "cpu" / "runs"
    frame = che.load_results(results)
    assert len(frame) == 180 and frame.groupby(["task", "pe"]).size().eq(3).all()
    out = tmp_path / "leaderboard.md"
    board = cli("leaderboard", "--results", results, "--agg", "mean", "--format", "md", "--out", out)
    assert board.exit_code == 0, board.stderr
    committed = (REPO / "results" / "cpu" / "leaderboard.md").read_text()
    assert out.read_text() == committed
    table = committed.split("\n\n")[0].strip()
    assert table in (REPO / "README.md").read_text()
