"""How much faster is a CPU training step now than at an earlier commit? Both versions timed by this
one script, the same way, side by side, interleaved.

    python scripts/cpu_speedup.py --base 390aa08 [--pes none,alibi] [--lengths 5,20,40] [--threads 2]

Each version's code is laid out as it installs (scripts/lint_imports.py's `stage`; the base from
`git archive`) and timed in a fresh process per version and (PE, length): the CHE model (5 layers,
d_model 64, 8 heads) on reverse_string, batch 128, one training step as that version's `che run`
makes it (forward, backward, clipping, Adam; at the base, `Trainer._step`, here `Trainer.step`), on
one fixed batch of length N (sampling left out, so only the step counts), after two warm-up steps,
the median of `--repeats` timed steps. The rounds alternate base and current so that drift on the
machine hits both. Prints the medians and current/base speed ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lint_imports import REPO, stage  # noqa: E402

# Runs inside the timed version's tree: prints one JSON list of step seconds.
TIMER = r"""
import json, sys, time, torch
pe, length, batch, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
try:                                       # each version's own set-up of the process, as its CLI does
    from che.threads import configure
    configure(threads)
except ImportError:
    torch.set_num_threads(threads)
from che.config import make_config
from che.registry import TASKS
from che.runners import train
task = TASKS.get("reverse_string")
config = make_config("reverse_string", pe, "paper", d_model=64, batch_size=batch, train_length=40, steps=10**6)
fixed = task.sample(batch, length, torch.Generator().manual_seed(0))
if hasattr(train.Trainer, "_step"):        # che 0.1: the trainer samples inside its step
    trainer = train.Trainer(config, task, torch.device("cpu"))
    task.sample = lambda *args, **kwargs: fixed
    step = trainer._step
else:
    trainer = train.Trainer([config], task, torch.device("cpu"))
    one = tuple(getattr(fixed, name)[None] for name in ("inputs", "targets", "mask"))
    step = lambda: trainer.step(one)
for _ in range(2):
    step()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def base_tree(revision: str, target: Path) -> Path:
    archive = target / "base.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive), revision], check=True)
    source = target / "base-source"
    with tarfile.open(archive) as tar:
        tar.extractall(source, filter="data")
    return stage(target / "base", root=source, data=True)


def timed(tree: Path, pe: str, length: int, args) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(args.threads), OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run([sys.executable, "-c", TIMER, pe, str(length), str(args.batch), str(args.repeats),
                          str(args.threads)], env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="390aa08")
    parser.add_argument("--pes", default="none,alibi")
    parser.add_argument("--lengths", default="5,20,40")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of base and current")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": base_tree(args.base, Path(tmp)), "current": stage(Path(tmp) / "current", data=True)}
        times = {}
        for pe in args.pes.split(","):
            for length in map(int, args.lengths.split(",")):
                for _ in range(args.rounds):
                    for version in ("base", "current"):
                        times.setdefault((pe, length, version), []).extend(timed(trees[version], pe, length, args))
    print(f"CPU training step, reverse_string, batch {args.batch}, {args.threads} thread(s), d_model 64; "
          f"median of {args.rounds} x {args.repeats} steps per cell; base {args.base}")
    print(f"{'pe':8s} {'N':>3s} {'base ms':>9s} {'current ms':>11s} {'speed-up':>9s}")
    for pe in args.pes.split(","):
        for length in map(int, args.lengths.split(",")):
            base = statistics.median(times[(pe, length, "base")])
            current = statistics.median(times[(pe, length, "current")])
            print(f"{pe:8s} {length:3d} {1000 * base:9.1f} {1000 * current:11.1f} {base / current:8.2f}x")


if __name__ == "__main__":
    main()
