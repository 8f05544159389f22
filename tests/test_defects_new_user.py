"""Defects a new user met (trying che end to end as the README says): each test failed before its fix."""

from __future__ import annotations

import json
import math

import pytest
from conftest import write_results


# -- a first comparison with one run of a PE ------------------------------------------------------
def test_compare_with_a_single_run_of_a_pe_gives_n_a_and_a_note(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": "none", "ood": 0.5}, {"pe": "alibi", "ood": 0.6}, {"pe": "alibi", "ood": 0.7},
        {"pe": "alibi", "ood": 0.65}])
    result = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output and "+15.0" in result.stdout and "n/a" in result.stdout
    assert "single run" in result.stderr and "--seeds" in result.stderr
    records = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json").stdout)
    assert records[0]["difference"] == pytest.approx(15.0)
    assert records[0]["ci_low"] is None and records[0]["p_value"] is None and records[0]["significant"] is False

    import che

    table = che.compare(che.load_results(folder), "alibi", "none")
    assert math.isnan(table.p_value[0]) and math.isnan(table.ci_low[0])


def test_holm_leaves_untested_tasks_out_of_the_family():
    from che.stats import holm

    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)


# -- user strings reach rich as text, never as markup ---------------------------------------------
PE_PLUGIN = '''
import torch
from che import register_pe
from che.models.positional import BiasPE


@register_pe
class Markup(BiasPE):
    name, family = "{name}", "additive bias"
    citation = "Someone et al. 2026, [bold]A Title[/]"

    def bias_from_offsets(self, offsets, positions):
        return torch.zeros(self.config.n_heads, *offsets.shape)
'''


@pytest.mark.parametrize("where", ["absolute", "relative", "environment"])
def test_a_plugin_path_with_brackets_is_listed_as_written(cli, tmp_path, monkeypatch, where):
    folder = tmp_path / "[red]plugins[bold]"
    folder.mkdir()
    plugin = folder / "my_pe.py"
    plugin.write_text(PE_PLUGIN.replace("{name}", "markup-bias"))
    monkeypatch.chdir(tmp_path)
    from che.cli.common import console

    monkeypatch.setattr(console, "width", 400)  # no folded cells: the path reads whole
    if where == "environment":
        monkeypatch.setenv("CHE_PLUGINS", str(plugin))
        result = cli("pes")
    else:
        result = cli("pes", "--plugin", plugin if where == "absolute" else plugin.relative_to(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output
    assert "markup-bias" in result.stdout and "[red]plugins[bold]/my_pe.py]" in result.stdout
    described = cli("pes", "markup-bias", "--plugin", plugin)
    assert described.exit_code == 0 and "[bold]A Title[/]" in described.stdout


@pytest.fixture
def hostile_results(tmp_path, smoke_result):
    """Results whose task level and PE name are markup or a spreadsheet formula."""
    return write_results(tmp_path / "runs", smoke_result, [
        {"pe": "=HYPERLINK(\"http://x\")", "level": "<img src=x onerror=alert(1)>"},
        {"pe": "a|b", "level": "<img src=x onerror=alert(1)>"},
        {"pe": "[bold]x[/]", "level": "<img src=x onerror=alert(1)>"}])


def test_the_leaderboard_escapes_names_for_each_format(cli, hostile_results):
    html = cli("leaderboard", "--results", hostile_results, "--format", "html").stdout
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    md = cli("leaderboard", "--results", hostile_results, "--format", "md").stdout
    header = md.splitlines()[0]
    assert "a\\|b" in header and header.count("|") - header.count("\\|") == 7  # 6 columns, none broken
    csv = cli("leaderboard", "--results", hostile_results, "--format", "csv").stdout
    assert "'=HYPERLINK" in csv and not any(line.startswith("=") or ",=" in line for line in csv.splitlines())
    table = cli("leaderboard", "--results", hostile_results)
    assert table.exit_code == 0 and "[bold]x[/]" in "".join(table.stdout.split())


def test_the_plots_draw_names_that_look_like_mathtext(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [{"pe": "$\\undefinedmacro{x}$"}])
    result = cli("leaderboard", "--results", folder, "--plot", tmp_path / "plot.png")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "plot.png").stat().st_size > 1000


# -- a cell never mixes protocols -----------------------------------------------------------------
def test_the_leaderboard_keeps_protocols_apart(cli, tmp_path, smoke_result):
    import che
    from che import CheError

    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": "alibi", "ood": 0.55, "config": {"steps": 1500, "preset": "cpu"}},
        {"pe": "alibi", "ood": 0.60, "config": {"steps": 1500, "preset": "cpu"}},
        {"pe": "alibi", "ood": 0.95, "config": {"steps": 10, "eval_samples": 4}},  # a smoke run
    ])
    result = cli("leaderboard", "--results", folder, "--agg", "max", "--format", "json")
    assert result.exit_code == 0, result.stderr
    boards = json.loads(result.stdout)
    assert [b["cells"][0]["ood_accuracy"] for b in boards] == [pytest.approx(60.0), pytest.approx(95.0)]
    assert [b["cells"][0]["runs"] for b in boards] == [2, 1]
    assert "2 protocols" in result.stderr and "steps" in result.stderr and "eval_samples" in result.stderr
    one = cli("leaderboard", "--results", folder, "--protocol", "cpu", "--format", "json")
    assert json.loads(one.stdout)["cells"][0]["runs"] == 2
    assert "1500 steps" in json.loads(one.stdout)["protocol"]
    table = cli("leaderboard", "--results", folder)
    assert table.stdout.count("CHE leaderboard, protocol") == 2

    runs = che.load_results(folder)
    with pytest.raises(CheError, match="2 protocols"):
        che.leaderboard(runs)
    assert che.leaderboard(runs, protocol="cpu").cell(runs.task[0], "alibi")["runs"] == 2
    assert [p.label for p in che.protocols(runs)] == ["cpu", "smoke"]


def test_compare_takes_the_runs_of_one_protocol(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": pe, "ood": ood, "config": {"steps": steps}}
        for pe, ood, steps in [("alibi", 0.6, 10), ("alibi", 0.7, 10), ("none", 0.5, 10), ("none", 0.5, 10),
                               ("alibi", 0.9, 20), ("none", 0.1, 20)]])
    mixed = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert mixed.exit_code == 2 and "2 protocols" in mixed.stderr and "--protocol" in mixed.stderr
    one = cli("compare", "--pes", "alibi,none", "--results", folder, "--protocol", "smoke", "--format", "json")
    assert json.loads(one.stdout)[0]["difference"] == pytest.approx(15.0)


# -- a dry run answers in seconds and trains nothing where jobs are only submitted ------------------
def test_a_slurm_dry_run_of_the_paper_grid_trains_nothing(cli, monkeypatch):
    from che.runners.train import Trainer

    def no_training(*args, **kwargs):
        raise AssertionError("a dry run trained a model")

    monkeypatch.setattr(Trainer, "step", no_training)
    result = cli("sweep", "dape_table2", "--executor", "slurm", "--set", "slurm.partition=gpu", "--set", "slurm.time=720",
                 "--pack", 9, "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "1260 pending" in result.stdout and "nodes like cuda: NVIDIA H200" in result.stdout
    assert "on SLURM: 140 job(s)" in result.stdout


def test_a_slurm_dry_run_with_pack_auto_plans_one_run_per_gpu_job(cli):
    """Nothing is measured where SLURM jobs are submitted, so `--pack auto` gives one run per GPU job:
    the note, the packs the sweep would submit and the estimate's jobs all say so."""
    from che.runners import launch

    result = cli("sweep", "dape_table2", "--executor", "slurm", "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "each trains one run" in result.stdout and "packs of up to" not in result.stdout
    assert "on SLURM: 1260 job(s) of 1 run(s), each asking 1 GPU(s)" in result.stdout
    assert launch.plan_sweep("dape_table2", executor="slurm").pack == 1  # what the sweep submits


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_ray_dry_run_from_a_machine_without_a_gpu_estimates_the_clusters_gpus(cli, monkeypatch, device):
    """As for SLURM, the GPUs of a cluster are estimated from a shipped calibration; `--device cuda`
    is not refused for want of a GPU on the machine that submits the runs."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli("sweep", "dape_table2", "--executor", "ray", "--ray-address", "HOST:6379", "--device", device,
                 "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "estimated cost of the 1260 runs left: " in result.stdout
    assert "of device time on GPUs like cuda: NVIDIA H200" in result.stdout
    if device == "auto":  # the cluster's devices are unknown here: both estimates, each with its condition
        assert "if the Ray cluster has GPUs" in result.stdout and "on CPUs like cpu" in result.stdout
    else:
        assert "each trains one run" in result.stdout and "on CPUs" not in result.stdout


def test_the_readmes_slurm_and_ray_dry_runs_agree_with_themselves(cli, monkeypatch):
    """The README's SLURM and Ray examples, as written, with --dry-run: the packs the note announces
    are the jobs the estimate plans, and a cluster's GPUs are estimated from a machine without one."""
    import re

    import torch
    from conftest import REPO

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sweeps = REPO.joinpath("README.md").read_text().split("## Sweeps", 1)[1].split("\n## ", 1)[0]
    commands = dict(re.findall(r"`(slurm|ray)`<br>`che (sweep [^`]+)`", sweeps))
    for executor, command in commands.items():
        result = cli(*command.split(), "--results", "/nonexistent/che-dry-run", "--dry-run")
        assert result.exit_code == 0, (command, result.stderr)
        assert "GPUs like cuda: NVIDIA H200" in result.stdout or "nodes like cuda: NVIDIA H200" in result.stdout
        announced = re.search(r"here (\d+) pack\(s\) of (\d+) run\(s\)", result.stdout)
        if executor == "slurm":
            jobs = re.search(r"on SLURM: (\d+) job\(s\) of (\d+) run\(s\)", result.stdout)
            assert announced and jobs and announced.groups() == jobs.groups(), result.stdout
            assert int(jobs[1]) * int(jobs[2]) == 1260
    assert set(commands) == {"slurm", "ray"}


def test_a_local_dry_run_calibrates_once_then_only_counts(cli, monkeypatch, tmp_path):
    """The first dry run on a device measures four small probe steps and caches them; the next one
    (of the paper-size grid, 1,260 runs) trains nothing."""
    from che.runners import cost
    from che.runners.train import Trainer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(cost, "SHIPPED", tmp_path / "none.json")
    first = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--device", "cpu",
                "--results", tmp_path / "runs", "--dry-run")
    assert first.exit_code == 0, first.stderr
    assert "measured on this machine" in first.stdout and cost.cache_file().exists()
    monkeypatch.setattr(Trainer, "step", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    second = cli("sweep", "dape_table2", "--device", "cpu", "--results", tmp_path / "runs", "--dry-run",
                 "--jobs", 1)
    assert second.exit_code == 0, second.stderr
    assert "estimated cost of the 1260 runs left" in second.stdout
    assert cli("sweep", "dape_table2", "--results", tmp_path / "runs", "--dry-run", "--no-estimate").exit_code == 0


# -- unknown names: case-insensitive suggestions, the closest few, the option as typed ------------
def test_unknown_names_suggest_ignoring_case_and_name_the_option_typed(cli):
    result = cli("run", "--task", "reverse_string", "--pe", "DAPE-FIRE", "--preset", "smoke")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: --pe: unknown positional encoding 'DAPE-FIRE'; did you mean 'dape-fire'")
    assert "`che pes` lists them" in line and "kerple-power-sym" not in line  # not all 66 names
    task = cli("run", "--task", "Reverse_String", "--pe", "alibi").stderr
    assert task.startswith("error: --task: unknown task 'Reverse_String'; did you mean 'reverse_string'?")
    assert "bucket_sort" in task or "`che tasks` lists them" in task  # few enough to list, or named
    sweep = cli("sweep", "--tasks", "reverse_string", "--pes", "alibii", "--dry-run").stderr
    assert sweep.startswith("error: --pes: unknown positional encoding 'alibii'; did you mean 'alibi'")


def test_a_missing_config_file_is_called_a_config_file(cli, tmp_path):
    result = cli("run", "--config", tmp_path / "nope.toml")
    assert result.exit_code == 2 and result.stderr == f"error: config file '{tmp_path / 'nope.toml'}' does not exist\n"


# -- che pes counts what a model of the PE trains ------------------------------------------------
@pytest.mark.parametrize("pe", ["dape-fire", "dape-alibi", "dape2-kerple-log", "fire", "learned", "t5",
                                "rand-relative", "alibi"])
def test_che_pes_counts_the_parameters_a_model_trains_for_the_pe(cli, pe):
    from che.models import Transformer

    from che.config import ModelConfig

    def parameters(name):
        return Transformer(ModelConfig(input_size=2, output_size=2, pe=name)).num_parameters()

    line = " ".join(cli("pes", pe).stdout.split())
    listed = int(line.split("a model trains ")[1].split(" ")[0].replace(",", ""))
    assert listed == parameters(pe) - parameters("none")
    assert "5 layers, d_model 64, 8 heads" in line


# -- the README's Python example runs as written ---------------------------------------------------
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    block = readme.split("```python\nimport che\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("import che\n" + block, namespace)
    assert len(namespace["runs"]) == 6 and len(namespace["table"]) == 1
    assert namespace["board"].cell("reverse_string", "dape-kerple-log")["runs"] == 3


def test_results_from_before_a_setting_existed_share_the_protocol_of_its_default(cli, tmp_path, smoke_result):
    """A result written before `precision` (the bf16/tf32 flags instead) and before `rope_fraction`
    and `bipe_segment` is the protocol of their defaults; a pack's in-flight checkpoint notes
    (`pack-*.ckpt.json`) are not results and are passed over without a warning."""
    old = json.loads(open(smoke_result).read())["config"]
    legacy = {k: v for k, v in old.items() if k not in ("precision", "rope_fraction", "bipe_segment")}
    legacy |= {"bf16": False, "tf32": True}
    folder = write_results(tmp_path / "runs", smoke_result, [{"pe": "alibi"}, {"pe": "none"}])
    for path in (folder / "parity_check" / "none").glob("*.json"):
        record = json.loads(path.read_text())
        record["config"] = legacy | {"pe": "none"}
        path.write_text(json.dumps(record))
    (folder / "parity_check" / "none" / "pack-0123456789.ckpt.json").write_text('{"members": []}')
    result = cli("leaderboard", "--results", folder, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert "protocols" not in result.stderr and "skipping" not in result.stderr
    assert {cell["pe"] for cell in json.loads(result.stdout)["cells"]} == {"alibi", "none"}
