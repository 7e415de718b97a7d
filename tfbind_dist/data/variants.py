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

import gzip
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from tfbind_dist.data.encoding import encode_bytes
from tfbind_dist.errors import DataError
from tfbind_dist.data.readers import is_gzip
from tfbind_dist.data.shard import SHARD_MANIFEST, codes_column, prepare_out_dir
from tfbind_dist.data.sources import cache_root
from tfbind_dist.storage import AnyPath, as_path, atomic_output, write_table_atomic, write_text_atomic

MISMATCH_POLICIES = ("error", "fail")
CHROM_MAPS = ("none", "auto")
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


def open_fasta(path: str | Path):
    """An indexed `pysam.FastaFile`; the index is built when missing.

    A plain-gzip FASTA (not bgzip) cannot be indexed; it is decompressed once into the data cache
    ($TFBIND_CACHE/fasta, keyed by the file's size and modification time) and indexed there.
    """
    import pysam

    path = Path(path)
    if not path.exists():
        raise DataError(f"--fasta {path}: no such file")
    if is_gzip(path) and not _is_bgzip(path):
        path = _decompressed_copy(path)
    try:
        return pysam.FastaFile(str(path))
    except (OSError, ValueError) as err:
        raise DataError(f"--fasta {path}: cannot index ({err}); a FASTA, bgzip FASTA or gzip FASTA is needed") from None


def _is_bgzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        header = handle.read(18)
    return len(header) >= 16 and header[3] & 4 and header[12:14] == b"BC"  # BGZF extra field


def _decompressed_copy(path: Path) -> Path:
    stat = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "fasta" / f"{path.name.removesuffix('.gz')}.{key}.fa"
    if not target.exists():
        with atomic_output(target) as tmp, gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
    return target


def chrom_mapping(vcf_chroms: list[str], fasta_chroms: list[str], policy: str) -> dict[str, str]:
    """VCF contig -> FASTA contig. A `chr1` vs `1` naming mismatch is an error naming both styles unless
    `policy` is 'auto' (add or drop the `chr` prefix); contigs absent either way map to themselves
    (their variants are reported as errors)."""
    fasta = set(fasta_chroms)
    mapping, renamed = {}, {}
    for chrom in vcf_chroms:
        other = chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"
        if chrom not in fasta and other in fasta:
            renamed[chrom] = other
        mapping[chrom] = chrom
    if renamed and policy != "auto":
        example = next(iter(renamed.items()))
        raise DataError(f"chromosome names differ between the VCF ({example[0]!r}) and the FASTA ({example[1]!r}) "
                        f"for {len(renamed)} contig(s); pass --chrom-map auto to add/drop the 'chr' prefix")
    mapping.update(renamed)
    return mapping


def _window(fasta, chrom: str, start: int, length: int, chrom_len: int) -> tuple[str, bool]:
    """Genome bases [start, start + length) of `chrom`, padded with N past either end; whether it was padded."""
    lo, hi = max(start, 0), min(start + length, chrom_len)
    bases = fasta.fetch(chrom, lo, hi) if hi > lo else ""
    return "N" * (lo - start) + bases.upper() + "N" * (start + length - max(hi, lo)), start < 0 or start + length > chrom_len


def _alleles(record) -> list[tuple[str | None, str | None]]:
    """(alt, reason it cannot be scored) per ALT allele of a record."""
    if not record.alts:
        return [(".", "missing ALT ('.')")]
    out = []
    for alt in record.alts:
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


def _records(reader, vcf: Path):
    """The VCF's records; a malformed one is a DataError naming the file and the last good record."""
    last = "its header"
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except (OSError, ValueError) as err:
            raise DataError(f"--vcf {vcf}: malformed record after {last} ({err})") from None
        last = f"{record.chrom}:{record.pos}"
        yield record


class _Buffers:
    """Rows and error rows collected until a shard is full."""

    def __init__(self, out_dir, window: int, rows_per_shard: int):
        self.out_dir, self.window, self.rows_per_shard = out_dir, window, rows_per_shard
        self.rows: list[tuple] = []
        self.errors: list[tuple] = []
        self.shards: list[dict] = []
        self.written = 0

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) == self.rows_per_shard:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        n = len(self.rows)
        chrom, pos, vcf_id, ref, alt, off_end, ref_windows, alt_windows = zip(*self.rows)
        encode = lambda windows: codes_column(encode_bytes(  # noqa: E731
            np.frombuffer("".join(windows).encode("ascii"), np.uint8).reshape(n, self.window)))
        table = pa.table({"id": pa.array(np.arange(self.written, self.written + n), pa.int64()),
                          "codes": encode(ref_windows), "alt_codes": encode(alt_windows), "chrom": list(chrom),
                          "pos": pa.array(pos, pa.int64()), "vcf_id": list(vcf_id), "ref": list(ref),
                          "alt": list(alt), "off_end": list(off_end)})
        name = f"part-{len(self.shards):05d}.parquet"
        write_table_atomic(table, self.out_dir / name)
        self.shards.append({"file": name, "rows": n, "first_id": self.written})
        self.written += n
        self.rows = []


def shard_variants(vcf: str | Path, fasta: str | Path, out_dir, *, window: int, rows_per_shard: int = 100_000,
                   chrom_map: str = "none", on_mismatch: str = "error", errors_dir=None,
                   progress: bool = False) -> VariantShards:
    """Stream a VCF into variant shards under `out_dir` (then `_SHARDS.json`); errors to `errors_dir`.

    `on_mismatch`: a REF allele that differs from the FASTA is reported per variant ('error') or
    stops the run ('fail', nothing written).
    """
    import pysam
    from tqdm.auto import tqdm

    if on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(f"--on-mismatch must be one of {MISMATCH_POLICIES}")
    if chrom_map not in CHROM_MAPS:
        raise ValueError(f"--chrom-map must be one of {CHROM_MAPS}")
    vcf = Path(vcf)
    if not vcf.exists():
        raise DataError(f"--vcf {vcf}: no such file")
    genome = open_fasta(fasta)
    lengths = dict(zip(genome.references, genome.lengths))
    try:
        reader = pysam.VariantFile(str(vcf))
    except (OSError, ValueError) as err:
        raise DataError(f"--vcf {vcf}: not a readable VCF ({err})") from None
    out_dir = as_path(out_dir)
    prepare_out_dir(out_dir)  # orphaned parts of a killed run are removed; another run's shards refused
    errors_dir = as_path(errors_dir) if errors_dir is not None else out_dir / "errors"
    buffers = _Buffers(out_dir, window, rows_per_shard)
    mapping: dict[str, str] = {}
    centre = variant_centre(window)
    bar = tqdm(unit="variant", desc="variants", disable=not progress, dynamic_ncols=True)
    try:
        for record in _records(reader, vcf):
            bar.update(1)
            if record.chrom not in mapping:
                mapping.update(chrom_mapping([record.chrom], list(lengths), chrom_map))
            chrom = mapping[record.chrom]
            ref = (record.ref or "").upper()
            base = (record.chrom, record.pos, record.id or ".", ref)
            alleles = _alleles(record)
            reason = None
            if chrom not in lengths:
                reason = f"chromosome {record.chrom!r} is not in the FASTA"
            elif not _BASES.match(ref):
                reason = f"REF {ref!r} is not a sequence of bases"
            elif record.pos < 1 or record.pos - 1 + len(ref) > lengths[chrom]:
                reason = f"position {record.pos} is outside {chrom} (length {lengths[chrom]:,})"
            else:
                genome_ref = genome.fetch(chrom, record.pos - 1, record.pos - 1 + len(ref)).upper()
                if genome_ref != ref:
                    reason = f"REF {ref} does not match the FASTA ({genome_ref}) at {chrom}:{record.pos}"
                    if on_mismatch == "fail":
                        raise DataError(f"{vcf}: {reason} (--on-mismatch error reports such variants instead)")
            if reason:
                buffers.errors += [(*base, alt, reason) for alt, _ in alleles]
                continue
            start = record.pos - 1 - centre
            ref_window, off_end = _window(genome, chrom, start, window, lengths[chrom])
            for alt, allele_reason in alleles:
                if allele_reason:
                    buffers.errors.append((*base, alt, allele_reason))
                    continue
                after = record.pos - 1 + len(ref)  # the right flank, shifted by the length change
                needed = max(0, window - centre - len(alt))
                flank, _ = _window(genome, chrom, after, needed, lengths[chrom])
                alt_window = (ref_window[:centre] + alt + flank)[:window]
                buffers.add((*base, alt, off_end or after + needed > lengths[chrom], ref_window, alt_window))
        buffers.flush()
        columns = list(zip(*buffers.errors)) or [[] for _ in ERROR_SCHEMA]
        write_table_atomic(pa.table({name: pa.array(list(values), kind) for (name, kind), values
                                     in zip(ERROR_SCHEMA, columns)}), errors_dir / INPUT_ERRORS)
        if not buffers.written:
            raise DataError(f"{vcf}: no variant could be scored ({len(buffers.errors)} reported in "
                            f"{errors_dir / INPUT_ERRORS})")
        write_text_atomic(out_dir / SHARD_MANIFEST, json.dumps({
            "window": window, "rows": buffers.written, "shards": buffers.shards, "source": str(vcf.absolute()),
            "vcf_size": vcf.stat().st_size,
            "fasta": str(fasta), "errors": len(buffers.errors), "kind": "variants"}, indent=1))
    except BaseException:
        for shard in buffers.shards:
            (out_dir / shard["file"]).unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        reader.close()
    return VariantShards(buffers.written, len(buffers.shards), len(buffers.errors), out_dir)
