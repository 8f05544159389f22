"""The worst difference between che and the JAX reference for each parity fixture:

    python scripts/parity_numbers.py > results/parity/worst_differences.txt

logits and loss (absolute), gradients (relative to each tensor's largest entry, the worst tensor)
and the parameters after one clipped Adam step (absolute, every entry, including those whose
gradient is near Adam's eps, which the test leaves out). tests/test_reference_parity.py asserts
the bounds; this prints the numbers.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import test_reference_parity as parity  # noqa: E402

from che.models.haiku import haiku_arrays, load_haiku_params  # noqa: E402
from che.models.positional import base  # noqa: E402
from che.runners.optim import PackedAdam  # noqa: E402


def main() -> None:
    for path in parity.FIXTURES:
        meta, data = parity.read(path)
        model = parity.model_for(meta)
        load_haiku_params(model, parity.tree(data, "p/"))
        optimizer = PackedAdam(model, [meta["lr"]], meta["max_grad_norm"])
        draws = list(parity.recorded_draws(meta, data))
        base.random_positions = base.random_offsets = lambda count, length, device=None: torch.as_tensor(draws.pop(0))
        logits = model(torch.as_tensor(data["inputs"]), meta["output_length"])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.as_tensor(data["targets"]).reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        ours, theirs = haiku_arrays(model, grads=True), parity.tree(data, "g/")
        gradient = max(float(np.abs(ours[n] - theirs[n]).max() / max(np.abs(theirs[n]).max(), 1e-12)) for n in theirs)
        optimizer.step()
        after, expected = haiku_arrays(model), parity.tree(data, "u/")
        step = max(float(np.abs(after[n] - expected[n]).max()) for n in expected)
        print(f"{path.stem:30s} logits {np.abs(logits.detach().numpy() - data['logits']).max():.1e}  "
              f"loss {abs(loss.item() - float(data['loss'])):.1e}  gradients (relative) {gradient:.1e}  "
              f"Adam step {step:.1e} (lr {meta['lr']:g})")


if __name__ == "__main__":
    main()
