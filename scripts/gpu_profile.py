"""Where a training step's GPU time goes, and what TF32 matmuls, bf16 autocast and the attention
path change.

    python scripts/gpu_profile.py --d-model 64 --pack 9 --pes none,dape-kerple-log [--attention fused,flex,explicit]
        [--dape-impls fast,triton]

For each PE and attention path: the step time of a pack (eager and CUDA-graph-captured) with
float32 matmuls, TF32 matmuls and bf16 autocast, and (with --kernels N) the N CUDA kernels that take
the most time in an eager float32 step.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils import benchmark as torch_benchmark

from che.config import make_config
from che.registry import TASKS
from che.runners.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pes", default="none,dape-kerple-log")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--pack", type=int, default=9)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--kernels", type=int, default=0)
    parser.add_argument("--attention", default="fused")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--dape-impls", default="fast", help="DAPE's forms to time: fast, literal, triton")
    args = parser.parse_args()
    task = TASKS.get("reverse_string")
    device = torch.device("cuda")
    one = task.sample(128, args.length, torch.Generator().manual_seed(0))
    impls = args.dape_impls.split(",")
    for pe, attention, impl in [(p, a, i) for p in args.pes.split(",") for a in args.attention.split(",")
                                for i in (impls if p.startswith("dape") else impls[:1])]:
        for pack in sorted({1, args.pack}):
            batch = tuple(torch.stack([getattr(one, n)] * pack) for n in ("inputs", "targets", "mask"))
            precisions = {"fp32": (False, False), "tf32": (True, False), "bf16": (True, True)}
            for label in args.precisions.split(","):
                tf32, bf16 = precisions[label]
                for graphs in (False, True):
                    configs = [make_config("reverse_string", pe, "paper", seed=s, d_model=args.d_model, bf16=bf16,
                                           tf32=tf32, cuda_graphs=graphs, attention=attention, dape_impl=impl)
                               for s in range(pack)]
                    trainer = Trainer(configs, task, device)
                    try:
                        for _ in range(3):
                            trainer.step(batch)
                    except Exception as exc:  # report and go on with the next configuration
                        print(f"{pe} pack {pack} {label} graphs={graphs}: {type(exc).__name__}: {exc}", flush=True)
                        continue
                    timer = torch_benchmark.Timer("trainer.step(batch)", globals={"trainer": trainer, "batch": batch},
                                                  num_threads=torch.get_num_threads())
                    ms = timer.blocked_autorange(min_run_time=1.0).median * 1000
                    print(f"{pe:16s} {attention:8s} {impl:6s} d{args.d_model} pack {pack} {label} {'graphs' if graphs else 'eager ':6s}: "
                          f"{ms:7.2f} ms/step, {pack * 1000 / ms:7.1f} run-steps/s", flush=True)
                    if args.kernels and label == "fp32" and not graphs:
                        with profile(activities=[ProfilerActivity.CUDA]) as prof:
                            for _ in range(3):
                                trainer.step(batch)
                            torch.cuda.synchronize()
                        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.kernels,
                                                        max_name_column_width=70), flush=True)
                    del trainer
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
