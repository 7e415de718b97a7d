"""Variant-effect scoring: whole `tfbind variants` runs on a synthetic VCF over the real E. coli genome.

Run: .venv/bin/python benchmarks/bench_variants.py [--variants 1000000 --short 100000] [--run RUN]

Writes VCFs of --variants and --short variants (SNVs at random positions, 5% short indels) over
E. coli K-12 MG1655, runs `tfbind variants` on each as a user would (a private local Ray,
sharding the VCF against the indexed FASTA, scoring ref and alt windows), and prints variants/s of
the whole command next to the bare in-process forward pass on the same model (2 forwards per
variant, same batch size), and the peak private memory (USS, driver + every Ray process) of the two
runs: it should not grow with the VCF.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_scoring import PeakMemory
from tfbind_dist import config as C
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.restore import load_model

REPO = Path(__file__).resolve().parents[1]
GENOME = REPO.parent / "shared" / "data" / "ecoli_genome" / "MG1655-K12.fasta.gz"
CHROM = "K-12-MG1655"


def write_vcf(path: Path, genome: str, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(np.arange(1, len(genome) - 10), n, replace=False))
    shift = rng.integers(1, 4, n)
    indel = rng.random(n) < 0.05
    with open(path, "w") as out:
        out.write(f"##fileformat=VCFv4.2\n##contig=<ID={CHROM},length={len(genome)}>\n"
                  "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for pos, k, is_indel in zip(positions.tolist(), shift.tolist(), indel.tolist()):
            ref = genome[pos - 1]
            if is_indel:
                ref, alt = (genome[pos - 1:pos + 2], ref) if k == 1 else (ref, ref + "ACG"[:k - 1])
            else:
                alt = "ACGT"[("ACGT".index(ref) + k) % 4]
            out.write(f"{CHROM}\t{pos}\tv{pos}\t{ref}\t{alt}\t.\tPASS\t.\n")


def run_variants(vcf: Path, run: Path, out: Path, batch_size: int) -> tuple[float, int, str]:
    cmd = [sys.executable, "-m", "tfbind_dist.cli", "variants", "--vcf", str(vcf), "--fasta", str(GENOME), "--runs",
           str(run), "--out", str(out), "--batch-size", str(batch_size), "--actors", "1", "--cpus-per-actor", "1",
           "--quiet"]
    with PeakMemory(driver="tfbind_dist.cli variants") as memory:
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": ""})
        seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return seconds, memory.peak, [x for x in proc.stdout.splitlines() if x.startswith("scored")][-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, default=1_000_000)
    parser.add_argument("--short", type=int, default=100_000)
    parser.add_argument("--run", help="a trained run (default: the default recipe, trained briefly here)")
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    with gzip.open(GENOME, "rt") as handle:
        genome = "".join(line.strip() for line in handle if not line.startswith(">"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("TFBIND_CACHE", str(tmp / "cache"))
        run = Path(args.run) if args.run else tmp / "run"
        if not args.run:
            cfg = C.with_overrides(C.load_recipe("default"), {"data.tf": "CTCF", "train.steps": 20,
                                                              "train.eval_every": 20})
            train_and_evaluate(cfg, run, progress=False)
        results = {}
        for n in (args.short, args.variants):
            write_vcf(tmp / f"{n}.vcf", genome, n)
            results[n] = run_variants(tmp / f"{n}.vcf", run, tmp / f"out-{n}", args.batch_size)
            print(results[n][2], flush=True)
        model = load_model(run)
        codes = np.random.default_rng(1).integers(0, 4, size=(65_536, model.length), dtype=np.uint8)
        predict(model.module, model.variables, codes[:args.batch_size]).block_until_ready()
        started = time.perf_counter()
        for i in range(0, len(codes), args.batch_size):
            np.asarray(predict(model.module, model.variables, codes[i:i + args.batch_size]))
        bare = len(codes) / (time.perf_counter() - started) / 2  # two forwards per variant
    print(f"\nmodel {model.config.model.name}; bare in-process forward: {bare * 2:,.0f} windows/s = {bare:,.0f} "
          "variants/s (ref + alt)")
    print(f"{'variants':>10s} {'seconds':>8s} {'variants/s':>11s} {'÷ bare':>7s} {'peak GB':>8s}")
    for n, (seconds, peak, _) in results.items():
        print(f"{n:10,d} {seconds:8.1f} {n / seconds:11,.0f} {n / seconds / bare:7.1%} {peak / 1e9:8.2f}")
    (s_short, _, _), (s_long, _, _) = results[args.short], results[args.variants]
    marginal = (args.variants - args.short) / (s_long - s_short)
    print(f"marginal (start-up cancels): {marginal:,.0f} variants/s = {marginal / bare:.1%} of bare; whole commands: "
          "VCF sharding against the indexed FASTA, Ray start, model load, compilation, Parquet out")


if __name__ == "__main__":
    main()
