"""Weights of the DeepMind JAX reference (a Haiku parameter tree) in a `che` Transformer.

The CHE and RPE code (`neural_networks_chomsky_hierarchy`, `randomized_positional_encodings`) train
with Haiku; a checkpoint of theirs is a tree module -> parameter -> array. `load_haiku_params`
puts such a tree, flattened to "module/param" names, into one run of a `che` Transformer with the
matching config, so that `che` can evaluate, train on or compare a model trained with the JAX code:

    import numpy as np
    from che.config import ModelConfig
    from che.models import Transformer
    from che.models.haiku import load_haiku_params

    model = Transformer(ModelConfig(input_size=2, output_size=2, pe="relative", n_layers=5, d_model=64))
    load_haiku_params(model, {name: np.asarray(v) for name, v in flattened_haiku_params.items()})

Names (layer l from 0; Haiku numbers repeated modules name, name_1, name_2, ...):
- `transformer_encoder/transformer_embedder/~embed_sequences/linear/w` [input_size + 1, d]: the
  token embedding (one-hot times w; the last row is the empty token);
- `transformer_encoder/transformer_embedder/~add_positional_encodings/embed/embeddings`: the
  learned PE table (LEARNT, NOISY_LEARNT);
- `transformer_encoder/multi_head_dot_product_attention{_l}/linear{,_1,_2}/w`: q, k, v [d, d];
  the output projection is `linear_3/w`, or `linear_4/w` with the relative PEs, whose
  Transformer-XL projection W_R is `linear_3/w` and whose u, v are `relpos_contentbias`,
  `relpos_relativebias` [H, d_head];
- `transformer_encoder/linear{_2l}` (d -> 4d) and `linear_{2l+1}` (4d -> d), `w` and `b`: the FFN;
- `transformer_encoder/layer_norm{_2l}` (after attention) and `layer_norm_{2l+1}` (after the FFN),
  `scale` and `offset`;
- `linear/w`, `linear/b`: the output head.

PEs: the reference has none, sin-cos, learned, rope, alibi, relative and their NOISY_* forms
(`rand-...`, with `rand_mode="reference"` for rand-alibi and rand-relative): each of these PE classes
declares its parameters' Haiku names (`jax_reference`; an absolute PE's under the embedder, an
attention PE's under each attention layer). Only learned and relative have parameters. The relative PE of the RPE code encodes key-minus-query offsets, `che`
query-minus-key (as the CH code): the two differ in the sign of the sinusoid's sin half, so the
rows of W_R that multiply it are negated on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from che.errors import CheError

EMBEDDER = "transformer_encoder/transformer_embedder"


def _numbered(name: str, index: int) -> str:
    return name if index == 0 else f"{name}_{index}"


def haiku_names(model) -> dict[str, str]:
    """Haiku name -> where it goes in the model: a parameter name, with {run} for a run's PE
    module, and after ':' which part of it (q, k, v of the qkv weight; relative: W_R, see above)."""
    from che.models.positional import parse_pe
    from che.registry import PES

    config = model.config
    build = parse_pe(model.pe_name, None)
    reference = build.cls.jax_reference
    if reference is None or [m.name for m in build.pe.modifiers] not in ([], ["rand"]):
        supported = ", ".join(e.name for e in PES.entries() if e.obj.jax_reference is not None)
        raise CheError(f"the JAX reference has no '{model.pe_name}' (its PEs: {supported}, and their rand- forms)")
    names: dict[str, str] = {
        f"{EMBEDDER}/~embed_sequences/linear/w": "embedding",
        "linear/w": "head.weight",
        "linear/b": "head.bias",
    }
    if build.acts_on_embeddings:
        names |= {f"{EMBEDDER}/{name}": f"absolute_pes.{{run}}.{target}" for name, target in reference.items()}
    # the attention's own Linear modules are numbered after those the PE adds (Transformer-XL's W_R)
    out = 3 + sum(name.startswith("linear") for name in reference) * (not build.acts_on_embeddings)
    for layer in range(config.n_layers):
        attention = f"transformer_encoder/{_numbered('multi_head_dot_product_attention', layer)}"
        block = f"blocks.{layer}"
        for i, part in enumerate("qkv"):
            names[f"{attention}/{_numbered('linear', i)}/w"] = f"{block}.attention.qkv.weight:{part}"
        names[f"{attention}/{_numbered('linear', out)}/w"] = f"{block}.attention.out.weight"
        if not build.acts_on_embeddings:
            names |= {f"{attention}/{name}": f"{block}.attention.pes.{{run}}.{target}"
                      for name, target in reference.items()}
        for sub, target in (("w", "weight"), ("b", "bias")):
            names[f"transformer_encoder/{_numbered('linear', 2 * layer)}/{sub}"] = f"{block}.ffn_in.{target}"
            names[f"transformer_encoder/{_numbered('linear', 2 * layer + 1)}/{sub}"] = f"{block}.ffn_out.{target}"
        for i, norm in ((2 * layer, "norm1"), (2 * layer + 1, "norm2")):
            for sub, target in (("scale", "weight"), ("offset", "bias")):
                names[f"transformer_encoder/{_numbered('layer_norm', i)}/{sub}"] = f"{block}.{norm}.{target}"
    return names


@torch.no_grad()
def load_haiku_params(model, params: Mapping[str, object], run: int = 0) -> None:
    """Copy a flattened Haiku parameter tree ("module/param" -> array) into run `run` of `model`.

    Every parameter of the model's run must be given and every given name must be one the model
    has; otherwise a CheError names the missing and unexpected ones. Shapes are checked too.
    """
    expected = haiku_names(model)
    missing = sorted(set(expected) - set(params))
    unexpected = sorted(set(params) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise CheError(f"Haiku parameters do not fit this {model.pe_name} model "
                       f"({model.config.n_layers} layers): {'; '.join(parts)}")
    for name, target in expected.items():
        value = torch.as_tensor(np.asarray(params[name]), dtype=torch.float32)
        destination, path, to_che = _place(model, target, run, "data")
        value = to_che(value)
        if tuple(destination.shape) != tuple(value.shape):
            raise CheError(f"Haiku parameter {name} has shape {tuple(value.shape)}, the model's "
                           f"{path} needs {tuple(destination.shape)}")
        destination.copy_(value.to(destination.dtype))


def _place(model, target: str, run: int, what: str):
    """(the che tensor a Haiku parameter maps to, its name, the map from Haiku's layout to it)."""
    path, _, part = target.format(run=run).partition(":")
    parameter = dict(model.named_parameters())[path]
    tensor = parameter if what == "data" else parameter.grad
    if ".pes." not in path and not path.startswith("absolute_pes."):
        tensor = tensor[run]                            # a stacked transformer weight
    d = model.config.d_model
    if part in ("q", "k", "v"):                         # one third of the [d, 3d] qkv weight
        column = "qkv".index(part) * d
        return tensor[:, column:column + d], path, lambda v: v
    if part == "relative":                              # torch Linear [out, in]; see the module doc
        return tensor, path, lambda v: (v * _sin_sign(d)[:, None]).T
    return tensor, path, lambda v: v


def _sin_sign(d: int) -> torch.Tensor:
    return torch.cat([-torch.ones(d // 2), torch.ones(d - d // 2)])


@torch.no_grad()
def haiku_arrays(model, run: int = 0, grads: bool = False) -> dict[str, np.ndarray]:
    """The inverse of `load_haiku_params`: run `run`'s parameters (or their gradients) under their
    Haiku names, in Haiku's layout."""
    arrays = {}
    for name, target in haiku_names(model).items():
        tensor, _, _ = _place(model, target, run, "grad" if grads else "data")
        value = tensor.detach().cpu().float()
        if target.endswith(":relative"):
            value = value.T * _sin_sign(model.config.d_model)[:, None]
        arrays[name] = value.numpy().copy()
    return arrays
