"""`che leaderboard` and che.leaderboard: a table per protocol, its formats (each escaping what comes
from results), smoke runs marked as such, published numbers beside the table, and the committed CPU
leaderboard."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import write_results

import che


# -- a cell never mixes protocols ------------------------------------------------------------------
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


def test_mean_aggregation_shows_intervals_and_runs(cli, runs_folder):
    result = cli("leaderboard", "--results", runs_folder, "--agg", "mean", "--format", "json")
    cells = {c["pe"]: c for c in json.loads(result.stdout)["cells"]}
    assert cells["alibi"]["runs"] == 3 and cells["alibi"]["ci_low"] <= cells["alibi"]["mean"] <= cells["alibi"]["ci_high"]
    md = cli("leaderboard", "--results", runs_folder, "--agg", "mean", "--format", "md").stdout
    assert "(3)" in md and "95% bootstrap confidence interval" in md


def test_the_leaderboard_takes_chosen_pes_and_seeds(cli, runs_folder):
    """`--pes` keeps those columns, `--seeds` those runs (a 3-seed grid beside 10-seed tests in one folder)."""
    result = cli("leaderboard", "--results", runs_folder, "--agg", "mean", "--format", "json", "--pes", "alibi",
                 "--seeds", "0..1")
    cells = json.loads(result.stdout)["cells"]
    assert [(c["pe"], c["runs"]) for c in cells] == [("alibi", 2)]
    missing = cli("leaderboard", "--results", runs_folder, "--pes", "alibi,rope")
    assert missing.exit_code == 2 and "no runs of 'rope'" in missing.stderr and "alibi, none" in missing.stderr
    assert cli("leaderboard", "--results", runs_folder, "--seeds", "7").exit_code == 2


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


# -- formats: each escapes what comes from results, the Python table renders as the command prints -
def test_html_leaderboard_escapes_what_comes_from_results(cli, smoke_result, tmp_path):
    folder = tmp_path / "runs" / "x" / "y"
    folder.mkdir(parents=True)
    record = json.loads(smoke_result.read_text()) | {"task": "<script>alert(1)</script>", "pe": "<b>pe"}
    (folder / "r.json").write_text(json.dumps(record))
    result = cli("leaderboard", "--results", tmp_path / "runs", "--format", "html")
    assert result.exit_code == 0, result.stderr
    assert "<script>" not in result.stdout and "&lt;script&gt;" in result.stdout and "&lt;b&gt;pe" in result.stdout


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


# -- beside a published table; the committed CPU leaderboard ---------------------------------------
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


def test_the_committed_after_2024_tables_are_what_their_results_give(cli, tmp_path):
    """results/beyond2024: leaderboard.md and the README's two tables are `che leaderboard --seeds 0..2`
    of the committed runs (3 seeds in every cell of 16 PEs x 6 tasks), not numbers edited by hand."""
    from conftest import REPO

    folder = REPO / "results" / "beyond2024"
    frame = che.load_results(folder / "runs")
    grid = frame[frame.seed.isin([0, 1, 2])]
    assert grid.groupby(["task", "pe"]).size().eq(3).all() and grid.pe.nunique() == 16 and grid.task.nunique() == 6
    out = tmp_path / "leaderboard.md"
    board = cli("leaderboard", "--results", folder / "runs", "--seeds", "0..2", "--agg", "mean", "--format", "md",
                "--out", out)
    assert board.exit_code == 0, board.stderr
    assert out.read_text() == (folder / "leaderboard.md").read_text()
    readme = (folder / "README.md").read_text()
    for pes in ("none,none+causal,p-rope,alibi,stick-breaking,bipe-alibi,fox,fox+causal,ssmax-alibi",
                "none,none+causal,rope,rope-yarn,pope,irope,rnope,path,path+causal"):
        shown = cli("leaderboard", "--results", folder / "runs", "--seeds", "0..2", "--agg", "mean", "--format", "md",
                    "--pes", pes)
        assert shown.stdout.split("\n\n")[0].strip() in readme


def test_results_of_an_earlier_implementation_never_share_a_table(cli, smoke_result, tmp_path):
    """A result whose recorded versions are not this code's (alibi+causal before its published form,
    say) is left out of leaderboards and comparisons, with a note naming it; compare_grids's protocol
    "any" keeps it, to compare two versions of the code."""
    from conftest import write_results

    import che
    from che.config import implementation_versions

    now = implementation_versions("parity_check", "alibi+causal")
    before = {"task": now["task"], "pe": {"alibi": 2}}
    runs = [{"pe": "alibi+causal", "seed": s, "ood": 0.9, "implementations": before} for s in range(2)]
    runs += [{"pe": "alibi+causal", "seed": s, "ood": 0.5, "implementations": now} for s in range(2, 4)]
    runs += [{"pe": "none", "seed": s, "ood": 0.5, "implementations": implementation_versions("parity_check", "none")}
             for s in range(2)]
    folder = write_results(tmp_path / "runs", smoke_result, runs)
    loaded = che.load_results(folder)
    assert loaded.outdated.sum() == 2
    board = json.loads(cli("leaderboard", "--results", folder, "--agg", "mean", "--format", "json").stdout)
    cell = next(c for c in board["cells"] if c["pe"] == "alibi+causal")
    assert cell["runs"] == 2 and cell["mean"] == pytest.approx(50.0)
    shown = cli("leaderboard", "--results", folder)
    assert "2 result(s) made by an earlier implementation" in shown.stderr and "alibi+causal: 2" in shown.stderr
    compared = cli("compare", "--pes", "alibi+causal,none", "--results", folder, "--format", "json")
    assert json.loads(compared.stdout)[0]["runs_a"] == 2 and "earlier implementation" in compared.stderr
    assert che.compare(loaded, "alibi+causal", "none", protocol="any").runs_a.tolist() == [4]
