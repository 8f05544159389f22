"""rope-yarn and rope-ntk: a RoPE model evaluated past its longest training sequence with YaRN's or
NTK-aware scaling of its rotary frequencies (Peng et al. 2023, arXiv 2309.00071).

Both train exactly as `rope`: a training sequence is never longer than N, the longest training
sequence in tokens (`longest_train_tokens`, set from the task at train_length), and up to N tokens
they are RoPE, bit for bit (they call RoPE's own rotation). A sequence of T > N tokens is rotated with
frequencies rescaled at s = T / N, computed per forward pass from the sequence's own length: the
paper's Dynamic Scaling (section 3.3, s = max(1, l'/L)), the form for a model used without
fine-tuning, which is che's setting (train short, test long). The paper's formulas, with d = d_head,
b = 10000 and theta_k = b^(-2k/d) the frequency of pair k = 0 .. d/2 - 1:

- NTK-aware (section 3.1): the base becomes b' = b s^(d / (d - 2)), theta'_k = b'^(-2k/d): the fastest
  pair keeps its frequency, the slowest is divided by s exactly.
- YaRN (section 3.2, "NTK-by-parts", and 3.4, the temperature): pair k has wavelength
  lambda_k = 2 pi / theta_k and turns r_k = N / lambda_k times over the training length; the ramp
  gamma(r) = 0 for r < alpha, 1 for r > beta, (r - alpha) / (beta - alpha) between, with the paper's
  alpha = 1, beta = 32, gives theta'_k = (1 - gamma(r_k)) theta_k / s + gamma(r_k) theta_k: pairs that
  turn more than 32 times keep their frequency, pairs that turn less than once are interpolated by s.
  The logits are divided by a temperature t, sqrt(1/t) = 0.1 ln(s) + 1. As the paper's "length
  scaling trick", q and k are each multiplied by sqrt(1/t) after the rotation: the scores
  (c q)(c k)^T / sqrt(d) are c^2 = 1/t times q k^T / sqrt(d): RoPE adds no bias, so these are the
  logits divided by t, and the attention keeps its fused path. (Under `fox-` the temperature scales
  the content scores, not the forget gates' decays.)

The reference implementations (HuggingFace transformers' YaRN) ramp linearly over the pair index
between the pairs where r = beta and r = alpha, rounded outward to whole pairs; the paper ramps
linearly in r, and che follows the paper. At CHE's d_head 8 the pairs' wavelengths are 6.3, 63, 628
and 6283 tokens: with N = 40 tokens (reverse_string at the `cpu` preset) only the fastest pair
(r = 6.4) lies on the ramp; the others are interpolated by s.

Causal (`+causal`): the same under the mask (s from the whole sequence, which the model reads at
once). `rand-` is refused: randomized positions are drawn from [0, rand_max_length) in training and
at test alike, so no test position lies past the trained ones and there is nothing to rescale.
"""

from __future__ import annotations

import math
import torch

from che.models.positional.rotary import RoPE, rotate_pairs
from che.registry import register_pe

ROPE_BASE = 10000.0
YARN_ALPHA, YARN_BETA = 1.0, 32.0  # the paper's alpha and beta (its LLaMA runs)
CITATION = ("Peng et al. 2023, YaRN: Efficient Context Window Extension of Large Language Models "
            "(ICLR 2024, arXiv 2309.00071)")
NO_RANDOMIZATION = ("randomized positions are drawn from [0, rand_max_length) in training and at test alike, so no "
                    "test position lies past the trained ones: nothing to rescale")


def rope_frequencies(d_head: int, base: float = ROPE_BASE, device=None) -> torch.Tensor:
    """theta_k = base^(-2k/d_head) for k = 0 .. d_head/2 - 1, float64 (che's RoPE, in float64)."""
    return base ** (-torch.arange(0, d_head, 2, dtype=torch.float64, device=device) / d_head)


def ntk_frequencies(d_head: int, scale: float, device=None) -> torch.Tensor:
    """NTK-aware scaling: RoPE's frequencies with the base b * s^(d / (d - 2)). (At d_head 2 the one
    pair has frequency 1 whatever the base.)"""
    if d_head <= 2:
        return rope_frequencies(d_head, device=device)
    return rope_frequencies(d_head, ROPE_BASE * scale ** (d_head / (d_head - 2)), device)


def yarn_ramp(turns: torch.Tensor, alpha: float = YARN_ALPHA, beta: float = YARN_BETA) -> torch.Tensor:
    """gamma(r): 0 below alpha, 1 above beta, linear between."""
    return ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)


def yarn_frequencies(d_head: int, scale: float, original_length: int, device=None) -> torch.Tensor:
    """NTK-by-parts: theta'_k = (1 - gamma(r_k)) theta_k / s + gamma(r_k) theta_k, r_k = N / lambda_k,
    lambda_k = 2 pi / theta_k, N = `original_length`."""
    theta = rope_frequencies(d_head, device=device)
    gamma = yarn_ramp(original_length / (2 * math.pi / theta))
    return (1 - gamma) * theta / scale + gamma * theta


def yarn_attention_factor(scale: float) -> float:
    """sqrt(1/t) = 0.1 ln(s) + 1: what q and k are each multiplied by (the logits by 1/t)."""
    return 0.1 * math.log(scale) + 1.0


class ScaledRoPE(RoPE):
    """RoPE whose frequencies are rescaled on sequences longer than the longest training sequence."""

    family = "rotary"
    jax_reference = None
    refuses = {"rand": NO_RANDOMIZATION}

    def scaled(self, scale: float, d_head: int, device) -> tuple[torch.Tensor, float]:
        """(the frequencies [d_head / 2], the factor on q and k) at scale s > 1."""
        raise NotImplementedError

    def rotate(self, q, k):
        tokens, original = q.shape[-2], self.config.longest_train_tokens
        if tokens <= original:  # training, and every test length up to N: RoPE's own computation
            return super().rotate(q, k)
        positions = self.positions(tokens, q.device)
        frequencies, factor = self.scaled(tokens / original, q.shape[-1], q.device)
        q, k = rotate_pairs(q, positions, frequencies=frequencies), rotate_pairs(k, positions, frequencies=frequencies)
        return (q, k) if factor == 1.0 else (q * factor, k * factor)


@register_pe
class YaRNRoPE(ScaledRoPE):
    """YaRN (Peng et al. 2023): RoPE trained as usual; on a sequence of T tokens longer than the
    longest training sequence N, the frequencies of "NTK-by-parts" at s = T / N (pairs turning more
    than beta = 32 times over N keep theirs, those turning less than alpha = 1 time are divided by s,
    a linear ramp in the number of turns between) and the logits divided by the temperature t,
    sqrt(1/t) = 0.1 ln s + 1 (q and k each multiplied by sqrt(1/t)). Trains bit for bit as rope; `che
    eval RUN --set rope_scaling=yarn` on a kept rope run computes the same. See che's
    models/positional/rope_scaling.py for the formulas and where che's form meets the paper's."""

    name = "rope-yarn"
    evaluation_of = ("rope", "rope_scaling", "yarn")  # a kept rope model under --set rope_scaling=yarn
    column = 3.2
    citation = CITATION
    bidirectional_form = ("RoPE up to N tokens (the longest training sequence); past it, YaRN's frequencies at "
                          "s = T / N and logits / t, sqrt(1/t) = 0.1 ln s + 1")
    causal_form = "the same under the causal mask (s from the whole sequence)"

    def scaled(self, scale, d_head, device):
        frequencies = yarn_frequencies(d_head, scale, self.config.longest_train_tokens, device)
        return frequencies, yarn_attention_factor(scale)


@register_pe
class NTKRoPE(ScaledRoPE):
    """NTK-aware scaling (as Peng et al. 2023 state it, section 3.1): RoPE trained as usual; on a
    sequence of T tokens longer than the longest training sequence N, RoPE with the base
    b' = 10000 s^(d/(d-2)) at s = T / N (d = d_head): the fastest pair keeps its frequency, the slowest
    is divided by s; no temperature. Trains bit for bit as rope; `che eval RUN --set rope_scaling=ntk`
    on a kept rope run computes the same."""

    name = "rope-ntk"
    evaluation_of = ("rope", "rope_scaling", "ntk")
    column = 3.3
    citation = CITATION + ", section 3.1: NTK-aware interpolation, first posted by bloc97 (Reddit, 2023)"
    bidirectional_form = "RoPE up to N tokens; past it, RoPE with the base 10000 s^(d/(d-2)), s = T / N"
    causal_form = "the same under the causal mask (s from the whole sequence)"

    def scaled(self, scale, d_head, device):
        return ntk_frequencies(d_head, scale, device), 1.0
