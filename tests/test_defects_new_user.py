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


# -- a plugin's PE beside the committed baselines: the results name it, no plugin needed ----------
def test_compare_and_leaderboard_take_a_plugin_pe_from_the_results_without_the_plugin(cli, tmp_path, smoke_result):
    """`che compare --pes gaussian,alibi --results results/cpu/runs --results results/mine` said
    "unknown positional encoding 'gaussian'" unless the plugin was loaded (and --plugin is no option
    of che compare). "gauss-window" is no PE any test registers."""
    import che

    base = write_results(tmp_path / "base", smoke_result, [{"pe": "alibi", "ood": v} for v in (0.5, 0.52, 0.54)]
                         + [{"pe": "kerple-log", "ood": v, "seed": 3 + i} for i, v in enumerate((0.5, 0.5, 0.5))])
    mine = write_results(tmp_path / "mine", smoke_result, [{"pe": "gauss-window", "ood": v, "seed": 10 + i}
                                                           for i, v in enumerate((0.6, 0.62, 0.64))])
    folders = ["--results", base, "--results", mine]
    compared = cli("compare", "--pes", "gauss-window,alibi", *folders, "--format", "json")
    assert compared.exit_code == 0, compared.stderr
    assert json.loads(compared.stdout)[0]["difference"] == pytest.approx(10.0)
    board = cli("leaderboard", *folders, "--agg", "mean", "--format", "json")
    assert board.exit_code == 0 and {"gauss-window", "alibi"} <= {c["pe"] for c in json.loads(board.stdout)["cells"]}
    alias = che.compare(che.load_results([base, mine]), "kerple", "gauss-window")  # an alias still names its PE
    assert alias.attrs["pes"] == ("kerple-log", "gauss-window")

    typo = cli("compare", "--pes", "gauss-windw,alibi", *folders)
    assert typo.exit_code == 2 and typo.stderr == (
        "error: no runs of PE 'gauss-windw' in these results; did you mean 'gauss-window'? "
        "(PEs there: alibi, gauss-window, kerple-log)\n")
    task = cli("compare", "--pes", "gauss-window,alibi", "--tasks", "parity_chek", *folders)
    assert task.exit_code == 2 and "no runs of task 'parity_chek' in the runs of protocol smoke; did you mean " \
        "'parity_check'?" in task.stderr


def test_every_command_that_builds_a_model_or_lists_names_takes_plugin():
    """What the README says: --plugin on every command but those that only read results (and settings)."""
    import typer

    from che.cli import app

    commands = typer.main.get_command(app).commands
    without = {name for name, command in commands.items() if not any("--plugin" in p.opts for p in command.params)}
    assert without == {"settings", "leaderboard", "compare"}


# -- no text che ships or shows names an option that does not exist ------------------------------
# Options of the other programs the tree runs or names (pip, git, pytest, scancel).
OTHER_PROGRAMS_OPTIONS = {"--help", "--no-deps", "--no-build-isolation", "--target", "--index-url", "--no-index",
                          "--no-cache-dir", "--no-compile", "--upgrade", "--disable-pip-version-check", "--porcelain",
                          "--untracked-files", "--strict-markers", "--state", "--signal", "--query-gpu", "--null",
                          "--no-cache"}


def test_no_text_in_the_tree_names_an_option_that_does_not_exist():
    """examples/gaussian_pe.py and a PE error told users to use --rand-mode, which became
    --set rand_mode=...; a missing model blamed --no-save-model."""
    import re
    import subprocess

    import typer
    from conftest import REPO

    from che.cli import app

    group = typer.main.get_command(app)
    options = {o for command in [group, *group.commands.values()] for p in command.params
               for o in p.opts + p.secondary_opts}
    scripts = REPO / "scripts"
    options |= {m for path in scripts.glob("*.py") for m in re.findall(r'add_argument\("(--[a-z0-9-]+)"', path.read_text())}
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    stale = set()
    for name in files:
        # tests name bad options on purpose; result files keep the command lines they were made with
        if name.startswith("tests/") or (name.startswith("results/") and not name.endswith(".md")):
            continue
        path = REPO / name
        if path.suffix not in (".py", ".md", ".json", ".toml", ".sh", ".txt", ".ipynb", "") or not path.is_file():
            continue
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text(errors="replace")):
            if option not in options | OTHER_PROGRAMS_OPTIONS:
                stale.add(f"{name}: {option}")
    assert not stale


# -- che tasks NAME: a task in full, with the docstring the README sends readers to -----------------
def test_che_tasks_name_shows_the_task_with_its_docstring(cli):
    shown = cli("tasks", "odds_first")
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == ("odds_first (level cs): 2 input symbols, 2 output classes; output: N positions; "
                        "chance accuracy 50%")
    from che.tasks.cs.odds_first import OddsFirst
    import inspect

    assert inspect.cleandoc(OddsFirst.__doc__) in shown.stdout
    assert json.loads(cli("tasks", "odds_first", "--json").stdout)["about"] == inspect.cleandoc(OddsFirst.__doc__)
    typo = cli("tasks", "odds_frist")
    assert typo.exit_code == 2 and typo.stderr.startswith("error: unknown task 'odds_frist'; did you mean 'odds_first'?")


def test_che_tasks_name_shows_a_plugin_task(cli):
    from conftest import EXAMPLES

    shown = cli("tasks", "count_ones_mod3", "--plugin", EXAMPLES / "count_ones_mod3.py")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("count_ones_mod3 (level regular): 2 input symbols, 3 output classes; output: one label")
    assert "count_ones_mod3.py" in shown.stdout.splitlines()[1] and "a regular language" in shown.stdout


# -- what a table of smoke runs is, and what a comparison's interval and p say -------------------
def test_a_leaderboard_of_smoke_runs_says_it_is_a_plumbing_check_and_marks_no_best(cli, tmp_path, smoke_result):
    smoke = write_results(tmp_path / "smoke", smoke_result, [{"pe": "alibi", "ood": 0.5}, {"pe": "none", "ood": 0.4}])
    for agg in ("max", "mean"):
        table = cli("leaderboard", "--results", smoke, "--agg", agg)
        assert table.exit_code == 0, table.stderr
        assert "CHE leaderboard (smoke runs: a plumbing check, not a measurement)" in " ".join(table.stdout.split())
    md = cli("leaderboard", "--results", smoke, "--format", "md").stdout
    assert "These are smoke runs, which train too few steps to learn" in md and "**" not in md
    assert "Best per task marked" not in md
    board = json.loads(cli("leaderboard", "--results", smoke, "--format", "json").stdout)
    assert board["plumbing_check"] is True and not any(c["best"] for c in board["cells"])
    compared = cli("compare", "--pes", "alibi,none", "--results", smoke)
    assert "note: these are smoke runs" in compared.stderr

    longer = write_results(tmp_path / "longer", smoke_result, [{"pe": "alibi", "ood": 0.5, "config": {"steps": 11}},
                                                               {"pe": "none", "ood": 0.4, "config": {"steps": 11}}])
    measured = cli("leaderboard", "--results", longer, "--format", "md").stdout
    assert "plumbing" not in measured and "**50.0 (1)**" in measured and "Best per task marked" in measured


def test_compare_says_why_an_interval_excludes_0_beside_a_large_p(cli, tmp_path, smoke_result):
    """3 runs against 3, all of A above all of B: the bootstrap interval excludes 0, and the exact
    permutation test cannot go below p = 0.1."""
    runs = [{"pe": "alibi", "ood": v, "config": {"steps": 100}} for v in (0.60, 0.62, 0.64)]
    runs += [{"pe": "none", "ood": v, "config": {"steps": 100}} for v in (0.50, 0.52, 0.54)]
    folder = write_results(tmp_path / "runs", smoke_result, runs)
    result = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert result.exit_code == 0, result.stderr
    record = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json").stdout)[0]
    assert record["ci_low"] > 0 and record["p_value"] == pytest.approx(0.1)
    text = " ".join(result.stdout.split())
    assert ("On 1 task(s) the 95% interval excludes 0 while p >= 0.05: the interval (a bootstrap over runs) "
            "estimates the difference's size and is too narrow with few runs; p (an exact permutation test) tests "
            "whether there is a difference at all: trust p.") in text
    overlapping = write_results(tmp_path / "overlap", smoke_result, [
        {"pe": "alibi", "ood": v, "config": {"steps": 100}} for v in (0.5, 0.6, 0.7)] + [
        {"pe": "none", "ood": v, "config": {"steps": 100}} for v in (0.45, 0.55, 0.65)])
    assert "excludes 0" not in cli("compare", "--pes", "alibi,none", "--results", overlapping).stdout


# -- the Python API: a leaderboard renders as the command prints it; scores say their unit --------
def test_the_python_leaderboard_renders_what_the_command_prints(cli, tmp_path, smoke_result):
    import che

    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": pe, "ood": v, "config": {"steps": 100}} for pe, v in (("alibi", 0.6), ("alibi", 0.7), ("none", 0.5))])
    board = che.leaderboard(che.load_results(folder), agg="mean")
    assert board.to_markdown() == cli("leaderboard", "--results", folder, "--agg", "mean", "--format", "md").stdout
    frame = board.to_frame()
    assert list(frame.columns) == ["level", "task", "chance", "none", "alibi"]
    assert frame.iloc[0].tolist() == ["regular", "parity_check", "50", "50.0 (1)", "65.0 [60.0, 70.0] (2)"]
    assert frame.task.tolist()[1:] == ["average: Regular", "average: All tasks"]


def test_load_results_gives_each_score_as_a_fraction_and_in_percent(tmp_path, smoke_result):
    import che

    runs = che.load_results(write_results(tmp_path / "runs", smoke_result, [{"pe": "alibi", "ood": 0.625}]))
    assert runs.ood_accuracy[0] == pytest.approx(0.625) and runs.ood_accuracy_percent[0] == pytest.approx(62.5)
    assert runs.chance_accuracy_percent[0] == pytest.approx(50.0)
    assert runs.in_distribution_accuracy_percent[0] == pytest.approx(100 * runs.in_distribution_accuracy[0])


def test_eval_and_show_of_a_plugin_run_name_the_plugin_to_load(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": "gauss-window", "plugins": [str(tmp_path / "my_pe.py")]}])
    result = next(folder.rglob("*.json"))
    for args in (("eval", result, "--out-results", tmp_path / "evals"), ("show", result, "--out", tmp_path / "a.png")):
        refused = cli(*args)
        assert refused.exit_code == 2 and refused.stdout == ""
        assert refused.stderr.startswith("error: unknown positional encoding 'gauss-window'")
        assert refused.stderr.endswith(f"was made with the plugin(s) {tmp_path / 'my_pe.py'}: load them with --plugin\n")
