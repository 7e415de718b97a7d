"""Encoding throughput: the chapter's per-base dict vs tfbind_dist's byte lookup table.

Run: .venv/bin/python benchmarks/bench_encoding.py [--n 100000] [--length 200]
Prints seconds and the speed-up ratio of each method against the chapter's, measured in one run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from tfbind_dist.data.encoding import encode, one_hot
from tfbind_dist.data.io import encode_column


def chapter_dna_to_one_hot(dna_sequence: str) -> np.ndarray:
    """The chapter's approach: a dict lookup per base, one Python tuple per position."""
    base_to_one_hot = {"A": (1, 0, 0, 0), "C": (0, 1, 0, 0), "G": (0, 0, 1, 0), "T": (0, 0, 0, 1), "N": (1, 1, 1, 1)}
    return np.array([base_to_one_hot[base] for base in dna_sequence])


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    raw = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(args.n, args.length))]
    sequences = [row.tobytes().decode() for row in raw]
    column = pa.array(sequences, pa.string())

    chapter = best_of(lambda: np.array([chapter_dna_to_one_hot(s) for s in sequences]), 1)
    results = {
        "chapter per-base dict -> one-hot (int64)": chapter,
        "encode(list[str]) -> uint8 codes": best_of(lambda: encode(sequences), 5),
        "encode(list[str]) -> float32 one-hot on host": best_of(lambda: one_hot(encode(sequences)), 5),
        "encode_column(Arrow/Parquet column) -> uint8 codes": best_of(lambda: encode_column(column, source="bench"), 5),
    }
    print(f"{args.n:,} sequences x {args.length} bp")
    print(f"{'method':52s} {'seconds':>9s} {'seq/s':>12s} {'vs chapter':>11s}")
    for name, seconds in results.items():
        print(f"{name:52s} {seconds:9.3f} {args.n / seconds:12,.0f} {chapter / seconds:10.0f}x")


if __name__ == "__main__":
    main()
