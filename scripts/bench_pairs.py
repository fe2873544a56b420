#!/usr/bin/env python3
"""Alternating pairs of the model benches, ours then PyTorch's, and their medians and ranges.

  python3 scripts/bench_pairs.py [--pairs 5] [--compute f32|bf16] [--only forward,ft14,ft8,mlp]

Each pair runs one of our benches (target/release/examples/bench_forward or bench_train, built
by `make bench-pairs`) and then its PyTorch peer (scripts/bench_torch.py, 2 threads, bf16 as
autocast), back to back, so both see the same machine. Prints, per bench, every pair and then the
median and range of ours ÷ PyTorch and of our share of the f32 GEMM peak (measured in each of our
runs). Run it with nothing else on the machine.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys

EXAMPLES = "target/release/examples"

BENCHES = {
    "forward": (
        [f"{EXAMPLES}/bench_forward", "--size", "224", "--batch", "8", "--cut", "pooled"],
        ["extract", "--size", "224", "--cut", "pooled", "--batch", "8", "--images", "64"],
    ),
    "ft14": (
        [f"{EXAMPLES}/bench_train", "--head", "finetune", "--map", "14", "--steps", "5"],
        ["train", "--head", "finetune", "--map", "14", "--batch", "64", "--steps", "5"],
    ),
    "ft8": (
        [f"{EXAMPLES}/bench_train", "--head", "finetune", "--map", "8", "--steps", "10"],
        ["train", "--head", "finetune", "--map", "8", "--batch", "64", "--steps", "10"],
    ),
    "mlp": (
        [f"{EXAMPLES}/bench_train", "--head", "mlp", "--steps", "200"],
        ["train", "--head", "mlp", "--batch", "64", "--steps", "200"],
    ),
}


def ours(cmd, compute):
    """(rate, share of the f32 GEMM peak) of one of our runs."""
    out = subprocess.run(cmd + ["--compute", compute], check=True, capture_output=True, text=True).stdout
    if "bench_forward" in cmd[0]:
        rate = float(re.search(r"([\d.]+) img/s", out).group(1))
        share = float(re.search(r"= (\d+)% of the f32 GEMM peak", out).group(1)) / 100
        return rate, share
    result = json.loads(out.strip().splitlines()[-1])
    return result["samples_per_s"], result["share_of_peak"]


def theirs(args, compute):
    out = subprocess.run(
        [sys.executable, "scripts/bench_torch.py", "--compute", compute] + args,
        check=True, capture_output=True, text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result.get("img_per_s") or result["samples_per_s"]


def spread(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--compute", choices=["f32", "bf16"], default="f32")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ",".join(BENCHES))
    args = p.parse_args()
    for name in args.only.split(","):
        cmd, torch_args = BENCHES[name]
        ratios, shares = [], []
        for i in range(args.pairs):
            rate, share = ours(cmd, args.compute)
            peer = theirs(torch_args, args.compute)
            ratios.append(rate / peer)
            shares.append(share)
            print(f"{name} {args.compute} pair {i + 1}: ours {rate:.2f}, PyTorch {peer:.2f}, "
                  f"ratio {rate / peer:.2f}, {share:.0%} of the f32 GEMM peak", flush=True)
        print(f"{name} {args.compute}: ours / PyTorch {spread(ratios, lambda r: f'{r:.2f}x')}, "
              f"share of the f32 GEMM peak {spread(shares, lambda s: f'{s:.0%}')}", flush=True)


if __name__ == "__main__":
    main()
