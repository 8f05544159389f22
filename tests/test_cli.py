"""The `che` commands through typer's CliRunner: output formats and every bad-input case."""

import json

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
    data = json.loads(cli("pes", "--show", "kerple", "--length", 4, "--heads", 2, "--json").stdout)
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
    assert rows["steps"]["default"] == 1_000_000 and rows["steps"]["presets"]["smoke"] == 10


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


def test_threads_are_set_before_torch_and_recorded(tmp_path):
    """A fresh `che` process: passive OpenMP waiting, the thread count it was given, in the result."""
    from conftest import run_che

    result = run_che("--threads", 1, "run", "--task", "parity_check", "--pe", "none", "--preset", "smoke",
                     "--results", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["threads"] == 1 and record["command"].startswith("che --threads 1 run")
    assert "with 1 thread(s)" in result.stderr
