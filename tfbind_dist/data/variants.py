"""Variants into scoring shards: a VCF and an indexed reference genome in, ref/alt windows out.

`shard_variants` streams the VCF (pysam/htslib: plain, gzip or bgzip VCF) and reads only each
variant's window from the FASTA by index (pysam.FastaFile: `.fai`, and `.gzi` for bgzip; built
when missing), so a human genome never has to fit in memory. Each ALT allele of a record becomes
one row: the reference window of the model's length centred on the variant (the variant's first
base at index L // 2) and the alternate window, as uint8 codes in `codes` and `alt_codes`, with
`chrom`, `pos` (1-based, as in the VCF), `vcf_id`, `ref`, `alt` and `off_end` (the window runs off
a chromosome end and is padded with N). The shards are the scoring service's input, so variants
are scored, resumed and written exactly like `tfbind score`.

Indels keep the window's start: bases left of the variant stay where they are, the ALT allele
replaces the REF bases, and the right flank shifts, cut or extended from the genome to length L.

Variants that cannot be scored are not scored and not dropped silently: they are written to
`errors/_input.parquet` with a reason (REF not matching the FASTA, chromosome absent, symbolic
or breakend ALT, missing ALT).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import pyarrow as pa

from tfbind_dist.data.encoding import encode_bytes
from tfbind_dist.data.genome import CHROM_MAPS, Genome, chrom_mapping
from tfbind_dist.data.shard import ShardWriter, codes_column, prepare_out_dir
from tfbind_dist.errors import DataError
from tfbind_dist.storage import AnyPath, as_path, write_table_atomic

MISMATCH_POLICIES = ("error", "fail")
INPUT_ERRORS = "_input.parquet"  # under errors/: the leading "_" keeps it out of `read_table(OUT)`
_BASES = re.compile(r"^[ACGTNacgtn]+$")
ERROR_SCHEMA = (("chrom", pa.string()), ("pos", pa.int64()), ("id", pa.string()), ("ref", pa.string()),
                ("alt", pa.string()), ("reason", pa.string()))


def variant_centre(window: int) -> int:
    """Index of the variant's first base in its window (the window is centred on it)."""
    return window // 2


@dataclass(frozen=True)
class VariantShards:
    """What `shard_variants` wrote: scorable rows (one per ALT allele), shards, and rows sent to errors."""

    rows: int
    shards: int
    errors: int
    out_dir: AnyPath


class Variant(NamedTuple):
    """One variant record: 1-based `pos`, REF, and its ALT alleles (several for a multi-allelic record)."""

    chrom: str
    pos: int
    id: str
    ref: str
    alts: tuple[str, ...]


def _alleles(variant: Variant) -> list[tuple[str, str | None]]:
    """(alt, reason it cannot be scored) per ALT allele of a record."""
    if not variant.alts:
        return [(".", "missing ALT ('.')")]
    out = []
    for alt in variant.alts:
        if alt.startswith("<"):
            out.append((alt, f"symbolic ALT {alt}"))
        elif "[" in alt or "]" in alt or alt.startswith(".") or alt.endswith("."):
            out.append((alt, f"breakend ALT {alt}"))
        elif alt == "*":
            out.append((alt, "ALT '*' (an overlapping deletion)"))
        elif not _BASES.match(alt):
            out.append((alt, f"ALT {alt!r} is not a sequence of bases"))
        else:
            out.append((alt.upper(), None))
    return out


def read_vcf(vcf: Path) -> Iterator[Variant]:
    """The VCF's records (pysam: plain, gzip or bgzip VCF, streamed); a malformed one is a DataError
    naming the file and the last good record."""
    import pysam

    try:
        reader = pysam.VariantFile(str(vcf))
    except (OSError, ValueError) as err:
        raise DataError(f"--vcf {vcf}: not a readable VCF ({err})") from None
    last = "its header"
    try:
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except (OSError, ValueError) as err:
                raise DataError(f"--vcf {vcf}: malformed record after {last} ({err})") from None
            last = f"{record.chrom}:{record.pos}"
            yield Variant(record.chrom, record.pos, record.id or ".", (record.ref or "").upper(),
                          tuple(record.alts or ()))
    finally:
        reader.close()


VARIANT_FIELDS = ("chrom", "pos", "ref", "alt")


def variants_from_table(variants) -> list[Variant]:
    """Variants given in memory: a DataFrame (or a list of mappings, or of (chrom, pos, ref, alt[, id]) tuples)
    with `chrom`, `pos` (1-based, as in a VCF), `ref`, `alt` (several ALTs comma-separated) and optional `id`."""
    import pandas as pd

    if not isinstance(variants, pd.DataFrame):
        rows = list(variants)
        if rows and not isinstance(rows[0], dict):
            rows = [dict(zip((*VARIANT_FIELDS, "id"), row)) for row in rows]
        variants = pd.DataFrame(rows)
    missing = [c for c in VARIANT_FIELDS if c not in variants.columns]
    if missing:
        raise DataError(f"variants: missing column(s) {missing}; found {list(variants.columns)}")
    out = []
    for i, row in enumerate(variants.itertuples(index=False)):
        try:
            pos = int(row.pos)
        except (TypeError, ValueError):
            raise DataError(f"variants row {i}: field 'pos' is {row.pos!r}, expected a 1-based position") from None
        alt = "" if row.alt is None else str(row.alt)
        out.append(Variant(str(row.chrom), pos, str(getattr(row, "id", None) or "."), str(row.ref).upper(),
                           tuple(a for a in alt.split(",") if a and a != ".")))
    return out


class VariantWindows:
    """Reference and alternate windows of the models' length for each ALT allele of a variant, from an
    indexed genome; or why an allele cannot be scored."""

    def __init__(self, genome, window: int, *, chrom_map: str = "none", on_mismatch: str = "error",
                 source: str = "variants"):
        if on_mismatch not in MISMATCH_POLICIES:
            raise DataError(f"--on-mismatch must be one of {', '.join(MISMATCH_POLICIES)}")
        if chrom_map not in CHROM_MAPS:
            raise DataError(f"--chrom-map must be one of {', '.join(CHROM_MAPS)}")
        self.genome, self.window, self.chrom_map, self.on_mismatch = genome, window, chrom_map, on_mismatch
        self.source = source
        self.lengths = genome.sizes
        self.mapping: dict[str, str] = {}
        self.centre = variant_centre(window)

    def of(self, variant: Variant) -> tuple[list[tuple], list[tuple]]:
        """(rows, errors) of one variant: a row (chrom, pos, id, ref, alt, off_end, ref window, alt window) per
        scorable ALT allele, an error (chrom, pos, id, ref, alt, reason) per other."""
        if variant.chrom not in self.mapping:
            self.mapping.update(chrom_mapping([variant.chrom], list(self.lengths), self.chrom_map, "the VCF"))
        chrom, ref, lengths = self.mapping[variant.chrom], variant.ref, self.lengths
        base = (variant.chrom, variant.pos, variant.id, ref)
        alleles = _alleles(variant)
        reason = None
        if chrom not in lengths:
            reason = f"chromosome {variant.chrom!r} is not in the FASTA"
        elif not _BASES.match(ref):
            reason = f"REF {ref!r} is not a sequence of bases"
        elif variant.pos < 1 or variant.pos - 1 + len(ref) > lengths[chrom]:
            reason = f"position {variant.pos} is outside {chrom} (length {lengths[chrom]:,})"
        else:
            genome_ref = self.genome.fetch(chrom, variant.pos - 1, variant.pos - 1 + len(ref)).upper()
            if genome_ref != ref:
                reason = f"REF {ref} does not match the FASTA ({genome_ref}) at {chrom}:{variant.pos}"
                if self.on_mismatch == "fail":
                    raise DataError(f"{self.source}: {reason} (--on-mismatch error reports such variants instead)")
        if reason:
            return [], [(*base, alt, reason) for alt, _ in alleles]
        window, centre = self.window, self.centre
        ref_window, off_end = self.genome.window(chrom, variant.pos - 1 - centre, window)
        rows, errors = [], []
        for alt, allele_reason in alleles:
            if allele_reason:
                errors.append((*base, alt, allele_reason))
                continue
            after = variant.pos - 1 + len(ref)  # the right flank, shifted by the length change
            needed = max(0, window - centre - len(alt))
            flank, _ = self.genome.window(chrom, after, needed)
            alt_window = (ref_window[:centre] + alt + flank)[:window]
            rows.append((*base, alt, off_end or after + needed > lengths[chrom], ref_window, alt_window))
        return rows, errors


def variant_table(rows: list[tuple], window: int) -> tuple[np.ndarray, pa.Table]:
    """The reference windows' codes (N, L) and the rest of the variant shard columns of `rows`
    (`VariantWindows.of`): `alt_codes`, chrom, pos, vcf_id, ref, alt, off_end."""
    n = len(rows)
    chrom, pos, vcf_id, ref, alt, off_end, ref_windows, alt_windows = zip(*rows) if rows else ([],) * 8
    encode = lambda windows: encode_bytes(  # noqa: E731
        np.frombuffer("".join(windows).encode("ascii"), np.uint8).reshape(n, window))
    extra = pa.table({"alt_codes": codes_column(encode(alt_windows)) if n else pa.array([], pa.binary(window)),
                      "chrom": pa.array(list(chrom), pa.string()), "pos": pa.array(pos, pa.int64()),
                      "vcf_id": pa.array(list(vcf_id), pa.string()), "ref": pa.array(list(ref), pa.string()),
                      "alt": pa.array(list(alt), pa.string()), "off_end": pa.array(list(off_end), pa.bool_())})
    return (encode(ref_windows) if n else np.zeros((0, window), np.uint8)), extra


def errors_table(errors: list[tuple]) -> pa.Table:
    """Variants that cannot be scored: chrom, pos, id, ref, alt, reason."""
    columns = list(zip(*errors)) or [[] for _ in ERROR_SCHEMA]
    return pa.table({name: pa.array(list(values), kind) for (name, kind), values in zip(ERROR_SCHEMA, columns)})


ROWS_PER_BATCH = 4096  # variant rows encoded at a time on their way into shards


def shard_variants(vcf: str | Path, fasta: str | Path, out_dir, *, window: int, rows_per_shard: int = 100_000,
                   chrom_map: str = "none", on_mismatch: str = "error", errors_dir=None,
                   progress: bool = False) -> VariantShards:
    """Stream a VCF into variant shards under `out_dir` (then `_SHARDS.json`); errors to `errors_dir`.

    `on_mismatch`: a REF allele that differs from the FASTA is reported per variant ('error') or
    stops the run ('fail', nothing written).
    """
    from tqdm.auto import tqdm

    vcf = Path(vcf)
    if not vcf.exists():
        raise DataError(f"--vcf {vcf}: no such file")
    windows = VariantWindows(Genome.open(fasta), window, chrom_map=chrom_map, on_mismatch=on_mismatch,
                             source=str(vcf))
    out_dir = as_path(out_dir)
    prepare_out_dir(out_dir)  # orphaned parts of a killed run are removed; another run's shards refused
    errors_dir = as_path(errors_dir) if errors_dir is not None else out_dir / "errors"
    writer = ShardWriter(out_dir, window, rows_per_shard)
    rows, errors = [], []
    bar = tqdm(unit="variant", desc="variants", disable=not progress, dynamic_ncols=True)
    try:
        for variant in read_vcf(vcf):
            bar.update(1)
            made, failed = windows.of(variant)
            rows += made
            errors += failed
            if len(rows) >= ROWS_PER_BATCH:
                writer.add(*variant_table(rows, window))
                rows = []
        if rows:
            writer.add(*variant_table(rows, window))
        write_table_atomic(errors_table(errors), errors_dir / INPUT_ERRORS)
        if not writer.rows + writer.fill:
            raise DataError(f"{vcf}: no variant could be scored ({len(errors)} reported in "
                            f"{errors_dir / INPUT_ERRORS})")
        writer.finish(source=str(vcf.absolute()), vcf_size=vcf.stat().st_size, fasta=str(fasta), errors=len(errors),
                      kind="variants")
    except BaseException:
        writer.remove_written()
        raise
    finally:
        bar.close()
    return VariantShards(writer.rows, len(writer.shards), len(errors), out_dir)
