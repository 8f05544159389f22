"""The `che` command line: its options and help, output formats, what the screen shows, and every
bad-input case (one line `error: ...`, exit code 2)."""

import json
import math

import pytest

from che.registry import TASKS

ALL_TASKS = sorted(TASKS.names())


def test_tasks_lists_all_fifteen(cli):
    result = cli("tasks", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= set(ALL_TASKS)
    assert len([r for r in rows if r["source"] == "builtin"]) == 15
    by_name = {r["name"]: r for r in rows}
    assert by_name["duplicate_string"]["output_length"] == "2N"
    assert by_name["cycle_navigation"]["chance_accuracy"] == pytest.approx(0.2)
    assert by_name["binary_addition"]["masked"] is True


def test_tasks_table(cli):
    result = cli("tasks")
    assert result.exit_code == 0
    for name in ("even_pairs", "solve_equation", "bucket_sort"):
        assert name in result.stdout


@pytest.mark.parametrize("task", ALL_TASKS)
def test_sample_jsonl_is_exactly_the_documented_shape(cli, task):
    result = cli("sample", "--task", task, "--length", 7, "--count", 3, "--seed", 4, "--format", "jsonl")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    task_obj = TASKS.get(task)
    for line in lines:
        record = json.loads(line)
        assert list(record) == ["task", "length", "input", "target"]
        assert record["task"] == task and record["length"] == 7
        assert len(record["input"]) == task_obj.input_length(7)
        assert isinstance(record["target"], list) and len(record["target"]) == task_obj.output_length(7)


def test_sample_is_deterministic_per_seed(cli):
    a = cli("sample", "--task", "reverse_string", "--length", 20, "--seed", 1, "--format", "jsonl").stdout
    b = cli("sample", "--task", "reverse_string", "--length", 20, "--seed", 1, "--format", "jsonl").stdout
    c = cli("sample", "--task", "reverse_string", "--length", 20, "--seed", 2, "--format", "jsonl").stdout
    assert a == b and a != c


def test_sample_text_uses_the_task_symbols(cli):
    result = cli("sample", "--task", "solve_equation", "--length", 7, "--count", 20, "--format", "text")
    assert result.exit_code == 0
    for line in result.stdout.strip().splitlines():
        equation, answer = line.split("  ->  ")
        assert "x" in equation.split() and "=" in equation.split()
        assert answer.strip() in {"0", "1", "2", "3", "4"}


@pytest.mark.parametrize("args, message", [
    (["sample", "--task", "revers_string", "--length", 5],
     "unknown task 'revers_string'; did you mean 'reverse_string'?"),
    (["sample", "--task", "parity_check", "--length", 0], "--length must be between 1 and 10000, got 0"),
    (["sample", "--task", "parity_check", "--length", -3], "--length must be between 1 and 10000"),
    (["sample", "--task", "parity_check", "--length", 10**7], "--length must be between 1 and 10000"),
    (["sample", "--task", "parity_check", "--length", 5, "--count", 0], "--count must be between 1"),
    (["sample", "--task", "parity_check", "--length", 5, "--format", "xml"], "'xml' is not one of 'jsonl', 'text'"),
    (["pes", "--show", "dape-fier"], "unknown positional encoding 'dape-fier'; did you mean 'dape-fire'"),
    (["pes", "--show", "alibi", "--length", 0], "--length must be between 1 and 4096"),
    (["run", "--task", "parity_check", "--pe", "alibbi", "--preset", "smoke"],
     "unknown positional encoding 'alibbi'; did you mean 'alibi'"),
    (["run", "--task", "paritycheck", "--pe", "alibi"], "unknown task 'paritycheck'"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--preset", "huge"], "'huge' is not one of 'smoke', 'cpu', 'paper'"),
    (["run", "--task", "parity_check", "--pe", "rand-none"], "cannot be randomized"),
    (["run", "--task", "parity_check", "--pe", "dape-rope"], "DAPE needs an additive-bias PE"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--set", "max_test_length=3"],
     "max_test_length (3) must be greater than train_length (5)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--steps", 0], "steps must be at least 1"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--lrs", 2.0], "a learning rate must be in (0, 1)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--device", "tpu"], "'tpu' is not one of 'auto', 'cpu', 'cuda'"),
    (["leaderboard", "--results", "/nonexistent/che-results"], "results folder '/nonexistent/che-results' does not exist"),
    (["leaderboard", "--results", ".", "--format", "pdf"], "'pdf' is not one of 'table', 'md', 'csv', 'html', 'json'"),
])
def test_bad_input_is_one_line_exit_2_no_traceback(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_unknown_task_error_lists_the_choices(cli):
    result = cli("sample", "--task", "nonsense", "--length", 3)
    assert result.exit_code == 2
    assert "(choices: " in result.stderr and "bucket_sort" in result.stderr


def test_pes_lists_the_zoo_and_modifiers(cli):
    result = cli("pes", "--json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("none", "sin-cos", "learned", "rope", "relative", "t5", "alibi", "kerple-log",
                 "kerple-power", "sandwich", "fire", "cope", "rand-<pe>", "dape-<bias pe>", "dape2-<bias pe>"):
        assert name in rows, name
    assert rows["alibi"]["parameters"] == "0"
    assert rows["kerple-log"]["parameters"] == "160 = 5 layers x 32"  # r1, r2 for 8 heads, each side
    assert rows["kerple-log-sym"]["parameters"] == "80 = 5 layers x 16"
    assert rows["fire"]["bidirectional"] != "native"  # published causally: says what it does here
    assert all(r["citation"] for r in rows.values())


def test_pes_show_alibi_json_matches_the_reference_example(cli):
    # as the CH reference's compute_alibi_encodings_biases: T = 5, head 0 (m = 1/2),
    # row 2 = m * [-1.5, -0.5, 0, -1, -2]
    result = cli("pes", "--show", "alibi", "--length", 5, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["pe"] == "alibi" and data["length"] == 5
    bias = data["bias"]
    assert len(bias) == 8 and len(bias[0]) == 5 and len(bias[0][0]) == 5
    assert bias[0][2] == pytest.approx([-0.75, -0.25, 0.0, -0.5, -1.0])


def test_pes_show_heads_option_and_non_bias_pes(cli):
    data = json.loads(cli("pes", "--show", "kerple", "--length", 4, "--n-heads", 2, "--json").stdout)
    assert len(data["bias"]) == 2 and all(v <= 0 for h in data["bias"] for row in h for v in row)
    rope = json.loads(cli("pes", "--show", "rope", "--length", 4, "--json").stdout)
    assert rope["bias"] is None and "no attention bias" in rope["note"]
    table = cli("pes", "--show", "sin-cos", "--length", 4)
    assert table.exit_code == 0 and "embeddings" in table.stdout


def test_the_choices_are_named_once_and_listed_by_che_settings(cli):
    """The CLI's typed choices are the config's, and `che settings` lists every setting with its
    choices, type and default."""
    from typing import get_args

    from che.config import CHOICES, DEVICES, PRESETS, SETTINGS, Device, Preset

    assert set(get_args(Preset)) == set(PRESETS) and get_args(Device) == DEVICES
    rows = {row["name"]: row for row in json.loads(cli("settings", "--json").stdout)}
    assert set(rows) == set(SETTINGS) - {"task", "pe", "seed", "lr", "preset"} | {"seed", "lr"}
    for name, choices in CHOICES.items():
        assert rows[name]["choices"] == list(choices)
    assert rows["steps"]["default"] == 1500 and rows["steps"]["presets"]["smoke"] == 10


def test_run_help_is_short_grouped_and_keeps_its_brackets(cli):
    import typer

    from che.cli import app

    command = typer.main.get_command(app).commands["run"]
    assert len([p for p in command.params if p.param_type_name == "option"]) + 1 <= 15  # --help included
    result = cli("run", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "[default: cpu]" in text and "smoke|cpu|paper" in text.replace(" ", "")
    assert "Settings" in text and "--set" in text and "che settings" in text


# -- what the screen shows: tables fit a terminal and are whole in a file, the outcome on stdout ----
def body_rows(text: str) -> list[list[str]]:
    """The body rows of the rich tables in `text` (what lies between a header's ┡ and the closing └),
    as their cells; a row that wrapped shows as more rows, with empty first cells."""
    rows, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        header_rule = line.startswith("┡") or (line.startswith("━") and "╇" in line)  # with or without an edge
        in_table = header_rule or "│" in line or "┼" in line  # a row, or a rule between rows
        inside = (inside or header_rule) and not line.startswith("└") and in_table
        if inside and "│" in line:
            rows.append([cell.strip() for cell in line.removeprefix("│").removesuffix("│").split("│")])
    return rows


def header(text: str) -> list[str]:
    """The column headings of the first rich table in `text`, each over its lines joined."""
    lines = [[cell.strip() for cell in line.strip()[1:-1].split("┃")]
             for line in text.split("┡")[0].splitlines() if line.strip().startswith("┃")]
    return [" ".join(filter(None, column)) for column in zip(*lines)]


def test_flags_take_no_value_in_the_help(cli):
    for args in (("--help",), ("run", "--help"), ("pes", "--help")):
        text = cli(*args).stdout
        assert "--help" in text and "<bool>" not in text, args
    assert "<int range>" in cli("--help").stdout  # options that take a value keep their type


def test_che_settings_shows_what_each_preset_gives(cli):
    """The default is what a run without --preset gets (the cpu preset), and each preset's column
    what a run of that preset gets: RunConfig's own defaults (1,000,000 steps) reach no command."""
    from che.config import PRESETS, make_config

    rows = json.loads(cli("settings", "--json").stdout)
    made = {preset: make_config("parity_check", "alibi", preset).to_dict() for preset in PRESETS}
    for row in rows:
        assert row["default"] == made["cpu"][row["name"]], row["name"]
        assert row["presets"] == {preset: made[preset][row["name"]] for preset in PRESETS}, row["name"]
    table = cli("settings").stdout
    assert header(table)[:5] == ["setting", "type", "cpu (default)", "smoke", "paper"]
    steps = next(cells for cells in body_rows(table) if cells[0] == "steps")
    assert steps[2:5] == ["1500", "10", "200000"] and "1000000" not in table


def test_che_compare_piped_is_whole(cli, smoke_result, tmp_path):
    from conftest import write_results

    folder = write_results(tmp_path / "runs", smoke_result, [
        {"task": "modular_arithmetic_brackets", "pe": pe, "seed": seed, "ood": 0.2 + 0.1 * (pe == "alibi") + 0.01 * seed}
        for pe in ("alibi", "none") for seed in range(3)])
    result = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert result.exit_code == 0, result.stderr
    row = next(cells for cells in body_rows(result.stdout) if cells[0].startswith("modular"))
    assert row[:2] == ["modular_arithmetic_brackets", "+10.0"] and row[2].startswith("[") and row[2].endswith("]")
    assert "…" not in result.stdout


@pytest.fixture(scope="module")
def reference_results(tmp_path_factory):
    """Runs of two PEs of DAPE's Table 2 and one of none on three tasks (made from a real result)."""
    from che.config import make_config
    from conftest import run_alone, write_results

    template = run_alone(make_config("parity_check", "alibi", "smoke"), tmp_path_factory.mktemp("template"),
                         device="cpu").path
    runs = [{"task": task, "level": TASKS.get(task).level, "pe": pe, "seed": seed, "ood": 0.5 + 0.01 * seed}
            for task in ("even_pairs", "reverse_string", "modular_arithmetic_brackets")
            for pe in ("none", "rand-alibi", "dape-kerple-log") for seed in range(2)]
    return write_results(tmp_path_factory.mktemp("reference") / "runs", template, runs)


@pytest.mark.parametrize("width", [80, 120, None])
def test_the_leaderboard_beside_a_published_table_fits_a_terminal(cli, reference_results, width):
    """In a terminal each cell is on one line and every line fits its width (the PEs spread over as
    many tables as it takes, each with the task column); in a file, one table as wide as it needs.
    The published numbers are columns of their own, beside ours."""
    import pandas as pd

    result = cli("leaderboard", "--results", reference_results, "--reference", "dape2024_che_table2",
                 terminal=width)
    assert result.exit_code == 0, result.stderr
    parts = result.stdout.count("CHE leaderboard")
    assert (parts == 1) == (width is None)
    if width is not None:
        assert max(map(len, result.stdout.splitlines())) <= width
    rows = body_rows(result.stdout)
    assert all(cells[0] for cells in rows), "a row wrapped over several lines"
    published = pd.read_csv("results/reference/dape2024_che_table2.csv").set_index("task")
    for task in ("even_pairs", "reverse_string", "modular_arithmetic_brackets"):
        cells = [cell for cells in rows if cells[1] == task for cell in cells[3:]]
        assert cells.count("51.0 (2)") == 3  # ours, the best of two runs: none, rand-alibi, dape-kerple-log
        for pe in published.columns.drop("level"):
            assert f"{published.loc[task, pe]:.1f}" in cells, (task, pe)
    headings = " ".join(" ".join(header(part)) for part in result.stdout.split("CHE leaderboard")[1:])
    assert "rand- alibi published" in headings and "dape- kerple- log published" in headings


def test_pes_show_prints_whole_numbers_without_negative_zero(cli):
    import re

    result = cli("pes", "--show", "kerple-log", "--length", 12, "--n-heads", 1, terminal=80)
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout and max(map(len, result.stdout.splitlines())) <= 80
    numbers = [cell for cells in body_rows(result.stdout) for cell in cells[1:] if re.fullmatch(r"-?\d+\.\d+", cell)]
    assert len(numbers) == 12 * 12 and {len(n.split(".")[1]) for n in numbers} == {2}  # one precision
    assert "0.00" in numbers and "-0.00" not in numbers
    data = json.loads(cli("pes", "--show", "kerple-log", "--length", 4, "--json").stdout)
    assert all(math.copysign(1, v) == 1 for head in data["bias"] for row in head for v in row if v == 0)


def test_heads_is_a_count_in_pes_show_and_a_list_in_che_show(cli):
    """Two options: `che pes --show --n-heads 4` (how many heads the model has) and `che show --heads
    0,1` (which heads to draw)."""
    assert len(json.loads(cli("pes", "--show", "alibi", "--length", 3, "--n-heads", 4, "--json").stdout)["bias"]) == 4
    old = cli("pes", "--show", "alibi", "--heads", 4)
    assert old.exit_code == 2 and "--n-heads" in old.stderr
    assert "how many heads" in " ".join(cli("pes", "--help").stdout.split())
    assert "Which heads to draw: head numbers" in " ".join(cli("show", "--help").stdout.replace("│", "").split())


def test_the_outcome_goes_to_stdout_and_the_log_to_stderr(cli, tmp_path):
    """run, eval and sweep: the result (path) on stdout, whole on one line however long; the plan,
    the estimate and the progress on stderr, as plain lines in a file (with or without --quiet), a
    live display only in a terminal, and never on stdout."""
    results = tmp_path / ("a-results-folder-whose-path-is-longer-than-eighty-columns-" + "x" * 30)
    args = ("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", results)
    for options in ((), ("--quiet", "--force")):
        result = cli(*args, *options)
        assert result.exit_code == 0, result.stderr
        path = next(results.rglob("*.json"))
        assert result.stdout.splitlines()[-1] == f"result: {path}" and "━" not in result.stdout
        assert "unseen lengths 6..8" in result.stdout.splitlines()[0]
        assert "estimated cost" in result.stderr and "result:" not in result.stderr
        assert "\x1b" not in result.output and "\r" not in result.output
    assert "step 10/10" in result.stderr  # plain progress lines
    live = cli(*args, "--force", terminal=100)
    assert "━" in live.stderr and "━" not in live.stdout and live.stdout.splitlines()[-1] == f"result: {path}"

    evaluated = cli("eval", path, "--out-results", tmp_path / "evals", "--max-test-length", 9, "--quiet")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.stdout.splitlines()[-1].startswith(f"result: {tmp_path / 'evals'}")
    assert "evaluating lengths 1..9" in evaluated.stderr and "result:" not in evaluated.stderr

    sweep = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--results", results,
                "--quiet", "--device", "cpu")
    assert sweep.exit_code == 0, sweep.stderr
    assert sweep.stdout.strip() == f"done 0, skipped 1, failed 0, interrupted 0; results: {results}"
    assert sweep.stderr.startswith("sweep ")


# -- bad input: one line, exit code 2 --------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["run", "--task", "parity_check", "--pe", "dape-alibi", "--set", "dape_variant=foo"], "dape_variant: unknown value 'foo'"),
    (["run", "--task", "parity_check", "--pe", "dape-alibi", "--set", "dape_impl=foo"], "dape_impl: unknown value 'foo' (choices: fast, literal, triton)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "seed=-1"], "seeds must be in [0, 2^32)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", f"seed={2**32}"], "seeds must be in [0, 2^32)"),
    (["sample", "--task", "parity_check", "--length", 3, "--seed", 99999999999999999999999], "--seed"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "eval_memory_gb=nan"], "eval_memory_gb must be"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "rand_mode=x"], "rand_mode: unknown value 'x' (choices: offsets, reference, positions)"),
    (["leaderboard", "--results", "results/cpu/runs", "--plot", "x.xyz"], "unknown format '.xyz'"),
    (["leaderboard", "--results", "results/cpu/runs", "--out", "/proc/x/y.md"], "cannot be written"),
    (["leaderboard", "--results", "results/cpu/runs", "--out", "tests"], "is a folder"),
    (["bench", "--out", "/proc/x/b.json"], "cannot be written"),
    (["run", "--task", "reverse_string", "--pe", "alibi", "--set", "train_length=4000", "--set", "max_test_length=4001",
      "--set", "batch_size=64"], "needs up to"),
    (["sweep", "--tasks", "parity_check", "--pes", "none", "--seeds", 100000000, "--dry-run"], "--seeds must be"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, cli):
    result = cli(*args)  # in-process, as the entry point runs it (conftest's `cli`)
    assert result.exit_code == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and last.startswith("error: ") and message in last


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="these settings train on a CUDA device")
@pytest.mark.parametrize("setting, message", [("attention=flex", "attention=flex trains on CUDA only"),
                                              ("dape_impl=triton", "dape_impl=triton needs triton and a CUDA")])
def test_settings_a_cpu_cannot_train_with_are_refused_in_one_line(setting, message, tmp_path, monkeypatch, cli):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = cli("run", "--task", "parity_check", "--pe", "dape-alibi", "--preset", "smoke", "--set", setting,
                 "--results", str(tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not list(tmp_path.rglob("*.json"))


def test_rand_max_length_shorter_than_the_sequences_is_one_line(cli, tmp_path):
    result = cli("run", "--task", "reverse_string", "--pe", "rand-alibi", "--preset", "smoke", "--set", "rand_max_length=10",
                 "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert "rand_max_length (10) must be at least the longest sequence" in result.stderr
    assert "16 tokens" in result.stderr  # reverse_string at length 8: 8 inputs + 8 outputs
    sweep = cli("sweep", "--tasks", "reverse_string", "--pes", "rand-rope", "--preset", "smoke", "--dry-run",
                "--results", tmp_path / "runs")
    assert sweep.exit_code == 0  # the default range of 2,048 is enough


def test_pes_show_refuses_what_it_cannot_print(cli):
    result = cli("pes", "--show", "sandwich", "--length", 4096, "--n-heads", 64, "--json")
    assert result.exit_code == 2 and "lower --length or --n-heads" in result.stderr


def test_che_show_heads_empty_is_one_line(cli, kept_run, tmp_path):
    result = cli("show", kept_run, "--out", tmp_path / "x.png", "--heads", "")
    assert result.exit_code == 2 and result.stderr.startswith("error: --heads must be head numbers")


def test_a_missing_config_file_is_called_a_config_file(cli, tmp_path):
    result = cli("run", "--config", tmp_path / "nope.toml")
    assert result.exit_code == 2 and result.stderr == f"error: config file '{tmp_path / 'nope.toml'}' does not exist\n"


SMOKE_RUN = ("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--quiet")


def one_error_line(result) -> str:
    """The command refused in one line, `error: ...`, exit code 2, and trained nothing."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "step 1/" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- unknown names: case-insensitive suggestions, the closest few, the option as typed -------------
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


# -- an option that names a setting says how to give it --------------------------------------------
@pytest.mark.parametrize("typed, pointer", [
    (["--seed", "3"], "--set seed=3"),
    (["--seed=3"], "--set seed=3"),
    (["--batch-size", "64"], "--set batch_size=64"),
    (["--train-length", "20"], "--set train_length=20"),
    (["--train_length", "20"], "--set train_length=20"),
    (["--eval-dropout"], "--set eval_dropout=true"),
])
def test_an_option_that_names_a_setting_points_to_set(cli, tmp_path, typed, pointer):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))
    assert f"no such option {typed[0].split('=')[0]}" in line and pointer in line
    if "seed" in typed[0]:  # not a bare suggestion of --seeds, which would train seeds 0, 1, 2
        assert "--seeds N trains N seeds, 0..N-1" in line
    assert not list(tmp_path.rglob("*.json"))


def test_an_option_that_names_no_setting_keeps_clicks_suggestion(cli):
    line = one_error_line(cli("sweep", "--task", "parity_check", "--dry-run"))
    assert "No such option: --task" in line and "--tasks" in line and "--set" not in line


# -- one setting, one value ------------------------------------------------------------------------
@pytest.mark.parametrize("typed, message", [
    (["--steps", "5", "--set", "steps=-1"], "give --steps or --set steps=..., not both"),
    (["--steps", "3", "--set", "steps=7"], "give --steps or --set steps=..., not both"),
    (["--set", "seed=1", "--set", "seed=2"], "--set seed is given twice (1 and 2); give it once"),
    (["--set", "batch-size=16", "--set", "batch_size=32"], "--set batch_size is given twice (16 and 32)"),
])
def test_a_setting_given_twice_is_refused(cli, tmp_path, typed, message):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))
    assert message in line


def test_a_sweep_refuses_steps_given_twice(cli, tmp_path):
    line = one_error_line(cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke",
                              "--steps", 3, "--set", "steps=7", "--results", tmp_path, "--dry-run"))
    assert "give --steps or --set steps=..., not both" in line


def test_che_eval_refuses_a_setting_given_twice(cli, tmp_path, smoke_result):
    line = one_error_line(cli("eval", smoke_result, "--max-test-length", 10, "--set", "max_test_length=12",
                              "--out-results", tmp_path))
    assert "give --max-test-length or --set max_test_length=..., not both" in line


def test_slurm_settings_are_refused_by_che_run(cli, tmp_path):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, "--set", "slurm.partition=x"))
    assert "slurm settings (partition) are for `che sweep --executor slurm`, not che run" in line


@pytest.mark.parametrize("typed, message", [
    ("lr=nan", "--set lr: a learning rate must be in (0, 1), got nan"),
    ("seed=-1", "--set seed: seeds must be in [0, 2^32), got -1"),
])
def test_a_bad_seed_or_lr_given_with_set_is_named_as_typed(cli, tmp_path, typed, message):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, "--set", typed))
    assert message in line and "--lrs" not in line and "--seeds" not in line


# -- a long name is not echoed whole ---------------------------------------------------------------
LONG = "x" * 10_000


@pytest.mark.parametrize("typed", [
    ["--task", LONG], ["--pe", LONG], ["--pe", f"dape-{LONG}+causal"], ["--set", f"{LONG}=1"],
    ["--set", f"d_model={LONG}"], ["--set", f"rand_mode={LONG}"], ["--seeds", LONG], ["--preset", LONG],
    [f"--{LONG}", "1"], ["--set", f"slurm.{LONG}=1"],
], ids=["task", "pe", "pe-grammar", "setting", "int-value", "choice-value", "seeds", "preset", "option", "slurm"])
def test_a_long_name_is_shortened_in_the_error(cli, tmp_path, typed):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))  # the last --task or --pe wins
    assert "xxx..." in line and len(line) < 400, len(line)


# -- the help and the options: every one named exists, --plugin where a model is built -------------
def test_the_help_lists_whole_first_sentences(cli):
    listing = " ".join(cli("--help").stdout.replace("│", " ").split())  # the panel's borders aside
    assert "Evaluate a stored run again on longer lengths or other settings." in listing
    assert "..." not in listing.split("Commands")[1]  # no description cut short


def test_every_command_that_builds_a_model_or_lists_names_takes_plugin():
    """What the README says: --plugin on every command but those that only read results (and settings)."""
    import typer

    from che.cli import app

    commands = typer.main.get_command(app).commands
    without = {name for name, command in commands.items() if not any("--plugin" in p.opts for p in command.params)}
    assert without == {"settings", "leaderboard", "compare"}


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


# -- che tasks NAME; user strings reach rich as text, never as markup ------------------------------
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
