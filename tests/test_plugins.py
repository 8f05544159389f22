"""Task and PE plugins: --plugin, CHE_PLUGINS, entry points, clashes and broken plugins."""

import json
import os

import pytest
import tomllib
from conftest import EXAMPLES, run_che

TASK_PLUGIN = EXAMPLES / "count_ones_mod3.py"
PE_PLUGIN = EXAMPLES / "gaussian_pe.py"


def install_entry_points(site, entry_points: dict[str, dict[str, str]], name="che-example-plugins"):
    """Make `site` hold a distribution with these entry points, as `pip install` would."""
    dist = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_task_plugin_from_a_file_samples(cli):
    result = cli("sample", "--task", "count_ones_mod3", "--length", 9, "--count", 50, "--format", "jsonl",
                 "--plugin", TASK_PLUGIN)
    assert result.exit_code == 0, result.stderr
    for line in result.stdout.splitlines():
        record = json.loads(line)
        assert record["target"] == [sum(record["input"]) % 3]


def test_task_plugin_listed_with_its_source(cli):
    rows = json.loads(cli("tasks", "--json", "--plugin", TASK_PLUGIN).stdout)
    plugin_rows = [r for r in rows if r["name"] == "count_ones_mod3"]
    assert plugin_rows and plugin_rows[0]["source"] == str(TASK_PLUGIN)


def test_task_plugin_from_the_declared_entry_point(tmp_path):
    declared = tomllib.loads((EXAMPLES / "pyproject.toml").read_text())["project"]["entry-points"]
    install_entry_points(tmp_path, declared)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(EXAMPLES)])}
    result = run_che("sample", "--task", "count_ones_mod3", "--length", 12, "--count", 20,
                     "--format", "jsonl", env=env)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        record = json.loads(line)
        assert record["target"] == [sum(record["input"]) % 3]
    pes = json.loads(run_che("pes", "--json", env=env).stdout)
    assert "gaussian" in {r["name"] for r in pes}


def test_plugins_from_the_environment_variable():
    env = {"CHE_PLUGINS": os.pathsep.join([str(TASK_PLUGIN), str(PE_PLUGIN)])}
    result = run_che("run", "--task", "count_ones_mod3", "--pe", "gaussian", "--preset", "smoke", "--quiet",
                     "--results", "/tmp/che-test-env-plugins", "--force", env=env)
    assert result.returncode == 0, result.stderr
    assert "count_ones_mod3 x gaussian" in result.stderr


@pytest.mark.parametrize("pe", ["gaussian", "rand-gaussian", "dape-gaussian", "dape2-gaussian"])
def test_pe_plugin_trains_with_every_modifier(cli, tmp_path, pe):
    result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--quiet",
                 "--results", tmp_path, "--plugin", PE_PLUGIN)
    assert result.exit_code == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["pe"] == pe and record["status"] == "finished"
    assert str(PE_PLUGIN) in record["plugins"]  # recorded so that sweeps can load it again


def test_pe_plugin_parameters_learn(tmp_path):
    """A few optimiser steps move the plugin's own parameters (gradients reach them)."""
    import torch
    from che.models import Transformer

    from che.config import ModelConfig
    from che.registry import load_plugin

    load_plugin(str(PE_PLUGIN))
    model = Transformer(ModelConfig(input_size=2, output_size=2, pe="gaussian"))
    before = model.blocks[0].attention.pes[0].log_sigma.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        inputs = torch.randint(0, 2, (8, 6))
        loss = model(inputs, 6).logsumexp(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(before, model.blocks[0].attention.pes[0].log_sigma.detach())


def test_a_positions_only_bias_pe_needs_rand_mode_positions(tmp_path):
    """A plugin bias defined from positions alone cannot take RPE's random offsets: a clear error
    names the way out; with --set rand_mode=positions it trains."""
    from che.models import Transformer

    from che.config import ModelConfig
    from che.errors import CheError
    from che.registry import load_plugin

    plugin = tmp_path / "positions_only.py"
    plugin.write_text(
        "import torch\nfrom che import register_pe\nfrom che.models.positional import BiasPE\n\n"
        "@register_pe\nclass Squares(BiasPE):\n    name = 'squares'\n    family = 'additive bias'\n"
        "    def bias_from_positions(self, p):\n"
        "        return -(p[:, None] ** 2 - p[None, :] ** 2).abs().float()[None].expand(self.config.n_heads, -1, -1)\n")
    load_plugin(str(plugin))
    with pytest.raises(CheError, match="--set rand_mode=positions"):
        Transformer(ModelConfig(input_size=2, output_size=2, pe="rand-squares"))
    model = Transformer(ModelConfig(input_size=2, output_size=2, pe="rand-squares", rand_mode="positions"))
    assert model(torch_randint(), 3).shape == (4, 3, 2)


def torch_randint():
    import torch

    return torch.randint(0, 2, (4, 5))


def test_builtin_name_wins_a_clash_with_a_warning(tmp_path, cli):
    clash = tmp_path / "clash.py"
    clash.write_text(
        "import torch\nfrom che import register_task\nfrom che.tasks import Task\n\n"
        "@register_task\nclass Fake(Task):\n    name = 'parity_check'\n    level = 'regular'\n"
        "    input_size = 2\n    output_size = 2\n"
        "    def _sample(self, b, n, g):\n        return torch.zeros(b, n, dtype=torch.long), torch.full((b, 1), 7)\n")
    result = run_che("sample", "--task", "parity_check", "--length", 5, "--count", 30, "--format", "jsonl",
                     "--plugin", clash)
    assert result.returncode == 0
    assert "warning: plugin" in result.stderr and "'parity_check', which is built in" in result.stderr
    for line in result.stdout.splitlines():
        record = json.loads(line)
        assert record["target"] == [sum(record["input"]) % 2]  # the built-in one


def test_broken_explicit_plugin_is_a_clear_error(tmp_path, cli):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('this plugin is broken')\n")
    result = cli("sample", "--task", "parity_check", "--length", 3, "--plugin", broken)
    assert result.exit_code == 2
    assert f"plugin '{broken}' failed to load: RuntimeError: this plugin is broken" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_plugin_file_is_a_clear_error(cli):
    result = cli("tasks", "--plugin", "no/such/plugin.py")
    assert result.exit_code == 2
    assert "plugin 'no/such/plugin.py' failed to load" in result.stderr


def test_broken_installed_plugin_does_not_break_other_commands(tmp_path):
    (tmp_path / "broken_plugin.py").write_text("import this_module_does_not_exist\n")
    install_entry_points(tmp_path, {"che.tasks": {"broken": "broken_plugin"}}, name="broken-plugin")
    env = {"PYTHONPATH": str(tmp_path)}
    ok = run_che("sample", "--task", "parity_check", "--length", 4, "--format", "jsonl", env=env)
    assert ok.returncode == 0
    assert "plugin 'broken (broken_plugin)' failed to load and is ignored" in ok.stderr
    missing = run_che("sample", "--task", "count_ones", "--length", 4, env=env)
    assert missing.returncode == 2
    assert "unknown task 'count_ones'" in missing.stderr
    assert "plugin 'broken (broken_plugin)' failed to load: ModuleNotFoundError" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 2  # the warning, then the one-line error


# -- names: one safe form, checked when a plugin registers them ----------------------------------
NAMED_PE = '''
import torch
from che import register_pe
from che.models.positional import BiasPE


@register_pe
class Named(BiasPE):
    name, family = {name!r}, "additive bias"

    def bias_from_offsets(self, offsets, positions):
        return torch.zeros(self.config.n_heads, *offsets.shape)
'''


def test_a_plugin_pe_named_as_a_path_is_refused_and_writes_nothing(cli, tmp_path):
    """A PE named `../../../escaped` wrote its result three folders above --results."""
    plugin = tmp_path / "a" / "b" / "escaping_pe.py"
    plugin.parent.mkdir(parents=True)
    plugin.write_text(NAMED_PE.format(name="../../../escaped"))
    before = sorted(tmp_path.rglob("*"))
    result = cli("run", "--task", "parity_check", "--pe", "../../../escaped", "--preset", "smoke",
                 "--plugin", plugin, "--results", tmp_path / "a" / "b" / "runs", "--quiet")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: plugin '{plugin}' failed to load: positional encoding name "
                                    f"'../../../escaped' is refused: a name is 1 to 40 lower-case letters")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name, rule", [
    ("a/b", "lower-case"), ("two\nlines", "lower-case"), ("Gauss", "lower-case"), ("x" * 41, "lower-case"),
    (".hidden", "lower-case"), ("-dash", "lower-case"), ("with space", "lower-case"), ("g|h", "lower-case"),
    ("gauss+causal", "lower-case"), ("rand-gauss", "modifier"), ("dape-gauss", "modifier"),
    ("dape2-gauss", "modifier"), ("fox-gauss", "modifier"), ("ssmax-gauss", "modifier"), ("fox", "modifier")])
def test_unsafe_or_modifier_like_pe_names_are_refused_in_one_line(cli, tmp_path, name, rule):
    from che.registry import PES

    plugin = tmp_path / "named_pe.py"
    plugin.write_text(NAMED_PE.format(name=name))
    result = cli("pes", "--plugin", plugin)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"plugin '{plugin}' failed to load: positional encoding name {name!r:.60}" in result.stderr
    assert rule in result.stderr
    assert name not in PES


def test_a_task_plugin_with_an_unsafe_name_is_ignored_with_a_warning_from_che_plugins(tmp_path):
    plugin = tmp_path / "bad_task.py"
    plugin.write_text((TASK_PLUGIN.read_text()).replace('"count_ones_mod3"', '"../count_ones_mod3"'))
    result = run_che("tasks", "--json", env={"CHE_PLUGINS": str(plugin)})
    assert result.returncode == 0, result.stderr
    assert f"plugin '{plugin}' failed to load and is ignored: task name '../count_ones_mod3' is refused" in result.stderr
    assert "count_ones_mod3" not in result.stdout


def test_every_builtin_name_has_the_safe_form_and_every_modifier_is_read():
    """Built-in names are not checked against the modifiers' words when they register (that would
    load the modifiers while the zoo loads): this checks them."""
    from che.models.positional import canonical_pe_name
    from che.registry import NAME_FORM, PES, TASKS, modifier_words

    names = TASKS.names() + [n for e in PES.entries() for n in (e.name, *e.obj.aliases)]
    assert all(NAME_FORM.fullmatch(name) for name in names)
    prefixes, alone = modifier_words()
    assert set(prefixes) == {"rand-", "dape-", "dape2-", "fox-", "ssmax-"} and alone == ("fox",)
    assert not [name for name in names if name.startswith(prefixes) or name in alone]
    for prefix in prefixes:  # the registry reserves exactly what the PE grammar reads
        assert canonical_pe_name(prefix + "alibi") == prefix + "alibi"


# -- broken plugins: one line naming the plugin ----------------------------------------------------
BAD_SAMPLERS = {
    "wrong_input_length": ("torch.zeros(b, n + 1, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                           "inputs of shape"),
    "long_targets": ("torch.zeros(b, n, dtype=torch.long)", "torch.zeros(b, 3, dtype=torch.long)",
                     "targets of shape"),
    "empty_token": ("torch.full((b, n), 2, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                    "2 is the model's empty token"),
    "out_of_vocabulary": ("torch.full((b, n), 7, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                          "outside 0..1"),
    "negative": ("torch.full((b, n), -1, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)", "outside 0..1"),
    "nan": ("torch.full((b, n), float('nan'))", "torch.zeros(b, 1, dtype=torch.long)", "not int64"),
}


@pytest.mark.parametrize("case", BAD_SAMPLERS)
def test_a_broken_plugin_sampler_is_refused_with_one_line(cli, tmp_path, case):
    inputs, targets, message = BAD_SAMPLERS[case]
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(
        "import torch\nfrom che import register_task\nfrom che.tasks import Task\n\n"
        f"@register_task\nclass Broken(Task):\n    name = 'broken_{case}'\n    level = 'regular'\n"
        "    input_size = 2\n    output_size = 2\n"
        f"    def _sample(self, b, n, g):\n        return {inputs}, {targets}\n")
    result = cli("run", "--task", f"broken_{case}", "--pe", "none", "--preset", "smoke", "--results",
                 tmp_path / "runs", "--plugin", plugin, "--quiet")
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and line.startswith("error: ")
    assert f"broken_{case}" in line and str(plugin) in line and message in line
    assert not list((tmp_path / "runs").rglob("*.json"))


BAD_BIAS_PLUGIN = """
import torch
from che import register_pe
from che.models.positional import BiasPE


@register_pe
class WrongShape(BiasPE):
    name, family = "wrong-shape", "additive bias"

    def bias_from_offsets(self, offsets, positions):
        return torch.zeros(self.config.n_heads + 1, *offsets.shape)
"""


RAISING_TASK = """
from che import register_task
from che.tasks import Task


@register_task
class Raising(Task):
    name, level, input_size, output_size = "raising", "regular", 2, 2

    def _sample(self, batch_size, length, generator):
        raise ValueError("the sampler broke")
"""


@pytest.mark.parametrize("case", ["bias shape", "sampler raises"])
def test_a_broken_plugin_is_one_line_naming_it(cli, tmp_path, case):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(BAD_BIAS_PLUGIN if case == "bias shape" else RAISING_TASK)
    task, pe = ("parity_check", "wrong-shape") if case == "bias shape" else ("raising", "none")
    result = cli("run", "--task", task, "--pe", pe, "--preset", "smoke", "--plugin", plugin,
                 "--results", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2, result.output
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and str(plugin) in line[0] and "Traceback" not in result.output
    assert ("bias of shape [9," in line[0]) if case == "bias shape" else ("raised ValueError" in line[0])


# -- che tasks NAME --------------------------------------------------------------------------------
def test_che_tasks_name_shows_a_plugin_task(cli):
    from conftest import EXAMPLES

    shown = cli("tasks", "count_ones_mod3", "--plugin", EXAMPLES / "count_ones_mod3.py")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith("count_ones_mod3 (level regular): 2 input symbols, 3 output classes; output: one label")
    assert "count_ones_mod3.py" in shown.stdout.splitlines()[1] and "a regular language" in shown.stdout
