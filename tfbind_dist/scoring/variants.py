"""`tfbind variants`: variant-effect scoring on the scoring service.

VCF + indexed FASTA -> variant shards in OUT/_shards (`data.variants.shard_variants`: the ref and
alt windows of every ALT allele) -> `service.score_shards` with the variant outputs, into OUT.
One pipeline: the same actors, markers, resume and object-storage support as `tfbind score`.
A re-run reuses finished shards of the same VCF and scores only what is missing.

OUT reads as one dataset (`pyarrow.parquet.read_table(OUT)`); variants that could not be
scored are in OUT/errors/_input.parquet with a reason.
"""
from __future__ import annotations

import json
from pathlib import Path

from tfbind_dist.data.shard import SHARD_MANIFEST
from tfbind_dist.data.variants import shard_variants
from tfbind_dist.errors import ConfigError, DataError
from tfbind_dist.rundir import expand_runs
from tfbind_dist.scoring.service import ScoreSummary, runs_length, score_shards
from tfbind_dist.storage import as_path

SHARDS = "_shards"
ATTRIBUTIONS = {"none": (), "ism_center": ("ism_center",), "grad": ("grad_center",)}


def _reuse_shards(shard_dir, vcf: Path) -> bool:
    """Whether OUT/_shards already holds the finished shards of this VCF (a re-run); refuse another VCF's."""
    manifest_path = shard_dir / SHARD_MANIFEST
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("source") != str(vcf) or manifest.get("vcf_size") != vcf.stat().st_size:
        raise DataError(f"{shard_dir.parent} holds the variants of {manifest.get('source')}; use another --out")
    return True


def score_variants(vcf, fasta, runs: list[str], out_dir, *, attribution: str = "none", address: str = "local",
                   actors: int = 1, cpus_per_actor: float = 0.5, gpus_per_actor: float = 0.0, batch_size: int = 512,
                   rows_per_shard: int = 100_000, on_mismatch: str = "error", chrom_map: str = "none",
                   progress: bool = True) -> tuple[int, ScoreSummary]:
    """Score every ALT allele of `vcf` with every run; (variants sent to errors, the scoring summary)."""
    if attribution not in ATTRIBUTIONS:
        raise ConfigError(f"--attribution must be one of {', '.join(ATTRIBUTIONS)}")
    runs = expand_runs(runs)
    window = runs_length(runs)  # before anything is written
    vcf, out_dir = Path(vcf).absolute(), as_path(out_dir)
    shard_dir = out_dir / SHARDS
    errors = 0
    if _reuse_shards(shard_dir, vcf):
        errors = json.loads((shard_dir / SHARD_MANIFEST).read_text()).get("errors", 0)
        print(f"variants: reusing the shards of {vcf.name} in {shard_dir}", flush=True)
    else:
        made = shard_variants(vcf, fasta, shard_dir, window=window, rows_per_shard=rows_per_shard,
                              chrom_map=chrom_map, on_mismatch=on_mismatch, errors_dir=out_dir / "errors",
                              progress=progress)
        errors = made.errors
        print(f"variants: {made.rows:,} alleles to score in {made.shards} shards; {made.errors:,} not scorable "
              f"(reasons in {out_dir / 'errors' / '_input.parquet'})", flush=True)
    outputs = ("variant_effect", *ATTRIBUTIONS[attribution])
    summary = score_shards(runs, shard_dir, out_dir, outputs, address=address, actors=actors,
                           cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                           on_bad_rows="fail", progress=progress)
    return errors, summary
