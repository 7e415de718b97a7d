"""A reference genome read by index: the one owner of FASTA random access (variants, regions).

pysam's `FastaFile` (htslib faidx: `.fai`, and `.gzi` for bgzip) reads only the bases asked for,
so a human genome never has to fit in memory. A plain-gzip FASTA cannot be indexed: it is
decompressed once into the data cache ($TFBIND_CACHE/fasta, keyed by the file's size and
modification time) and indexed there.
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

from tfbind_dist.data.readers import is_gzip
from tfbind_dist.data.sources import cache_root
from tfbind_dist.errors import DataError
from tfbind_dist.storage import atomic_output

CHROM_MAPS = ("none", "auto")


class Genome:
    """An indexed FASTA: its contigs' sizes (in the index's order) and windows of it, N-padded past the ends."""

    def __init__(self, fasta, path: Path):
        self.fasta, self.path = fasta, path
        self.sizes: dict[str, int] = dict(zip(fasta.references, fasta.lengths))

    @classmethod
    def open(cls, path: str | Path) -> "Genome":
        """Open `path` (FASTA, bgzip FASTA, or gzip FASTA), building its index when missing."""
        import pysam

        path = Path(path)
        if not path.exists():
            raise DataError(f"--fasta {path}: no such file")
        indexed = _decompressed_copy(path) if is_gzip(path) and not _is_bgzip(path) else path
        try:
            return cls(pysam.FastaFile(str(indexed)), path)
        except (OSError, ValueError) as err:
            raise DataError(f"--fasta {path}: cannot index ({err}); a FASTA, bgzip FASTA or gzip FASTA is "
                            "needed") from None

    def fetch(self, chrom: str, start: int, end: int) -> str:
        return self.fasta.fetch(chrom, start, end)

    def window(self, chrom: str, start: int, length: int) -> tuple[str, bool]:
        """Bases [start, start + length) of `chrom`, upper case, padded with N past either end; whether padded."""
        size = self.sizes[chrom]
        lo, hi = max(start, 0), min(start + length, size)
        bases = self.fasta.fetch(chrom, lo, hi).upper() if hi > lo else ""
        padded = start < 0 or start + length > size
        return "N" * (lo - start) + bases + "N" * (start + length - max(hi, lo)), padded


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


def chrom_mapping(names: list[str], fasta_chroms: list[str], policy: str, source: str) -> dict[str, str]:
    """Contig names of an input (a VCF, a BED) -> FASTA contigs. A `chr1` vs `1` naming mismatch is one error
    naming both styles unless `policy` is 'auto' (add or drop the `chr` prefix); names absent either way
    map to themselves (the caller reports their rows)."""
    if policy not in CHROM_MAPS:
        raise DataError(f"--chrom-map must be one of {', '.join(CHROM_MAPS)}, got {policy!r}")
    fasta = set(fasta_chroms)
    mapping, renamed = {}, {}
    for chrom in names:
        other = chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"
        if chrom not in fasta and other in fasta:
            renamed[chrom] = other
        mapping[chrom] = chrom
    if renamed and policy != "auto":
        example = next(iter(renamed.items()))
        raise DataError(f"chromosome names differ between {source} ({example[0]!r}) and the FASTA ({example[1]!r}) "
                        f"for {len(renamed)} contig(s); pass --chrom-map auto to add/drop the 'chr' prefix")
    mapping.update(renamed)
    return mapping
