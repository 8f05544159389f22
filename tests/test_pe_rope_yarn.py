"""rope-yarn and rope-ntk (Peng et al. 2023): RoPE rescaled past the longest training sequence N.

The paper's formulas are written out here entry by entry (frequencies per pair, the ramp, the
temperature, the logits); a rope model trains and, up to N tokens, computes exactly as rope; and a
kept rope run evaluated with `che eval --set rope_scaling=yarn` scores exactly as a rope-yarn run.
"""

from __future__ import annotations

import cmath
import dataclasses
import json
import math

import pytest
import torch
from che.models import Transformer
from che.models.positional import parse_pe
from che.models.positional.rope_scaling import (
    ntk_frequencies,
    yarn_attention_factor,
    yarn_frequencies,
    yarn_ramp,
)
from che.models.transformer import record_attention
from conftest import run_alone

from che.config import ModelConfig, make_config
from che.errors import CheError

SCALED = ["rope-yarn", "rope-ntk"]


def config(pe: str, **overrides) -> ModelConfig:
    return ModelConfig(input_size=2, output_size=2, pe=pe, **overrides)


# -- the paper's formulas, written out ------------------------------------------------------------
def paper_rope_frequencies(d: int, base: float = 10000.0) -> list[float]:
    return [base ** (-2 * k / d) for k in range(d // 2)]


def paper_ntk_frequencies(d: int, s: float) -> list[float]:
    """Section 3.1: b' = b s^(d / (d - 2)), theta'_k = b'^(-2k/d)."""
    return paper_rope_frequencies(d, 10000.0 * s ** (d / (d - 2)))


def paper_ramp(r: float, alpha: float = 1.0, beta: float = 32.0) -> float:
    """Section 3.2: gamma(r) = 0 if r < alpha, 1 if r > beta, else (r - alpha) / (beta - alpha)."""
    if r < alpha:
        return 0.0
    if r > beta:
        return 1.0
    return (r - alpha) / (beta - alpha)


def paper_yarn_frequencies(d: int, s: float, n: int) -> list[float]:
    """Section 3.2: lambda_k = 2 pi / theta_k, r_k = N / lambda_k,
    h(theta_k) = (1 - gamma(r_k)) theta_k / s + gamma(r_k) theta_k."""
    out = []
    for theta in paper_rope_frequencies(d):
        gamma = paper_ramp(n / (2 * math.pi / theta))
        out.append((1 - gamma) * theta / s + gamma * theta)
    return out


@pytest.mark.parametrize("d", [4, 8, 16, 64])
@pytest.mark.parametrize("s", [1.5, 2.0, 3.0, 12.5])
def test_frequencies_are_the_papers_pair_by_pair(d, s):
    for n in (10, 40, 400):
        assert yarn_frequencies(d, s, n).tolist() == pytest.approx(paper_yarn_frequencies(d, s, n), rel=1e-14)
    assert ntk_frequencies(d, s).tolist() == pytest.approx(paper_ntk_frequencies(d, s), rel=1e-12)


def test_the_ramp_at_its_edges():
    r = torch.tensor([0.0, 0.999, 1.0, 1.001, 16.5, 31.999, 32.0, 32.001, 1e6], dtype=torch.float64)
    assert yarn_ramp(r).tolist() == pytest.approx([paper_ramp(v) for v in r.tolist()], abs=1e-15)
    assert yarn_ramp(r).tolist() == pytest.approx([0, 0, 0, 0.001 / 31, 0.5, 30.999 / 31, 1, 1, 1], abs=1e-15)


def test_the_temperature():
    """sqrt(1/t) = 0.1 ln s + 1: 1 at s = 1, 1.1 at s = e, 1 + 0.1 ln 4 at s = 4."""
    assert yarn_attention_factor(1.0) == 1.0
    assert yarn_attention_factor(math.e) == pytest.approx(1.1, rel=1e-15)
    assert yarn_attention_factor(4.0) == pytest.approx(1 + 0.1 * math.log(4), rel=1e-15)


def test_by_hand_at_d_head_8_and_40_training_tokens():
    """theta = 1, 0.1, 0.01, 0.001; wavelengths 2 pi / theta; over N = 40 tokens pair 0 turns
    40 / (2 pi) = 6.37 times (on the ramp: gamma = (6.37 - 1) / 31), pair 1 0.64 times (< alpha:
    interpolated), pairs 2 and 3 fewer. At s = 2: pair 0 at (1 - gamma) / 2 + gamma, the others
    halved. NTK at s = 2: b' = 10000 * 2^(4/3): pair 0 keeps 1, pair k is 10^(-k) * 2^(-k/3)."""
    gamma = (40 / (2 * math.pi) - 1) / 31
    assert gamma == pytest.approx(0.17310, abs=1e-5)
    assert yarn_frequencies(8, 2.0, 40).tolist() == pytest.approx(
        [(1 - gamma) / 2 + gamma, 0.05, 0.005, 0.0005], rel=1e-14)
    assert ntk_frequencies(8, 2.0).tolist() == pytest.approx(
        [1.0, 0.1 * 2 ** (-1 / 3), 0.01 * 2 ** (-2 / 3), 0.001 / 2], rel=1e-12)


def naive_logits(q, k, frequencies, factor, causal):
    """Per entry, as the paper writes RoPE (pairs as complex numbers, Hermitian inner product) with
    the rescaled frequencies, then the temperature: (sqrt(1/t))^2 q'_i . k'_j / sqrt(d)."""
    length, d = q.shape
    out = torch.empty(length, length, dtype=torch.float64)
    for i in range(length):
        for j in range(length):
            if causal and j > i:
                out[i, j] = -math.inf
                continue
            total = 0.0
            for pair, theta in enumerate(frequencies):
                a = complex(q[i, 2 * pair], q[i, 2 * pair + 1]) * cmath.exp(1j * i * theta)
                b = complex(k[j, 2 * pair], k[j, 2 * pair + 1]) * cmath.exp(1j * j * theta)
                total += (a * b.conjugate()).real
            out[i, j] = factor ** 2 * total / math.sqrt(d)
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("pe", SCALED)
def test_the_models_logits_are_the_papers(pe, causal):
    """A float64 one-layer model at 9 tokens with N = 4 (s = 9/4): the logits the attention
    materialises equal the written-out formula for every head and entry. (che's RoPE computes its
    angles in float32, as the CHE reference: hence 1e-5, not 1e-12.)"""
    torch.manual_seed(0)
    name = pe + ("+causal" if causal else "")
    model = Transformer(config(name, n_layers=1, longest_train_tokens=4, attention="explicit")).double().eval()
    captured = {}
    model.blocks[0].attention.qkv.register_forward_hook(lambda module, args, out: captured.update(qkv=out))
    with torch.no_grad(), record_attention(model) as records:
        model(torch.randint(0, 2, (1, 5)), 4)
    heads, d = model.config.n_heads, model.config.d_head
    q, k, _ = captured["qkv"][0, 0].view(9, 3, heads, d).unbind(1)
    s = 9 / 4
    if pe == "rope-yarn":
        frequencies, factor = paper_yarn_frequencies(d, s, 4), 0.1 * math.log(s) + 1  # sqrt(1/t)
    else:
        frequencies, factor = paper_ntk_frequencies(d, s), 1.0
    for h in range(heads):
        expected = naive_logits(q[:, h], k[:, h], frequencies, factor, causal)
        torch.testing.assert_close(records[0]["logits"][0, h], expected, rtol=1e-5, atol=1e-5)


# -- RoPE where the sequence is not longer than N ---------------------------------------------------
@pytest.mark.parametrize("pe", SCALED + [p + "+causal" for p in SCALED])
def test_rope_unchanged_up_to_n_tokens_and_scaled_past_it(pe):
    """The same weights: up to N = 12 tokens the outputs are rope's bit for bit; at 13 they differ."""
    plain = "rope+causal" if pe.endswith("+causal") else "rope"
    torch.manual_seed(0)
    scaled = Transformer(config(pe, longest_train_tokens=12)).eval()
    rope = Transformer(config(plain, longest_train_tokens=12)).eval()
    rope.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        for inputs, outputs in ((3, 3), (6, 6), (11, 1)):
            x = torch.randint(0, 2, (4, inputs))
            assert torch.equal(scaled(x, outputs), rope(x, outputs))
        x = torch.randint(0, 2, (4, 12))
        assert not torch.allclose(scaled(x, 1), rope(x, 1))


# -- packs ------------------------------------------------------------------------------------------
def pack_and_solo(pe, dtype, tokens, longest):
    """(a pack of seeds 0 and 1, the two runs alone), in eval mode, all in `dtype`."""
    settings = config(pe, longest_train_tokens=longest)
    pack = Transformer(settings, seeds=[0, 1]).to(dtype).eval()
    solo = [Transformer(settings, seeds=[seed]).to(dtype).eval() for seed in (0, 1)]
    x = torch.randint(0, 2, (2, 3, tokens), generator=torch.Generator().manual_seed(5))
    return pack, solo, x


@pytest.mark.parametrize("pe", SCALED + ["rope-yarn+causal"])
def test_a_pack_equals_its_runs_alone_in_float64(pe):
    """Past N (14 tokens, N = 6) and within it: outputs and every gradient to 1e-12."""
    for tokens in (14, 6):
        pack, solo, x = pack_and_solo(pe, torch.float64, tokens, 6)
        packed = pack(x, tokens // 2)
        packed.square().sum().backward()
        for k, alone in enumerate(solo):
            out = alone(x[k], tokens // 2)
            out.square().sum().backward()
            torch.testing.assert_close(packed[k], out, rtol=0, atol=1e-12)
            mine = {entry.name: entry for entry in pack.run_layout()}
            for name, p in alone.named_parameters():
                entry = mine[name]
                grad = entry.tensor.grad[k:k + 1] if entry.run is None else entry.tensor.grad
                torch.testing.assert_close(grad, p.grad, rtol=0, atol=1e-12, msg=name)


@pytest.mark.parametrize("pe", SCALED + ["rope-ntk+causal"])
def test_a_pack_equals_its_runs_alone_bit_for_bit_in_float32(pe):
    pack, solo, x = pack_and_solo(pe, torch.float32, 14, 6)
    with torch.no_grad():
        packed = pack(x, 7)
        for k, alone in enumerate(solo):
            assert torch.equal(packed[k], alone(x[k], 7))


def test_a_packed_run_writes_the_bits_of_the_run_alone(tmp_path):
    """Trained and evaluated (to 24 tokens, past N = 16) as a pack and alone: the same curves and
    accuracies, bit for bit (test_pack's check, on rope-yarn)."""
    settings = dict(steps=12, train_length=8, max_test_length=12)
    configs = [make_config("reverse_string", "rope-yarn", "smoke", seed=seed, **settings) for seed in (0, 1)]
    from che.runners.run import execute_pack

    packed = execute_pack(configs, tmp_path / "pack", device="cpu")
    for config_, outcome in zip(configs, packed):
        alone = run_alone(config_, tmp_path / "solo", device="cpu").record
        assert outcome.record["train_curve"] == alone["train_curve"]
        assert outcome.record["accuracy_by_length"] == alone["accuracy_by_length"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("pe", SCALED)
def test_captured_steps_equal_eager_steps_on_cuda(pe):
    from test_cuda_graphs import pack, train

    eager, eager_losses = train(pack(pe, cuda_graphs=False))
    graphed, graphed_losses = train(pack(pe))
    assert graphed.graphs is not None and graphed.graphs.replays > 0
    assert torch.allclose(torch.tensor(graphed_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-6)


# -- training is rope's; che eval --set rope_scaling on a kept rope run ------------------------------
SETTINGS = dict(steps=60, lr=1e-3, train_length=4, max_test_length=9, eval_samples=16)  # enough to learn a little


@pytest.fixture(scope="module")
def kept_runs(tmp_path_factory):
    """rope, rope-yarn and rope-ntk trained on reverse_string with the same seed (N = 8 tokens,
    tested to 18), each with its kept model."""
    folder = tmp_path_factory.mktemp("rope-scaling") / "runs"
    return {pe: run_alone(make_config("reverse_string", pe, "smoke", seed=3, **SETTINGS), folder, device="cpu").path
            for pe in ["rope"] + SCALED}


def test_training_is_ropes_bit_for_bit(kept_runs):
    """The same training curve, final weights and accuracies up to N; the run ids differ (another PE)."""
    from safetensors.torch import load_file

    from che.runners.stored import model_path

    rope = json.loads(kept_runs["rope"].read_text())
    weights = load_file(str(model_path(kept_runs["rope"])))
    for pe in SCALED:
        record = json.loads(kept_runs[pe].read_text())
        assert record["train_curve"] == rope["train_curve"] and record["final_loss"] == rope["final_loss"]
        assert record["accuracy_by_length"][:4] == rope["accuracy_by_length"][:4]
        assert record["run_id"] != rope["run_id"]
        theirs = load_file(str(model_path(kept_runs[pe])))
        assert theirs.keys() == weights.keys() and all(torch.equal(theirs[n], weights[n]) for n in weights)


@pytest.mark.parametrize("scaling", ["yarn", "ntk"])
def test_che_eval_with_rope_scaling_scores_as_the_scaled_run(kept_runs, scaling, cli, tmp_path):
    """`che eval RUN --set rope_scaling=yarn` on the kept rope run gives exactly the accuracies of
    the rope-yarn run of the same seed (the same weights, computing as rope-yarn), evaluated the same
    way; its result says rope_scaling and has its own run id."""
    result = cli("eval", kept_runs["rope"], "--set", f"rope_scaling={scaling}", "--out-results", tmp_path, "--quiet")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(next(tmp_path.rglob("*-eval.json")).read_text())
    scaled = json.loads(kept_runs[f"rope-{scaling}"].read_text())
    assert evaluation["accuracy_by_length"] == scaled["accuracy_by_length"]
    assert evaluation["pe"] == "rope" and evaluation["config"]["rope_scaling"] == scaling
    rope = json.loads(kept_runs["rope"].read_text())
    assert evaluation["run_id"] != rope["run_id"] + "-eval"
    if scaling == "yarn":  # and the scaling changes what the model predicts past N (so equality says something)
        assert evaluation["accuracy_by_length"][4:] != rope["accuracy_by_length"][4:]


def test_che_eval_builds_the_model_under_the_changed_settings(kept_runs):
    """The model che eval evaluates computes as rope-yarn past N (and as rope up to it); before,
    che eval built the model from the stored settings alone, so rand_at_eval and rope_scaling did
    not reach it."""
    from che.runners.stored import find_run, load_model

    record, path = find_run(str(kept_runs["rope"]))
    plain = load_model(record, path, torch.device("cpu"))[0].eval()
    scaled, config_, _ = load_model(record, path, torch.device("cpu"), {"rope_scaling": "yarn"})
    scaled.eval()
    assert config_.model.rope_scaling == "yarn" and scaled.pe_name == "rope-yarn"
    reference = Transformer(dataclasses.replace(scaled.config, pe="rope-yarn", rope_scaling="none")).eval()
    reference.load_state_dict(plain.state_dict())
    x = torch.randint(0, 2, (3, 9))
    with torch.no_grad():
        assert torch.equal(scaled(x, 9), reference(x, 9))
        assert not torch.allclose(scaled(x, 9), plain(x, 9))
        assert torch.equal(scaled(x[:, :4], 4), plain(x[:, :4], 4))


def test_che_eval_applies_rand_at_eval(tmp_path):
    """che eval --set rand_at_eval=false on a rand- run: the model draws no positions (two passes agree)."""
    from che.runners.stored import find_run, load_model

    path = run_alone(make_config("reverse_string", "rand-rope", "smoke"), tmp_path, device="cpu").path
    record, path = find_run(str(path))
    model = load_model(record, path, torch.device("cpu"), {"rand_at_eval": False})[0].eval()
    x = torch.randint(0, 2, (2, 6))
    with torch.no_grad():
        assert torch.equal(model(x, 6), model(x, 6))


# -- names, refusals, identity --------------------------------------------------------------------
@pytest.mark.parametrize("pe, setting, message", [
    ("alibi", "yarn", "rope_scaling=yarn applies to rope (as rope-yarn), not to 'alibi'"),
    ("bipe-rope", "ntk", "rope_scaling=ntk applies to rope (as rope-ntk), not to 'bipe-rope'"),
    ("rope-yarn", "ntk", "rope_scaling=ntk applies to rope (as rope-ntk), not to 'rope-yarn'"),
    ("rand-rope", "yarn", "'rope-yarn' cannot be randomized"),
    ("rope", "linear", "rope_scaling: unknown value 'linear' (choices: none, yarn, ntk)"),
])
def test_rope_scaling_where_it_cannot_apply_is_refused(pe, setting, message):
    with pytest.raises(CheError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("reverse_string", pe, "smoke", rope_scaling=setting)


def test_rand_rope_yarn_is_refused_in_one_line(cli):
    from che.models.positional import pe_names

    result = cli("run", "--task", "parity_check", "--pe", "rand-rope-yarn", "--preset", "smoke")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "nothing to rescale" in result.stderr
    assert "rope-yarn" in pe_names() and "rand-rope-yarn" not in pe_names() and "rand-rope" in pe_names()


def test_che_eval_refuses_rope_scaling_on_another_pe_in_one_line(cli, smoke_result, tmp_path):
    result = cli("eval", smoke_result, "--set", "rope_scaling=yarn", "--out-results", tmp_path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "applies to rope (as rope-yarn), not to 'alibi'" in result.stderr


def test_rope_scaling_leaves_every_run_id_alone():
    """Absent ("none") it is not part of the identity; set, it is (an evaluation with it is another
    result). N is set from the task, not part of the identity either."""
    plain = make_config("reverse_string", "rope", "smoke")
    assert make_config("reverse_string", "rope", "smoke", rope_scaling="none").run_id == plain.run_id
    assert make_config("reverse_string", "rope", "smoke", rope_scaling="yarn").run_id != plain.run_id
    assert "longest_train_tokens" not in plain.to_dict()


def test_n_is_the_longest_training_sequence_in_tokens():
    from che.registry import TASKS

    for task, n in (("reverse_string", 20), ("duplicate_string", 30), ("parity_check", 11)):
        assert make_config(task, "rope-yarn", "smoke", train_length=10, max_test_length=20).model_for(TASKS.get(task)).longest_train_tokens == n


# -- the command line -----------------------------------------------------------------------------
@pytest.mark.parametrize("pe", SCALED)
def test_che_pes_describes_it(cli, pe):
    result = cli("pes", pe)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Peng et al. 2023" in text and f"rope_scaling={pe.removeprefix('rope-')}" in text
    shown = cli("pes", "--show", pe, "--length", 5)
    assert shown.exit_code == 0 and "adds no attention bias" in shown.output


@pytest.mark.parametrize("pe", ["rope-yarn", "rope-yarn+causal", "rope-ntk", "rope-ntk+causal"])
def test_a_smoke_run_trains(cli, pe, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--results", tmp_path, "--quiet")
    assert result.exit_code == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["pe"] == pe and record["implementations"]["pe"] == {pe.removesuffix("+causal"): 1}


def test_training_with_rope_scaling_names_the_pe_instead(cli, tmp_path):
    """`che run --pe rope --set rope_scaling=yarn` would train rope-yarn's run under another name (a
    rope column of its own protocol): refused in one line that names the PE; che eval keeps the setting."""
    result = cli("run", "--task", "parity_check", "--pe", "rope", "--preset", "smoke", "--set", "rope_scaling=yarn",
                 "--results", tmp_path)
    assert result.exit_code == 2 and "--pe rope-yarn" in result.stderr and "che eval RUN" in result.stderr
    swept = cli("sweep", "--tasks", "parity_check", "--pes", "rope", "--preset", "smoke", "--set", "rope_scaling=ntk",
                "--results", tmp_path, "--dry-run")
    assert swept.exit_code == 2 and "--pe rope-ntk" in swept.stderr
    assert not any(tmp_path.iterdir())
