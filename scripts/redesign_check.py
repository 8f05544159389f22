"""Does a change to che's structure change a number? Trains a small grid, packed and solo, and
compares every run's identity and numbers, bit for bit, with a digest made by an earlier commit.

    python scripts/redesign_check.py make results/redesign/before.json    # with the code before
    python scripts/redesign_check.py check results/redesign/before.json   # with the code after

The grid: 3 tasks (one per Chomsky level) x 4 PEs (none, alibi, rand-rope, dape-kerple-log: the
fused, randomized and explicit attention paths) x 2 seeds, at the smoke preset with 40 steps, trained
once as packs (the 2 seeds of a cell together) and once run by run. `--grid zoo` trains the same
3 tasks x 2 seeds for every family of the zoo in both directions (ZOO_PES): the check to run when a
change touches every PE. Every run uses one torch thread, so that the digest does not depend on the
machine. The digest holds, per run and
way: its run id, final loss, training curve and accuracy at every length, and the revision that made
it. `check` exits 1 if any run id or number differs (or a run is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"  # before torch loads: the digest must not depend on the machine

import che  # noqa: E402
from che.results import git_revision  # noqa: E402

TASKS = ["parity_check", "reverse_string", "duplicate_string"]
PES = ["none", "alibi", "rand-rope", "dape-kerple-log"]
SEEDS = [0, 1]
SETTINGS = dict(steps=40, checkpoint_every=20)
# Every family of the zoo, each modifier, and the causal form of each that has one.
ZOO_PES = ["none", "sin-cos", "learned", "rope", "p-rope", "relative", "t5", "alibi", "kerple-log",
           "kerple-power-sym", "sandwich", "fire", "cope", "rand-alibi", "rand-relative", "dape-kerple-log",
           "dape2-alibi", "stick-breaking", "fox", "ssmax-alibi", "bipe-alibi", "bipe-rope",
           "none+causal", "sin-cos+causal", "learned+causal", "rope+causal", "p-rope+causal",
           "relative+causal", "t5+causal", "alibi+causal", "kerple-log+causal", "sandwich+causal",
           "fire+causal", "cope+causal", "dape-alibi+causal", "stick-breaking+causal", "fox+causal",
           "ssmax-alibi+causal", "bipe-alibi+causal", "bipe-rope+causal"]
GRIDS = {"small": PES, "zoo": ZOO_PES}


def digest(folder: Path, pes: list[str]) -> dict:
    """{"packed"|"solo": {task/pe/run_id: the run's numbers}} of a grid trained into `folder`."""
    out = {}
    for way in ("packed", "solo"):
        runs = {}
        for task in TASKS:
            for pe in pes:
                seed_groups = [SEEDS] if way == "packed" else [[seed] for seed in SEEDS]
                for seeds in seed_groups:
                    outcomes = che.run(task, pe, "smoke", seeds=seeds, results=folder / way, device="cpu",
                                       **SETTINGS)
                    for outcome in outcomes if isinstance(outcomes, list) else [outcomes]:
                        record = outcome.record
                        runs[f"{task}/{pe}/{record['run_id']}"] = {
                            "final_loss": record["final_loss"], "train_curve": record["train_curve"],
                            "accuracy_by_length": record["accuracy_by_length"]}
        out[way] = runs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["make", "check"])
    parser.add_argument("digest", type=Path)
    parser.add_argument("--grid", choices=sorted(GRIDS), default=None,
                        help="make: small (default) or zoo; check: the digest's own grid")
    args = parser.parse_args()
    before = json.loads(args.digest.read_text()) if args.action == "check" else None
    pes = GRIDS[args.grid or "small"] if before is None else before["grid"]["pes"]
    with tempfile.TemporaryDirectory() as tmp:
        now = digest(Path(tmp), pes)
    if args.action == "make":
        args.digest.parent.mkdir(parents=True, exist_ok=True)
        args.digest.write_text(json.dumps({"git": git_revision(), "grid": {"tasks": TASKS, "pes": pes, "seeds": SEEDS,
                                           "preset": "smoke", **SETTINGS}, "runs": now}, indent=1) + "\n")
        print(f"wrote {args.digest}: {sum(len(v) for v in now.values())} runs")
        return
    differences = []
    for way, runs in before["runs"].items():
        for key, numbers in runs.items():
            if key not in now[way]:
                differences.append(f"{way} {key}: missing now (another run id?)")
            elif now[way][key] != numbers:
                fields = [f for f in numbers if numbers[f] != now[way][key][f]]
                differences.append(f"{way} {key}: {', '.join(fields)} differ")
        differences += [f"{way} {key}: new" for key in now[way] if key not in runs]
    total = sum(len(v) for v in before["runs"].values())
    print(f"{total} runs of {before['git'].get('revision')} against this code ({git_revision().get('revision')}): "
          f"{total - len(differences)} bit-identical, {len(differences)} different")
    renamed = sorted({line.split()[1].rsplit("/", 1)[0].split("/", 1)[1] for line in differences if "run id" in line})
    if renamed:  # a PE whose identity changed on purpose (its version): its runs are missing, and new ones
        print(f"  with another run id now: {', '.join(renamed)}")
    for line in differences:
        if not (line.endswith("(another run id?)") or line.endswith(": new")):
            print("  " + line)
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
