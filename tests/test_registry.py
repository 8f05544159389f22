"""che.registry and che.pe_names: registrations that tools can see, a PE that is one file, and the
names the PE grammar reads (modifiers, `+causal`) or refuses."""

from __future__ import annotations

import importlib.metadata
import json
import textwrap

import pytest
from che.models.positional import parse_pe

from che.errors import CheError

# A PE written as a built-in one is: its class declares its spec, nothing else in che names it.
ONE_FILE_PE = '''
    """gauss2: a Gaussian bias of the distance, a PE written as a built-in one (for tests)."""

    import torch
    from torch import nn

    from che import register_pe
    from che.models.positional import BiasPE


    @register_pe
    class GaussianDistance(BiasPE):
        """B[h, i, j] = -(i - j)^2 / (2 sigma_h^2), sigma_h learned per head."""

        name = "gauss2"
        family = "additive bias"
        citation = "A test, 2026"
        bidirectional_form = "symmetric in i - j"
        causal_form = "the same, for j <= i"
        column = 7.5  # after alibi (7), before kerple-log (8)
        version = 3

        @classmethod
        def memory_per_pair(cls, config, device_type="cpu"):
            return 2 * config.n_heads

        @classmethod
        def flops_per_pair(cls, config):
            return 5.0 * config.n_heads

        def __init__(self, config, randomized=False):
            super().__init__(config, randomized)
            self.log_sigma = nn.Parameter(torch.zeros(config.n_heads))

        def bias_from_offsets(self, offsets, positions):
            offsets = offsets.to(self.log_sigma.dtype)
            return -offsets.square() / (2 * self.log_sigma.exp()[:, None, None].square())
'''


@pytest.fixture
def one_file_pe(tmp_path, monkeypatch):
    """A temporary package `mypes` holding one file, the PE's, importable as a plugin module."""
    package = tmp_path / "site" / "mypes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "gauss.py").write_text(textwrap.dedent(ONE_FILE_PE))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    yield "mypes.gauss"
    # the registry forgets it: later tests' sweeps hand the loaded plugins to workers that cannot import it
    from che import registry

    registry.PES._entries.pop("gauss2", None)
    registry._loaded_plugins.pop("mypes.gauss", None)


def test_a_pe_in_one_file_reaches_every_part_of_che(cli, one_file_pe, tmp_path):
    """Its listing, its bias, a run, its leaderboard column (where its spec sorts it), the cost model
    and the evaluation memory model, all from the one file."""
    plugin = ("--plugin", one_file_pe)
    described = cli("pes", "gauss2", *plugin)
    assert described.exit_code == 0, described.stderr
    assert "A test, 2026" in described.stdout and "the same, for j <= i" in described.stdout
    listed = {row["name"]: row for row in json.loads(cli("pes", "--json", *plugin).stdout)}
    assert listed["gauss2"]["parameters"] == "40 = 5 layers x 8" and listed["gauss2"]["source"] == one_file_pe
    shown = json.loads(cli("pes", "--show", "gauss2", "--length", 3, "--n-heads", 1, "--json", *plugin).stdout)
    assert shown["bias"][0][0] == pytest.approx([0.0, -0.5, -2.0])

    runs = tmp_path / "runs"
    for pe in ("gauss2", "alibi", "kerple-log", "gauss2+causal"):
        result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--results", runs, *plugin)
        assert result.exit_code == 0, result.stderr
    record = json.loads(next((runs / "parity_check" / "gauss2").glob("*.json")).read_text())
    assert record["implementations"]["pe"] == {"gauss2": 3}
    board = json.loads(cli("leaderboard", "--results", runs, "--format", "json").stdout)
    columns = list(dict.fromkeys(cell["pe"] for cell in board["cells"]))
    assert columns == ["alibi", "gauss2", "gauss2+causal", "kerple-log"]  # where its spec sorts it

    from che.config import make_config
    from che.registry import TASKS, load_plugin
    from che.runners.cost import forward_work
    from che.runners.evaluate import bytes_per_example

    load_plugin(one_file_pe)
    task = TASKS.get("parity_check")
    with_pe, without = (make_config("parity_check", pe, "smoke") for pe in ("gauss2", "alibi"))
    tokens = task.input_length(5) + task.output_length(5)
    assert forward_work(with_pe, task, 5, 8)[2] == 5 * 8 * tokens ** 2 * 5.0 * 8  # layers x batch x T^2 x flops
    assert forward_work(without, task, 5, 8)[2] == 0
    model, plain = with_pe.model_for(task), without.model_for(task)
    assert bytes_per_example(model, 100) - bytes_per_example(plain, 100) == 4 * 100 * 100 * 2 * 8


def test_the_built_ins_are_entry_points_that_tools_can_see():
    """Every built-in task, PE and modifier is declared in che's distribution metadata, and the
    registry holds exactly those (with no plugin loaded)."""
    from che.registry import PE_MODIFIERS, PES, TASKS

    for registry, group in ((TASKS, "che.tasks"), (PES, "che.positional_encodings"), (PE_MODIFIERS, "che.pe_modifiers")):
        declared = {ep.name for ep in importlib.metadata.entry_points(group=group) if ep.dist.name == "che-bench"}
        assert declared and declared <= set(registry.names())
    assert len(TASKS.names()) >= 15 and {"rand", "dape", "dape2", "fox", "ssmax", "causal"} <= set(PE_MODIFIERS.names())


def test_importing_che_registers_nothing():
    """No hook and no registration at import: the registries load their entry points when asked."""
    import subprocess
    import sys

    code = ("import che, che.registry as r\n"
            "print(r.PES._loaded, r.TASKS._loaded, r.PE_MODIFIERS._loaded, hasattr(r, 'pe_versions'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]


@pytest.mark.parametrize("name, canonical", [
    ("dape-kerple", "dape-kerple-log"), ("fox-none", "fox"), ("ssmax-fox-none+causal", "ssmax-fox+causal"),
    ("rand-alibi", "rand-alibi"), ("dape2-rand-t5", "dape2-rand-t5"), ("kerple+causal", "kerple-log+causal"),
])
def test_names_are_read_in_one_place(name, canonical):
    from che.pe_names import read

    assert read(name).name == canonical


@pytest.mark.parametrize("name, reason", [
    ("dape-dape2-alibi", "unknown positional encoding"),   # one modifier of a position
    ("rand-dape-alibi", "unknown positional encoding"),    # the prefixes in their order
    ("dape-rope", "DAPE needs an additive-bias PE"), ("rand-none", "cannot be randomized"),
    ("dape2-alibi+causal", "convolutions run along the keys"), ("fox-dape-alibi", "fox- acts on the logits"),
])
def test_names_that_cannot_work_are_refused_by_the_part_that_cannot(name, reason):
    from che.pe_names import read

    with pytest.raises(CheError, match=reason):
        read(name)


def test_columns_sort_as_the_specs_declare():
    from che.leaderboards import pe_sort_key

    names = ["dape-alibi", "alibi+causal", "ssmax-alibi", "none", "fox", "my-plugin-pe", "alibi", "rand-alibi",
             "kerple-log", "fox+causal"]
    assert sorted(names, key=pe_sort_key) == ["none", "alibi", "alibi+causal", "kerple-log", "my-plugin-pe",
                                              "rand-alibi", "dape-alibi", "fox", "fox+causal", "ssmax-alibi"]


def test_causal_is_part_of_the_name_and_the_identity():
    from che.config import make_config

    assert parse_pe("dape-kerple+causal", None).name == "dape-kerple-log+causal"
    assert parse_pe("fox-none", None).name == "fox" and parse_pe("fox", None).pe.has("fox")
    bidirectional, causal = (make_config("reverse_string", pe, "cpu") for pe in ("none", "none+causal"))
    assert bidirectional.run_id != causal.run_id


@pytest.mark.parametrize("name, reason", [("dape2-alibi+causal", "convolutions run along the keys"),
                                          ("ssmax-dape-alibi", "ssmax- acts on the logits"),
                                          ("fox-cope", "fox- acts on the logits"),
                                          ("fox-sin-cos", "fox- acts on the logits"),
                                          ("rand-stick-breaking", "uses no positions")])
def test_combinations_that_cannot_work_are_refused_in_one_line(name, reason):
    with pytest.raises(CheError, match=reason):
        parse_pe(name, None)
