"""`tfbind variants` on the real E. coli genome: windows, errors with reasons, the scoring service, kill + re-run."""
import gzip
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SHARED_DATA, run_cli
from tfbind_dist.errors import DataError
from tfbind_dist.data.variants import shard_variants, variant_centre

GENOME = SHARED_DATA / "ecoli_genome" / "MG1655-K12.fasta.gz"
CHROM = "K-12-MG1655"
L = 200


@pytest.fixture(scope="module")
def genome():
    with gzip.open(GENOME, "rt") as handle:
        return "".join(line.strip() for line in handle if not line.startswith(">"))


def _other(base, k=1):
    return "ACGT"[("ACGT".index(base) + k) % 4]


def _special_variants(g):
    """(chrom, pos, id, ref, alt, expected outcome): every case the issue names."""
    n = len(g)
    return [
        (CHROM, 1000, "snv", g[999], _other(g[999]), "scored"),
        (CHROM, 5000, "multi", g[4999], f"{_other(g[4999])},{_other(g[4999], 2)}", "scored"),
        (CHROM, 10000, "del", g[9999:10003], g[9999], "scored"),
        (CHROM, 20000, "ins", g[19999], g[19999] + "ACGT", "scored"),
        (CHROM, 30000, "bad_ref", _other(g[29999]), g[29999], "REF"),
        (CHROM, 1, "first_base", g[0], _other(g[0]), "scored"),
        (CHROM, n, "last_base", g[n - 1], _other(g[n - 1]), "scored"),
        ("plasmid_F", 100, "absent", "A", "C", "chromosome"),
        (CHROM, 40000, "symbolic", g[39999], "<DEL>", "symbolic"),
        (CHROM, 50000, "breakend", g[49999], f"{g[49999]}]{CHROM}:500]", "breakend"),
        (CHROM, 60000, "no_alt", g[59999], ".", "missing ALT"),
    ]


def _write_vcf(path, rows, contigs):
    lines = ["##fileformat=VCFv4.2", *[f"##contig=<ID={c},length={n}>" for c, n in contigs.items()],
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"{c}\t{p}\t{i}\t{r}\t{a}\t.\tPASS\t." for c, p, i, r, a, *_ in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _codes(text):
    return np.frombuffer(text.translate(str.maketrans("ACGTN", "\0\1\2\3\4")).encode(), np.uint8)


def test_ref_and_alt_windows_and_every_unscorable_variant_with_its_reason(genome, tmp_path):
    rows = _special_variants(genome)
    vcf = _write_vcf(tmp_path / "v.vcf", rows, {CHROM: len(genome), "plasmid_F": 1000})
    made = shard_variants(vcf, GENOME, tmp_path / "shards", window=L, errors_dir=tmp_path / "errors")
    shards = pq.read_table(tmp_path / "shards" / "part-00000.parquet").to_pylist()
    errors = pq.read_table(tmp_path / "errors" / "_input.parquet").to_pylist()
    assert (made.rows, made.errors) == (7, 5) and len(shards) + len(errors) == 12  # 11 records, 12 ALT alleles
    for (_, pos, vid, *_, outcome) in rows:
        if outcome != "scored":
            reason = next(e["reason"] for e in errors if e["id"] == vid)
            assert outcome in reason, (vid, reason)
    assert next(e for e in errors if e["id"] == "bad_ref")["reason"] == (
        f"REF {_other(genome[29999])} does not match the FASTA ({genome[29999]}) at {CHROM}:30000")

    by_id = {}
    for row in shards:
        by_id.setdefault(row["vcf_id"], []).append(row)
    c = variant_centre(L)
    snv = by_id["snv"][0]
    ref, alt = np.frombuffer(snv["codes"], np.uint8), np.frombuffer(snv["alt_codes"], np.uint8)
    assert np.array_equal(ref, _codes(genome[999 - c:999 - c + L])) and ref[c] == _codes(genome[999])[0]
    assert np.flatnonzero(ref != alt).tolist() == [c] and not snv["off_end"]
    assert [r["alt"] for r in by_id["multi"]] == [_other(genome[4999]), _other(genome[4999], 2)]
    deletion = np.frombuffer(by_id["del"][0]["alt_codes"], np.uint8)  # left flank kept, right flank shifted
    assert np.array_equal(deletion, _codes(genome[9999 - c:9999] + genome[9999] + genome[10003:10003 + L - c - 1]))
    insertion = np.frombuffer(by_id["ins"][0]["alt_codes"], np.uint8)
    assert np.array_equal(insertion, _codes(genome[19999 - c:19999] + genome[19999] + "ACGT"
                                            + genome[20000:20000 + L - c - 5]))
    first, last = by_id["first_base"][0], by_id["last_base"][0]
    assert first["off_end"] and last["off_end"]
    assert np.array_equal(np.frombuffer(first["codes"], np.uint8)[:c], np.full(c, 4))  # N before the start
    assert np.array_equal(np.frombuffer(last["codes"], np.uint8)[c + 1:], np.full(L - c - 1, 4))  # N after the end


def test_chromosome_naming_mismatch_is_one_clear_error_or_mapped_on_request(genome, tmp_path):
    rows = [("chr" + CHROM, 1000, "snv", genome[999], _other(genome[999]))]
    vcf = _write_vcf(tmp_path / "chr.vcf", rows, {"chr" + CHROM: len(genome)})
    with pytest.raises(DataError, match=rf"'chr{CHROM}'.*'{CHROM}'.*--chrom-map auto"):
        shard_variants(vcf, GENOME, tmp_path / "refused", window=L)
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").glob("part-*"))
    made = shard_variants(vcf, GENOME, tmp_path / "mapped", window=L, chrom_map="auto")
    assert made.rows == 1 and made.errors == 0


def test_a_ref_mismatch_stops_the_run_with_on_mismatch_fail(genome, tmp_path):
    rows = [(CHROM, 1000, "ok", genome[999], _other(genome[999])),
            (CHROM, 30000, "bad", _other(genome[29999]), genome[29999])]
    vcf = _write_vcf(tmp_path / "v.vcf", rows, {CHROM: len(genome)})
    with pytest.raises(DataError, match=f"REF {_other(genome[29999])} does not match the FASTA"):
        shard_variants(vcf, GENOME, tmp_path / "shards", window=L, on_mismatch="fail", rows_per_shard=1)
    assert not list((tmp_path / "shards").glob("part-*.parquet"))  # nothing half-written


@pytest.mark.slow
def test_variants_on_the_scoring_service_every_variant_once_equal_to_ism_and_resumed(genome, small_run, ray_cluster,
                                                                                     tmp_path):
    """E. coli VCF on the two-node cluster: each allele once in the output or the errors file; delta_prob of
    every SNV equals ISM at the centre; a killed run re-run gives the same rows."""
    from test_scoring import _kill_after

    from tfbind_dist.interpret import explain
    from tfbind_dist.training.restore import load_model

    rng = np.random.default_rng(0)
    rows = _special_variants(genome)
    for pos in sorted(rng.choice(np.arange(200, len(genome) - 200), 400, replace=False) + 1):
        rows.append((CHROM, int(pos), f"r{pos}", genome[pos - 1], _other(genome[pos - 1], int(rng.integers(1, 4)))))
    vcf = _write_vcf(tmp_path / "ecoli.vcf", rows, {CHROM: len(genome), "plasmid_F": 1000})
    out = tmp_path / "out"
    args = ["variants", "--vcf", vcf, "--fasta", GENOME, "--runs", small_run, "--out", out, "--attribution",
            "ism_center", "--rows-per-shard", "20", "--batch-size", "32", "--address", ray_cluster, "--quiet"]
    done = _kill_after(args, out, 3, 21)
    rerun = run_cli(*args, env_extra={"XLA_FLAGS": ""}, check=True, timeout=900)
    assert "reusing the shards" in rerun.stdout
    already = int(re.search(r"(\d+) already done", rerun.stdout).group(1))
    assert len(done) <= already < 21

    scores = pq.read_table(out).to_pandas()  # OUT reads as one dataset
    errors = pq.read_table(out / "errors" / "_input.parquet").to_pandas()
    alleles = {(c, p, i, a) for c, p, i, _, alts, *_ in rows for a in alts.split(",")}
    seen = list(zip(scores.chrom, scores.pos, scores.id, scores.alt)) + list(zip(errors.chrom, errors.pos, errors.id,
                                                                                errors.alt))
    assert len(seen) == len(set(seen)) == len(alleles) and set(seen) == alleles  # every allele exactly once
    assert sorted(scores.variant) == list(range(len(scores)))

    snvs = scores[(scores.ref.str.len() == 1) & (scores.alt.str.len() == 1) & ~scores.off_end]
    c = variant_centre(L)
    windows = np.stack([_codes(genome[p - 1 - c:p - 1 - c + L]) for p in snvs.pos])
    model = load_model(small_run)
    ism = explain(model.module, model.variables, windows, ["ism"])["ism"][:, c]  # (N, 4) at the variant
    expected = ism[np.arange(len(snvs)), ["ACGT".index(a) for a in snvs.alt]]
    np.testing.assert_allclose(snvs.CTCF_delta_prob, expected, atol=1e-5)
    np.testing.assert_allclose(np.stack(snvs.CTCF_ism_center), ism, atol=1e-5)
    np.testing.assert_allclose(snvs.CTCF_ref_prob + snvs.CTCF_delta_prob, snvs.CTCF_alt_prob, atol=1e-6)


def test_a_malformed_vcf_record_is_one_error_naming_the_file_and_the_last_good_record(genome, tmp_path):
    vcf = _write_vcf(tmp_path / "bad.vcf", [(CHROM, 1000, "ok", genome[999], _other(genome[999])),
                                            (CHROM, "notanumber", "bad", "A", "C")], {CHROM: len(genome)})
    with pytest.raises(DataError, match=f"bad.vcf: malformed record after {CHROM}:1000"):
        shard_variants(vcf, GENOME, tmp_path / "shards", window=L, rows_per_shard=1)
    assert not list((tmp_path / "shards").glob("part-*.parquet"))
