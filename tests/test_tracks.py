"""Genome tracks: BED/narrowPeak regions in, bigWigs and a predicted-site BED out, on the real E. coli genome."""
import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import tfbind_dist as tb
from conftest import SHARED_DATA, cli_fails, run_cli
from tfbind_dist.data.encoding import decode, one_hot, reverse_complement

W = 200


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """Two contigs of the real E. coli genome (the second with a run of N), as a FASTA; their sequences."""
    with gzip.open(SHARED_DATA / "ecoli_genome" / "MG1655-K12.fasta.gz", "rt") as handle:
        handle.readline()
        sequence = "".join(handle.readline().strip() for _ in range(700))  # 42 kb
    contigs = {"chrA": sequence[:14000], "chrB": sequence[14000:20000] + "N" * 300 + sequence[20000:26000]}
    path = tmp_path_factory.mktemp("genome") / "ecoli.fa"
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    return path, contigs


def _bigwig_values(path, chrom, size):
    """Per-base values of a bigWig read by both readers (pyBigWig, pybigtools); NaN where empty."""
    import pybigtools
    import pyBigWig

    first = np.array(pyBigWig.open(str(path)).values(chrom, 0, size), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = np.asarray(pybigtools.open(str(path)).values(chrom, 0, size), dtype=np.float64)
    np.testing.assert_array_equal(np.isnan(first), np.isnan(second))
    np.testing.assert_allclose(first[~np.isnan(first)], second[~np.isnan(second)], rtol=1e-6)
    return first


def _expected(rows, values, size, rule):
    """Per-base value by the combining rule, computed window by window from the scores (NaN where uncovered)."""
    nearest, best = np.full(size, np.nan), np.full(size, np.inf)
    sums, counts = np.zeros(size), np.zeros(size)
    for start, value in zip(rows.start, values):
        positions = np.arange(start, start + W)
        inside = (positions >= 0) & (positions < size)
        positions, per_base = positions[inside], np.broadcast_to(value, W)[inside]
        distance = np.abs(positions + 0.5 - (start + W / 2))
        closer = distance < best[positions]  # ties stay with the earlier window
        nearest[positions[closer]], best[positions[closer]] = per_base[closer], distance[closer]
        sums[positions] += per_base
        counts[positions] += 1
    return nearest if rule == "center" else np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@pytest.mark.parametrize("stride, outputs", [pytest.param(50, "prob,logit,ism_summary", marks=pytest.mark.slow),
                                             (200, "prob,logit,grad_corrected")])
def test_tracks_hold_for_every_base_what_the_rule_gives(ctcf_run, genome, tmp_path, stride, outputs):
    fasta, contigs = genome
    tb.shard(fasta, tmp_path / "shards", window=W, stride=stride, rows_per_shard=150)
    tb.score([ctcf_run], tmp_path / "shards", tmp_path / "scores", outputs, address="inline", progress=False)
    scores = pd.read_parquet(tmp_path / "scores").sort_values("id", ignore_index=True)
    shards = pd.read_parquet(tmp_path / "shards").set_index("id").loc[scores.id]
    per_base = {"ism": lambda r: np.stack(r.CTCF_ism_importance.to_numpy()).astype(np.float32),
                "grad_corrected": lambda r: (np.stack(r.CTCF_grad_corrected.to_numpy()).reshape(len(r), W, 4) *
                                             one_hot(np.stack(shards.loc[r.id].codes.map(
                                                 lambda b: np.frombuffer(b, np.uint8)).to_numpy()), "zeros")
                                             ).sum(-1)}
    for rule in ("center", "mean"):
        out = tmp_path / f"tracks_{rule}"
        summary = tb.tracks(tmp_path / "scores", out, combine=rule, progress=False)
        written = json.loads((out / "tracks.json").read_text())
        assert written["combine"] == rule and written["windows"] == len(scores) == summary.windows
        for chrom, sequence in contigs.items():
            rows = scores[scores.chrom == chrom]
            checks = {"prob": rows.CTCF_prob.to_numpy(), "logit": rows.CTCF_logit.to_numpy()}
            name = "ism" if "ism_summary" in outputs else "grad_corrected"
            checks[name] = per_base[name](rows)
            for track, values in checks.items():
                got = _bigwig_values(out / f"CTCF.{track}.bw", chrom, len(sequence))
                want = _expected(rows, values, len(sequence), rule)
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{rule} {track} {chrom}")
                np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-5, atol=1e-6,
                                           err_msg=f"{rule} {track} {chrom}")
            if chrom == "chrB":  # the N run: no window covers it, and it stays empty
                assert np.isnan(got[6000:6300]).all() and not np.isnan(got[5999]) and not np.isnan(got[6400])
    import pyBigWig
    import pysam

    pysam.faidx(str(fasta))
    index = {line.split("\t")[0]: int(line.split("\t")[1]) for line in open(f"{fasta}.fai").read().splitlines()}
    assert dict(pyBigWig.open(str(tmp_path / "tracks_center" / "CTCF.prob.bw")).chroms()) == index
    assert index == {c: len(s) for c, s in contigs.items()}
    sites = pd.read_csv(tmp_path / "tracks_center" / "CTCF.sites.bed", sep="\t", header=None)
    _assert_sites(sites, scores, {c: len(s) for c, s in contigs.items()}, 0.5)


def _assert_sites(sites, scores, sizes, threshold):
    """The predicted sites are the windows at or above the threshold, merged where they touch, inside the genome."""
    expected = []
    for chrom, rows in scores[scores.CTCF_prob >= threshold].groupby("chrom", sort=False):
        for start, prob in zip(rows.start, rows.CTCF_prob):
            start, end = max(start, 0), min(start + W, sizes[chrom])
            if expected and expected[-1][0] == chrom and start <= expected[-1][2]:
                expected[-1][2], expected[-1][3] = max(expected[-1][2], end), max(expected[-1][3], prob)
            else:
                expected.append([chrom, start, end, prob])
    assert len(sites) == len(expected) > 0
    assert [tuple(r[:3]) for r in expected] == [tuple(r) for r in sites[[0, 1, 2]].itertuples(index=False)]
    assert list(sites[4]) == [round(1000 * r[3]) for r in expected]
    assert ((sites[1] >= 0) & (sites[2] <= sites[0].map(sizes)) & (sites[6] >= sites[1]) & (sites[7] <= sites[2])).all()


def _bed(path, lines):
    path.write_text("".join("\t".join(map(str, line)) + "\n" for line in lines))
    return path


def test_regions_become_windows_of_the_genome(ctcf_run, genome, tmp_path):
    fasta, contigs = genome
    size_a, size_b = len(contigs["chrA"]), len(contigs["chrB"])
    peaks = [  # chrom, start, end, name, score, strand, signal, p, q, summit (narrowPeak)
        ("chrB", 1000, 1500, "peakB1", 0, "-", 5.0, -1, -1, 120),
        ("chrA", 5000, 5100, "peakA2", 0, "+", 5.0, -1, -1, -1),     # no summit: the midpoint
        ("chrA", 20, 80, "near_start", 0, "-", 5.0, -1, -1, 10),      # runs off the start: padded
        ("chrA", size_a - 90, size_a - 10, "near_end", 0, "+", 5.0, -1, -1, 40),
        ("chrA", 300, 700, "peakA1", 0, ".", 5.0, -1, -1, 250),
        ("chrC", 100, 200, "no_contig", 0, "+", 5.0, -1, -1, 50),    # a contig the FASTA lacks: dropped, counted
    ]
    narrow = _bed(tmp_path / "peaks.narrowPeak", peaks)
    summary = tb.shard(narrow, tmp_path / "shards", fasta=fasta, window=W, rows_per_shard=2)
    assert (summary.rows, summary.dropped) == (5, 1)
    table = pd.read_parquet(tmp_path / "shards")
    assert list(table.name) == ["near_start", "peakA1", "peakA2", "near_end", "peakB1"]  # genome order
    assert list(table.id) == list(range(5)) and sorted(table.line) == [1, 2, 3, 4, 5]
    for row in table.itertuples():
        peak = peaks[row.line - 1]
        centre = peak[1] + (peak[9] if peak[9] >= 0 else (peak[2] - peak[1]) // 2)
        assert (row.chrom, row.start, row.end, row.region_start, row.region_end) == (peak[0], centre - W // 2,
                                                                                     centre + W // 2, peak[1], peak[2])
        sequence = contigs[row.chrom]
        window = "".join(sequence[p] if 0 <= p < len(sequence) else "N" for p in range(row.start, row.end))
        codes = np.frombuffer(row.codes, np.uint8)
        got = decode(reverse_complement(codes) if row.strand == "-" else codes)[0]
        assert got == window and row.off_end == (row.start < 0 or row.end > len(sequence)), row.name
    dropped = pd.read_parquet(tmp_path / "shards" / "_dropped.parquet")
    assert list(dropped.name) == ["no_contig"] and dropped.reason[0] == "contig not in the FASTA"
    midpoint = tb.shard(narrow, tmp_path / "mid", fasta=fasta, window=W, center="midpoint", off_end="drop")
    assert (midpoint.rows, midpoint.dropped) == (3, 3)  # both ends' windows run off now, and chrC
    mid = pd.read_parquet(tmp_path / "mid").set_index("name")
    assert mid.loc["peakB1", "start"] == 1000 + 250 - W // 2

    # scored and made into tracks: a `-` strand window's per-base values land in the genome's orientation
    tb.score([ctcf_run], tmp_path / "shards", tmp_path / "scores", "prob,grad_corrected", address="inline",
             progress=False)
    scores = pd.read_parquet(tmp_path / "scores").set_index("name")
    assert {"region_start", "region_end", "strand", "off_end", "line"} <= set(scores.columns)
    tb.tracks(tmp_path / "scores", tmp_path / "tracks", progress=False)
    peak = scores.loc["peakB1"]
    observed = (np.asarray(peak.CTCF_grad_corrected).reshape(W, 4) *
                one_hot(np.frombuffer(table.set_index("name").loc["peakB1", "codes"], np.uint8), "zeros")).sum(-1)
    got = _bigwig_values(tmp_path / "tracks" / "CTCF.grad_corrected.bw", "chrB", size_b)[peak.start:peak.end]
    np.testing.assert_allclose(got, observed[::-1], rtol=1e-5, atol=1e-7)
    near_start = _bigwig_values(tmp_path / "tracks" / "CTCF.prob.bw", "chrA", size_a)
    assert not np.isnan(near_start[0]) and len(near_start) == size_a  # the padded window's bases in the contig


def test_region_mistakes_are_one_line(genome, tmp_path, capsys):
    fasta, _ = genome
    bad = _bed(tmp_path / "bad.bed", [("chrA", 10, 100, "a"), ("chrA", "ten", 200, "b")])
    proc = run_cli("data", "shard", bad, "--fasta", fasta, "--out", tmp_path / "s")  # once as a user meets it
    assert proc.returncode == 2 and f"{bad} line 2: column 2 (start) is 'ten', expected an integer" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s" / "_SHARDS.json").exists()
    renamed = _bed(tmp_path / "ucsc.bed", [("A", 10, 100, "a"), ("chrA", 500, 900, "b")])
    line = cli_fails(capsys, "data", "shard", renamed, "--fasta", fasta, "--out", tmp_path / "s")
    assert "chromosome names differ between the regions of" in line
    assert "('A') and the FASTA ('chrA')" in line and "--chrom-map auto" in line
    run_cli("data", "shard", renamed, "--fasta", fasta, "--out", tmp_path / "s", "--chrom-map", "auto", "--quiet",
            check=True)
    assert sorted(pd.read_parquet(tmp_path / "s").chrom) == ["chrA", "chrA"]
    assert "pass --fasta GENOME.fa" in cli_fails(capsys, "data", "shard", renamed, "--out", tmp_path / "t")
    short = _bed(tmp_path / "short.narrowPeak", [("chrA", 10, 100, "a", 0, "+")])
    line = cli_fails(capsys, "data", "shard", short, "--fasta", fasta, "--out", tmp_path / "u")
    assert "line 1: 6 column(s); a narrowPeak line has 10" in line


def _planted_genome(tmp_path, count=200, spacing=1500):
    """The E. coli sequence with `count` CTCF instances sampled from its JASPAR matrix, one every `spacing` bp."""
    from tfbind_dist.data.jaspar import tf_probabilities

    with gzip.open(SHARED_DATA / "ecoli_genome" / "MG1655-K12.fasta.gz", "rt") as handle:
        handle.readline()
        sequence = list("".join(handle.readline().strip() for _ in range(count * spacing // 60 + 10)))
    probs = tf_probabilities("CTCF")
    rng = np.random.default_rng(7)
    planted = []
    for k in range(count):
        start = k * spacing + 150 + int(rng.integers(0, 80))
        site = "".join(rng.choice(list("ACGT"), p=p) for p in probs)
        sequence[start:start + len(site)] = site
        planted.append((start, start + len(site)))
    path = tmp_path / "planted.fa"
    path.write_text(">planted\n" + "".join(sequence[:count * spacing + 200]) + "\n")
    return path, planted, count * spacing + 200


@pytest.mark.slow
def test_predicted_sites_find_planted_ctcf_sites(ctcf_motif_run, tmp_path, capsys):
    fasta, planted, size = _planted_genome(tmp_path)
    tb.shard(fasta, tmp_path / "shards", window=W, stride=50)
    tb.score([ctcf_motif_run], tmp_path / "shards", tmp_path / "scores", "prob", address="inline", progress=False)
    tb.tracks(tmp_path / "scores", tmp_path / "tracks", progress=False, plot="planted:1-2,000")
    sites = pd.read_csv(tmp_path / "tracks" / "CTCF.sites.bed", sep="\t", header=None, names=[
        "chrom", "start", "end", "name", "score", "strand", "summit", "summit_end"])
    assert ((sites.start >= 0) & (sites.end <= size) & (sites.start < sites.end)).all()
    recall = np.mean([((sites.start < e) & (sites.end > s)).any() for s, e in planted])
    precision = np.mean([any(s < e2 and e > s2 for s2, e2 in planted) for s, e in zip(sites.start, sites.end)])
    covered = sum(e - s for s, e in zip(sites.start, sites.end)) / size
    with capsys.disabled():
        print(f"\npredicted sites at threshold 0.5: recall {recall:.3f} of {len(planted)} planted CTCF sites, "
              f"precision {precision:.3f} of {len(sites)} sites, covering {covered:.1%} of the sequence")
    # far above chance: a site anywhere would fall in the predicted intervals about as often as they cover
    assert recall >= 0.65 and precision >= 0.6 and recall > 2 * covered
    assert (tmp_path / "tracks" / "locus_planted_1_2000.png").stat().st_size > 10_000
    scores = pq.read_table(tmp_path / "scores").to_pandas().sort_values("id")
    _assert_sites(sites.rename(columns=dict(zip(sites.columns, range(8)))), scores, {"planted": size}, 0.5)
