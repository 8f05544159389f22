"""Kept models, `che eval` and `che show` (che.runners.stored, che.runners.inspection): a stored run
loads as the run and is evaluated again or recorded; what is not its own is refused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import pack, run_alone, write_results


# -- kept models and che eval ----------------------------------------------------------------------
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


def test_che_eval_refuses_another_runs_weights(cli, kept_run, tmp_path):
    from che.runners.stored import model_path

    other = run_alone(pack(seeds=(1,))[0], tmp_path / "other", device="cpu").path
    model_path(kept_run).write_bytes(model_path(other).read_bytes())
    result = cli("eval", kept_run, "--out-results", tmp_path / "evals")
    assert result.exit_code == 2 and "not 'seed0-" in result.stderr and "seed1-" in result.stderr


def test_che_eval_refuses_an_unwritable_output_before_evaluating(cli, kept_run, tmp_path, monkeypatch):
    from che.runners import inspection as inspect_module

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(inspect_module, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    result = cli("eval", kept_run, "--out-results", blocker / "evals")
    assert result.exit_code == 2 and "cannot write" in result.stderr


def test_eval_and_show_of_a_plugin_run_name_the_plugin_to_load(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": "gauss-window", "plugins": [str(tmp_path / "my_pe.py")]}])
    result = next(folder.rglob("*.json"))
    for args in (("eval", result, "--out-results", tmp_path / "evals"), ("show", result, "--out", tmp_path / "a.png")):
        refused = cli(*args)
        assert refused.exit_code == 2 and refused.stdout == ""
        assert refused.stderr.startswith("error: unknown positional encoding 'gauss-window'")
        assert refused.stderr.endswith(f"was made with the plugin(s) {tmp_path / 'my_pe.py'}: load them with --plugin\n")


# -- what a PE computes: che show, che pes --show --------------------------------------------------
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


@pytest.mark.parametrize("name", ["fox", "fox+causal", "bipe-alibi", "ssmax-alibi", "stick-breaking", "p-rope",
                                  "none+causal"])
def test_che_pes_show_gives_each_bias_at_initialisation(name):
    """FoX at x = 0: every gate 1/2, so D_ij = -|i - j| log 2; BiPE over chunks of 2: ALiBi x 96 over
    segment indices."""
    from che.runners.inspection import initial_bias

    bias, note = initial_bias(name, 6, 2)
    if name.startswith("fox"):
        i = torch.arange(6)
        expected = -(i[:, None] - i[None, :]).abs() * math.log(2)
        if name.endswith("+causal"):
            expected = expected.masked_fill(i[None, :] > i[:, None], 0.0)
            assert "masked" in note
        torch.testing.assert_close(bias[0], expected.float())
    elif name in ("stick-breaking", "p-rope", "none+causal"):
        assert bias is None
    else:
        assert bias is not None and bias.shape[-2:] == (6, 6)


def test_che_pes_show_of_a_layer_schedule_names_its_layers_and_shows_the_first_bias():
    """A schedule shows the first of its layers that adds a bias (none~alibi: layer 1's ALiBi), and
    says which; one whose layers add none says so, listing them."""
    from che.runners.inspection import initial_bias

    bias, note = initial_bias("none~alibi", 5, 2)
    alibi, _ = initial_bias("alibi", 5, 2)
    torch.testing.assert_close(bias, alibi)
    assert "layers: none, alibi, none, alibi, none; shown: layer 1 (alibi)" in note
    bias, note = initial_bias("rnope", 5, 2)
    assert bias is None and "none of its layers adds" in note and "rope, rope, rope, none, rope" in note
    _, note = initial_bias("irope", 5, 2)  # rope-chunked's mask depends on positions alone
    assert "shown: layer 0 (rope-chunked)" in note and "content-dependent" not in note
    assert "content-dependent" in initial_bias("relative", 5, 2)[1]


def test_che_pes_show_of_path_says_its_bias_is_content_dependent():
    from che.runners.inspection import initial_bias

    bias, note = initial_bias("path", 4, 1)
    assert bias is None and "depends on content" in note and "che show RUN" in note
