"""PaTH attention (`path`, Yang et al. 2025): the paper's equation written out entry by entry in both
modes, hand-made transforms, the authors' layer (flash-linear-attention's `PaTHAttention`) and
reference form (`naive_path_attn`) restated, with FoX's gates (PaTH-FoX) and SSMax over it, packs,
CUDA graphs, the command line and the pictures."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_same_function
from test_pack import configs, losses_per_step

from che.config import ModelConfig, make_config
from che.errors import CheError
from che.models import Transformer
from che.models.positional import parse_pe
from che.models.positional.householder import L2_EPS, transport

D_HEAD = 8


def config(pe, **kw):
    return ModelConfig(input_size=3, output_size=2, pe=pe, dropout=0.0, **kw)


def householder(w, beta):
    return torch.eye(w.shape[-1], dtype=w.dtype) - beta * torch.outer(w, w)


def paper_scores(q, k, left, right=None):
    """The paper's equation, one entry at a time, for one head (q, k, w: [T, d]; beta: [T]):
    A_ij = q_i^T H_i H_{i-1} ... H_{j+1} k_j for j <= i; che's encoder form for j > i,
    A_ij = q_i^T H'_i H'_{i+1} ... H'_{j-1} k_j (0 there without `right`)."""
    length = q.shape[0]
    scores = torch.zeros(length, length, dtype=q.dtype)
    for i in range(length):
        for j in range(length):
            if j > i and right is None:
                continue
            transport = torch.eye(q.shape[1], dtype=q.dtype)
            side, steps = (left, range(i, j, -1)) if j <= i else (right, range(i, j))
            for s in steps:
                transport = transport @ householder(side[0][s], side[1][s])
            scores[i, j] = q[i] @ transport @ k[j]
    return scores


def scores(q, k, left, right=None):
    """A = q k^T + PaTH's change C (`transport`); causal (no `right`): 0 right of the query."""
    plain = q @ k.transpose(-1, -2)
    return transport(q, k, left, right) + (plain if right is not None else plain.tril())


def random_steps(*shape, generator=None):
    """Unit w [..., T, d] and beta in (0, 2) [..., T]."""
    w = F.normalize(torch.randn(*shape, D_HEAD, dtype=torch.float64, generator=generator), dim=-1)
    return w, 2 * torch.rand(*shape, dtype=torch.float64, generator=generator)


# -- the equations ------------------------------------------------------------------------------------
@pytest.mark.parametrize("two_sided", [False, True])
def test_scores_equal_the_papers_equation_entry_by_entry(two_sided):
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 3, 7, D_HEAD, dtype=torch.float64, generator=generator) for _ in range(2))
    left = random_steps(2, 3, 7, generator=generator)
    right = random_steps(2, 3, 7, generator=generator) if two_sided else None
    got = scores(q, k, left, right)
    for b in range(2):
        for h in range(3):
            sides = [None if s is None else (s[0][b, h], s[1][b, h]) for s in (left, right)]
            torch.testing.assert_close(got[b, h], paper_scores(q[b, h], k[b, h], *sides), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("two_sided", [False, True])
def test_the_written_out_backward_pass_is_the_gradient(two_sided):
    """`Transport`'s backward pass against finite differences, in float64."""
    generator = torch.Generator().manual_seed(1)
    q, k = (torch.randn(2, 5, D_HEAD, dtype=torch.float64, generator=generator).requires_grad_() for _ in range(2))
    sides = [tuple(t.requires_grad_() for t in random_steps(2, 5, generator=generator))
             for _ in range(2 if two_sided else 1)]
    inputs = (q, k, *[t for side in sides for t in side])

    def changes(q, k, *steps):
        return transport(q, k, steps[:2], steps[2:] or None)

    assert torch.autograd.gradcheck(changes, inputs)


def test_hand_made_transforms():
    """w = e_0, beta = 2 on every token: each H flips the sign of coordinate 0, so with q = k = e_0 +
    e_1, A_ij = 1 + (-1)^(i-j): 2 at even distances, 0 at odd ones. Projections (beta = 1) onto
    e_0's and e_1's complements in turn, q = k = e_0 + e_1 + e_2: each coordinate removed once
    counts once, A_ii = 3, A_i,i-1 = 2, then 1 for good."""
    e = torch.eye(D_HEAD, dtype=torch.float64)
    length = 6
    i = torch.arange(length)
    distance = (i[:, None] - i[None, :]).double()
    flips = (e[0].expand(length, -1), torch.full((length,), 2.0, dtype=torch.float64))
    q = (e[0] + e[1]).expand(length, -1)
    expected = torch.where(distance >= 0, 1 + (-1) ** distance, 0.0)
    torch.testing.assert_close(scores(q, q, flips), expected, atol=1e-12, rtol=0)

    alternate = (torch.stack([e[t % 2] for t in range(length)]), torch.ones(length, dtype=torch.float64))
    q = (e[0] + e[1] + e[2]).expand(length, -1)
    expected = torch.tensor([3.0, 2.0] + [1.0] * (length - 2), dtype=torch.float64)[distance.clamp(min=0).long()]
    torch.testing.assert_close(scores(q, q, alternate), expected.tril(), atol=1e-12, rtol=0)


def test_the_order_of_the_product_is_the_papers():
    """Two reflections do not commute: w_1 = e_0 and w_2 = (e_0 + e_1) / sqrt(2), beta = 2. Then
    H_2 H_1 = [[0, -1], [1, 0]] (on e_0, e_1), H_1 H_2 its transpose, so q_2^T H_2 H_1 k_0 with
    q = e_0, k = e_1 is -1, and +1 in the other order."""
    e = torch.eye(D_HEAD, dtype=torch.float64)
    w = torch.stack([e[2], e[0], (e[0] + e[1]) / math.sqrt(2)])
    q, k = e[0].expand(3, -1), e[1].expand(3, -1)
    assert scores(q, k, (w, torch.full((3,), 2.0, dtype=torch.float64)))[2, 0] == pytest.approx(-1.0)


def test_the_encoder_form_by_hand():
    """Left: the sign flips of coordinate 0; right: projections removing coordinate 1 (beta = 1,
    w = e_1). q = k = e_0 + e_1: left of the query 1 + (-1)^(i-j), on it 2, right of it 1."""
    e = torch.eye(D_HEAD, dtype=torch.float64)
    length = 5
    ones = torch.ones(length, dtype=torch.float64)
    left, right = (e[0].expand(length, -1), 2 * ones), (e[1].expand(length, -1), ones)
    q = (e[0] + e[1]).expand(length, -1)
    i = torch.arange(length)
    distance = (i[:, None] - i[None, :]).double()
    expected = torch.where(distance >= 0, 1 + (-1) ** distance, 1.0)
    torch.testing.assert_close(scores(q, q, left, right), expected, atol=1e-12, rtol=0)
    # the right side reads H'_i ... H'_{j-1}: the key's own transform is not among them
    right_at_key = (torch.stack([e[1] if t < 3 else e[0] for t in range(length)]), ones)
    assert scores(q, q, left, right_at_key)[0, 3] == pytest.approx(1.0)
    assert scores(q, q, left, right_at_key)[0, 4] == pytest.approx(0.0)


# -- the authors' layer: w and beta from the layer input -------------------------------------------
def authors_steps(steps, x, anti_causal=False):
    """flash-linear-attention's PaTHAttention, written out: w_t = l2norm per head (w / sqrt(|w|^2 +
    1e-6)) of silu(sum_m c_m h_{t-2+m}), a depthwise convolution of width 3 without bias over h = x
    W_down W_up (rank 32, no biases), zero before the first token; beta_t = 2 sigmoid(u^T x_t + b).
    che's anti-causal mirror reads h_{t+2-m} instead. x [B, T, d_model] -> w [B, H, T, d_head], beta."""
    h = x @ steps.down.weight.T @ steps.up.weight.T
    length = x.shape[1]
    taps = steps.conv.weight[:, 0, :]                                            # [d_model, 3]
    conv = torch.zeros_like(h)
    for t in range(length):
        for m in range(3):
            s = t + 2 - m if anti_causal else t - 2 + m
            if 0 <= s < length:
                conv[:, t] += taps[:, m] * h[:, s]
    w = F.silu(conv).unflatten(-1, (-1, D_HEAD)).transpose(1, 2)
    w = w / torch.sqrt(w.square().sum(-1, keepdim=True) + L2_EPS)
    return w, 2 * torch.sigmoid(x @ steps.beta.weight.T + steps.beta.bias).transpose(1, 2)


def scaled_up(module, factor=25.0):
    """Parameters far from their initialisation, so that w is a unit vector and beta ranges over (0, 2)."""
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(factor).add_(torch.randn_like(p))
    return module


@pytest.mark.parametrize("pe", ["path", "path+causal"])
def test_the_bias_is_the_papers_logits_minus_the_scores(pe):
    """From the layer input: B = (A - q k^T) / sqrt(d_head), A the paper's (and che's encoder form)
    with w and beta as the authors' layer computes them; keys right of a causal query get 0."""
    torch.manual_seed(0)
    cfg = config(pe, d_model=16, n_heads=2)
    module = scaled_up(parse_pe(pe, cfg).make().double())
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    q, k = (torch.randn(2, 2, 6, D_HEAD, dtype=torch.float64) for _ in range(2))
    module.see(x)
    got = module.bias(*module.rotate(q, k))
    left = authors_steps(module.left, x)
    right = None if module.right is None else authors_steps(module.right, x, anti_causal=True)
    for b in range(2):
        for h in range(2):
            sides = [None if s is None else (s[0][b, h], s[1][b, h]) for s in (left, right)]
            scores = paper_scores(q[b, h], k[b, h], *sides)
            expected = (scores - q[b, h] @ k[b, h].T) / math.sqrt(D_HEAD)
            if right is None:
                expected = expected.tril()
            torch.testing.assert_close(got[b, h], expected, atol=1e-12, rtol=1e-12)
    assert (module.right is None) == pe.endswith("+causal")


def test_initialisation_and_parameters_as_the_authors_models():
    """Every Linear and Conv1d weight N(0, 0.02), biases 0; the low rank 32; a depthwise convolution
    of width 3 without bias; per side 64 x 32 + 32 x 64 + 64 x 3 + 64 x 8 + 8 = 4,808 parameters."""
    torch.manual_seed(0)
    module = parse_pe("path", config("path", d_model=256, n_heads=8)).make()
    steps = module.left
    assert steps.down.weight.shape == (32, 256) and steps.up.weight.shape == (256, 32)
    assert steps.conv.weight.shape == (256, 1, 3) and steps.conv.bias is None and steps.conv.groups == 256
    assert steps.beta.bias.abs().max() == 0
    for weight in (steps.down.weight, steps.up.weight, steps.conv.weight, steps.beta.weight):
        assert abs(weight.std().item() - 0.02) < 0.002 and abs(weight.mean().item()) < 0.002
    default = config("path")
    assert sum(p.numel() for p in parse_pe("path", default).make().parameters()) == 2 * 4_808
    assert sum(p.numel() for p in parse_pe("path+causal", default).make().parameters()) == 4_808


# -- the authors' reference form ----------------------------------------------------------------------
def authors_reference(q, k, v, w, beta, g, scale):
    """flash-linear-attention's naive_path_attn, restated (one chunk of T: the same function as its
    chunks of 64): the product of the transforms through the UT transform,
    U = (I + diag(beta) tril(W W^T, -1))^-1, A = tril(Q K^T) - tril(Q W^T) U diag(beta) tril(W K^T, -1),
    and o = softmax(scale (A + G_i - G_j), causal) V with G the cumulative sum of the log gates g.
    q, k, v, w: [B, H, T, d]; beta, g: [B, H, T]."""
    length = q.shape[-2]
    ut = torch.eye(length, dtype=q.dtype) + beta[..., :, None] * (w @ w.transpose(-1, -2)).tril(-1)
    moved = torch.linalg.solve_triangular(ut, beta[..., :, None] * (w @ k.transpose(-1, -2)).tril(-1), upper=False)
    scores = (q @ k.transpose(-1, -2)).tril() - (q @ w.transpose(-1, -2)).tril() @ moved
    gates = g.cumsum(-1)
    logits = scale * (scores + gates[..., :, None] - gates[..., None, :])
    logits = logits.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(logits, -1) @ v


@pytest.mark.parametrize("pe", ["path+causal", "fox-path+causal"])
def test_a_causal_layer_equals_the_authors_reference_values_and_gradients(pe):
    """A whole causal attention layer against `authors_reference` on its q, k, v and the w, beta of
    the authors' layer, float64, outputs and every gradient (of the input and each parameter).
    PaTH-FoX: the reference adds the log gates before the scale, so che's FoX gates log f enter it as
    g = log f, added before the scale as the authors' (FoX sums them in float32: 1e-6 there); g = 0 without FoX."""
    torch.manual_seed(0)
    net = Transformer(config(pe, d_model=16, n_heads=2)).double()
    layer = net.blocks[0].attention
    path = layer.pes[0].base if pe.startswith("fox") else layer.pes[0]
    scaled_up(path)
    x = torch.randn(1, 2, 7, 16, dtype=torch.float64, requires_grad=True)
    got = layer(x, [None])[0]
    qkv = (x[0] @ layer.qkv.weight[0]).view(2, 7, 3, 2, D_HEAD)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)                                           # [B, H, T, d]
    w, beta = authors_steps(path.left, x[0])
    g = (F.logsigmoid(layer.pes[0].left(x[0])).transpose(1, 2) if pe.startswith("fox")
         else torch.zeros_like(beta))
    o = authors_reference(q, k, v, w, beta, g, 1 / math.sqrt(D_HEAD))
    expected = o.transpose(1, 2).reshape(2, 7, 16) @ layer.out.weight[0]
    tolerance = 1e-6 if pe.startswith("fox") else 1e-12
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)
    inputs = [x] + list(layer.parameters())
    mine = torch.autograd.grad(got.square().sum(), inputs)
    theirs = torch.autograd.grad(expected.square().sum(), inputs)
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b, atol=100 * tolerance, rtol=100 * tolerance)


def test_ssmax_scales_paths_logits():
    """ssmax-path: the logits of query i are s_h log n_i times PaTH's A_ij / sqrt(d_head), whole:
    PaTH's bias reads q before SSMax scales it (else its part would be scaled twice)."""
    torch.manual_seed(0)
    cfg = config("ssmax-path", d_model=16, n_heads=2)
    module = parse_pe("ssmax-path", cfg).make().double()
    scaled_up(module.base)
    with torch.no_grad():
        module.scale.copy_(torch.tensor([0.5, 2.0]))
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    q, k = (torch.randn(1, 2, 6, D_HEAD, dtype=torch.float64) for _ in range(2))
    module.see(x)
    rq, rk = module.rotate(q, k)
    logits = rq @ rk.transpose(-1, -2) / math.sqrt(D_HEAD) + module.bias(rq, rk)
    path = scores(q, k, *module.base.steps)  # each side's w, beta, in time order
    factor = module.scale.detach()[:, None, None] * math.log(6)
    torch.testing.assert_close(logits, factor * path / math.sqrt(D_HEAD), atol=1e-6, rtol=1e-6)  # s log n: float32


# -- in the model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("pe", ["path", "path+causal", "fox-path+causal"])
def test_fused_and_explicit_attention_compute_the_same_function(pe):
    torch.manual_seed(0)
    fused = Transformer(config(pe, attention="fused")).double()
    explicit = Transformer(config(pe, attention="explicit")).double()
    explicit.load_state_dict(fused.state_dict())
    assert_same_function(fused, explicit, torch.randint(0, 3, (2, 6)), 3, atol=1e-12, grad_atol=1e-10)


@pytest.mark.parametrize("pe", ["path", "fox-path"])
def test_a_causal_model_never_reads_a_later_token(pe):
    tokens = torch.randint(0, 3, (1, 2, 9))
    changed = tokens.clone()
    changed[..., 4] = (changed[..., 4] + 1) % 3
    for causal in (True, False):
        torch.manual_seed(0)
        net = Transformer(config(pe + ("+causal" if causal else ""))).double().eval()
        with torch.no_grad():
            a, b = net.encode(tokens), net.encode(changed)
        assert torch.allclose(a[..., :4, :], b[..., :4, :], atol=1e-12) == causal


@pytest.mark.parametrize("pe", ["path", "path+causal"])
def test_a_pack_is_its_runs_alone(pe):
    """Transformer(config, seeds=[0, 1]) against a model per seed: float64 outputs and gradients to
    1e-12; float32 outputs bit for bit."""
    tokens = torch.randint(0, 3, (2, 3, 6))
    for dtype in (torch.float64, torch.float32):
        pack = Transformer(config(pe), seeds=[0, 1]).to(dtype)
        out = pack(tokens, 4)
        out.square().sum().backward()
        grads = {(entry.name, entry.run): entry.tensor.grad for entry in pack.run_layout()}
        for run, seed in enumerate([0, 1]):
            torch.manual_seed(seed)
            alone = Transformer(config(pe)).to(dtype)
            mine = alone(tokens[run], 4)
            if dtype == torch.float32:
                assert torch.equal(mine, out[run])
                continue
            torch.testing.assert_close(mine, out[run], atol=1e-12, rtol=0)
            mine.square().sum().backward()
            for name, p in alone.named_parameters():
                grad = grads[(name, run)] if (name, run) in grads else grads[(name, None)][run:run + 1]
                torch.testing.assert_close(p.grad, grad, atol=1e-12, rtol=0, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_training_pack_is_its_runs_alone(dtype):
    """Four training steps of a pack of three (test_pack's configurations) equal each run alone:
    float32 losses bit for bit, float64 losses and weights to 1e-12."""
    from che.runners.train import Trainer

    from che.registry import TASKS

    task = TASKS.get("reverse_string")
    pack_configs = configs("fox-path+causal")
    packed = Trainer(pack_configs, task, torch.device("cpu"), dtype)
    pack_losses = losses_per_step(packed, 4)
    for k, one in enumerate(pack_configs):
        alone = Trainer([one], task, torch.device("cpu"), dtype)
        alone_losses = [step[0] for step in losses_per_step(alone, 4)]
        if dtype == torch.float32:
            assert [step[k] for step in pack_losses] == alone_losses
        else:
            assert [step[k] for step in pack_losses] == pytest.approx(alone_losses, rel=1e-12)
            mine, theirs = packed.run_state_dict(k), alone.run_state_dict(0)
            for name in mine:
                torch.testing.assert_close(mine[name], theirs[name], atol=1e-12, rtol=0, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("pe", ["path", "path+causal", "fox-path+causal"])
def test_captured_steps_equal_eager_steps(pe):
    from test_cuda_graphs import test_captured_steps_equal_eager_steps as captured_equal_eager

    captured_equal_eager(pe)


# -- names, the command line, pictures ------------------------------------------------------------------
@pytest.mark.parametrize("name, reason", [("rand-path", "uses no positions"),
                                          ("dape-path", "DAPE needs an additive-bias PE"),
                                          ("dape2-path", "DAPE needs an additive-bias PE")])
def test_combinations_that_cannot_work_are_refused_in_one_line(name, reason, cli):
    with pytest.raises(CheError, match=reason):
        parse_pe(name, None)
    result = cli("run", "--task", "parity_check", "--pe", name, "--preset", "smoke")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_che_pes_describes_path_and_counts_its_parameters(cli):
    result = cli("pes", "path")
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0, result.stderr
    assert "Yang et al. 2025" in text and "householder transforms" in text
    assert "48,080 = 5 layers x 9,616" in text
    assert "24,040 = 5 layers x 4,808" in " ".join(cli("pes", "path+causal").stdout.split())


@pytest.mark.parametrize("name", ["path", "path+causal", "fox-path"])
def test_che_pes_show(name, cli):
    """At initialisation with q = k = 0 PaTH's bias is 0 (it depends on q and k): `che pes --show`
    says so; FoX's decays over it are shown, scaled with the scores as the authors' PaTH-FoX:
    -|i - j| log 2 / sqrt(d_head) (d_head 8 here)."""
    result = cli("pes", "--show", name, "--length", 5, "--n-heads", 2)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    if name.startswith("fox"):
        assert "head 1" in text and "-0.245" in text and "-0.980" in text  # -|i - j| log 2 / sqrt(8)
    else:
        assert "depends on content (q, k, the layer input)" in text and "che show" in text


@pytest.mark.parametrize("pe", ["path", "path+causal"])
def test_a_smoke_run_trains(pe, cli, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--results", tmp_path, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert "result: " in result.stdout


@pytest.mark.parametrize("pe, panels", [("path", ["PaTH's transform (A - S)", "attention"]),
                                        ("fox-path+causal", ["FoX's decays D", "PaTH's transform (A - S)",
                                                             "attention"])])
def test_che_show_draws_paths_transform(pe, panels, cli, tmp_path, monkeypatch):
    """The panel says what PaTH adds, and the logits the softmax saw are S + B (+ FoX's D)."""
    import matplotlib.figure
    from che.runners.inspection import attention_maps
    from che.runners.stored import find_run
    from conftest import run_alone

    path = run_alone(make_config("reverse_string", pe, "smoke"), tmp_path / "runs", device="cpu").path
    titles = []
    original = matplotlib.figure.Figure.savefig

    def spy(figure, *args, **kwargs):
        titles.extend(ax.get_title() for ax in figure.axes if ax.get_title())
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    result = cli("show", path, "--out", tmp_path / "show.png", "--heads", "0")
    assert result.exit_code == 0, result.stderr
    assert titles == panels
    recorded, _ = attention_maps(*find_run(str(path)), torch.device("cpu"), layer=0, length=5, sample=0)
    expected = recorded["scores"] + recorded["bias"] + recorded.get("decay", 0)
    if pe.endswith("+causal"):
        later = torch.ones(10, 10, dtype=torch.bool).triu(1)
        expected = expected.masked_fill(later, float("-inf"))
    torch.testing.assert_close(recorded["logits"], expected)


def test_the_cost_model_counts_both_sides_of_the_encoder_form():
    """`path` runs the transforms once per side, each over every key: twice `path+causal`'s FLOPs."""
    from che.config import ModelConfig
    from che.models.positional import parse_pe

    def flops(pe):
        return parse_pe(pe, ModelConfig(input_size=2, output_size=2, pe=pe)).flops_per_pair()

    assert flops("path") == 2 * flops("path+causal") == 2 * 7 * 64
