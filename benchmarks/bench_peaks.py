"""Build time and peak memory of `tfbind data peaks` (training sets from peak calls and a genome).

Three builds, each in a fresh process (its peak resident memory from getrusage):
  yeast   the real R64 genome (12.1 Mb) with the 1,773 real Reb1 ChIP-exo sites;
  small   the 51,759 real ENCODE CTCF IDR peaks (K562, hg38) of chr1, chr21 and chr22 on a synthetic
          genome of exactly those hg38 chromosome sizes (random bases; no human sequence is offline);
  large   the same with chr2 and chr3 added: 2.3x the genome, the same largest chromosome.
Memory is flat in the genome's size when `large` peaks where `small` does (one chromosome is held at a
time); time per Mb from `large` projects to the whole hg38 genome (3,088 Mb of chr1-22, X, Y).

    python benchmarks/bench_peaks.py [--work DIR]
"""
from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "yeast_R64"
HG38 = {"chr1": 248_956_422, "chr2": 242_193_529, "chr3": 198_295_559, "chr21": 46_709_983, "chr22": 50_818_468}
HG38_TOTAL_MB = 3088.3  # chr1-22, X, Y

BUILD = """
import json, resource, sys, time
from tfbind_dist.data.peaks import PeakSettings, build_peak_datasets
peaks, fasta, out, valid, test = sys.argv[1:6]
start = time.perf_counter()
built = build_peak_datasets([peaks], fasta, out, settings=PeakSettings(valid_chroms=(valid,), test_chroms=(test,)),
                            progress=False)
seconds = time.perf_counter() - start
rows = sum(sum(r.values()) for r in built.tfs[0].rows.values())
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": rows, "ks": max(g["ks_distance"] for g in built.tfs[0].gc.values())}))
"""


def build(peaks: Path, fasta: Path, out: Path, valid: str, test: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", BUILD, str(peaks), str(fasta), str(out), valid, test],
                          capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthetic_genome(path: Path, chroms: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", np.uint8)
    with open(path, "wb") as handle:
        for chrom in chroms:
            handle.write(f">{chrom}\n".encode())
            for start in range(0, HG38[chrom], 50_000_000):
                handle.write(rng.choice(bases, min(50_000_000, HG38[chrom] - start)).tobytes())
            handle.write(b"\n")


def encode_peaks(path: Path, chroms: list[str]) -> int:
    with gzip.open(DATA / "CTCF_K562_ENCSR000AKO_hg38.narrowPeak.gz", "rt") as src:
        lines = [line for line in src if line.split("\t", 1)[0] in chroms]
    path.write_text("".join(lines))
    return len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", help="scratch folder (default: a temp folder; the synthetic genomes take 0.8 GB)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-peaks-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"yeast": (12.07, 1773, build(DATA / "Reb1_ChIPexo_sacCer3.bed", DATA / "sacCer3_R64.fa.gz",
                                            work / "yeast", "chrXV", "chrIV"))}
    for name, chroms in (("small", ["chr1", "chr21", "chr22"]), ("large", ["chr1", "chr2", "chr3", "chr21", "chr22"])):
        fasta, peaks = work / f"{name}.fa", work / f"CTCF_{name}.narrowPeak"
        made = time.perf_counter()
        synthetic_genome(fasta, chroms)
        count = encode_peaks(peaks, chroms)
        print(f"({name}: wrote a {sum(HG38[c] for c in chroms) / 1e6:.0f}-Mb genome in "
              f"{time.perf_counter() - made:.0f} s)", file=sys.stderr)
        results[name] = (sum(HG38[c] for c in chroms) / 1e6, count, build(peaks, fasta, work / name, "chr21", "chr22"))
    print("| build | genome (Mb) | peaks | rows written | time (s) | s per 100 Mb | peak memory (MB) | max KS distance |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (mb, count, r) in results.items():
        print(f"| {name} | {mb:,.1f} | {count:,} | {r['rows']:,} | {r['seconds']:.1f} | {100 * r['seconds'] / mb:.2f} | "
              f"{r['peak_rss_mb']:,.0f} | {r['ks']:.3f} |")
    small, large = results["small"][2], results["large"][2]
    per_mb = large["seconds"] / results["large"][0]
    print(f"\npeak memory large / small: {large['peak_rss_mb'] / small['peak_rss_mb']:.2f} at "
          f"{results['large'][0] / results['small'][0]:.2f}x the genome (same largest chromosome, chr1)")
    print(f"projected to hg38 ({HG38_TOTAL_MB:,.0f} Mb) at the large build's rate: {per_mb * HG38_TOTAL_MB / 60:.1f} min, "
          f"peak memory that of its largest chromosome (chr1, as here)")


if __name__ == "__main__":
    main()
