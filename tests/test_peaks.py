"""Training sets from peak calls and a genome (`tfbind data peaks`), on the real yeast genome with real Reb1
ChIP-exo sites (../shared/data/yeast_R64)."""
import gzip
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

import tfbind_dist as tb
from conftest import SHARED_DATA, cli_fails, run_cli
from tfbind_dist.data.encoding import encode
from tfbind_dist.data.peaks import auto_splits
from tfbind_dist.data.shuffle import dinucleotide_shuffle

YEAST = SHARED_DATA / "yeast_R64"
GENOME, REB1 = YEAST / "sacCer3_R64.fa.gz", YEAST / "Reb1_ChIPexo_sacCer3.bed"
pytestmark = pytest.mark.skipif(not REB1.exists(), reason="needs ../shared/data/yeast_R64")


@pytest.fixture(scope="module")
def genome():
    """The yeast chromosomes as strings."""
    contigs, name = {}, None
    with gzip.open(GENOME, "rt") as handle:
        for line in handle:
            if line.startswith(">"):
                name = line[1:].split()[0]
                contigs[name] = []
            else:
                contigs[name].append(line.strip())
    return {name: "".join(parts) for name, parts in contigs.items()}


@pytest.fixture(scope="module")
def reb1(tmp_path_factory):
    """Reb1 sites + genome -> a training set with 10-bp flanks, half a shuffled negative per positive, a
    100-bp margin and an exclusion region; (the summary, its folder)."""
    out = tmp_path_factory.mktemp("peaks") / "reb1"
    exclude = tmp_path_factory.mktemp("exclude") / "blacklist.bed"
    exclude.write_text("chrII\t100000\t150000\n")
    built = tb.dataset_from_peaks(REB1, GENOME, out, flank=10, shuffled_ratio=0.5, margin=100, exclude=exclude,
                                  progress=False)
    return built, out, exclude


def _split(out, split):
    return pd.read_parquet(out / f"Reb1_{split}.parquet")


def test_no_held_out_chromosome_base_reaches_training(reb1, genome):
    built, out, _ = reb1
    chroms = built.chroms
    assert chroms == {"train": [c for c in genome if c not in ("chrIV", "chrXV")], "valid": ["chrXV"],
                      "test": ["chrIV"]}  # about 10% of the sites each (220 and 172 of 1,773)
    assert not (set(chroms["train"]) & set(chroms["valid"]) | set(chroms["train"]) & set(chroms["test"]))
    for split in ("train", "valid", "test"):
        table = _split(out, split)
        assert set(table.chrom) <= set(chroms[split]), split  # every window, positive or negative, by coordinates
        assert (table.start - 10 >= 0).all() and (table.end + 10 <= table.chrom.map(lambda c: len(genome[c]))).all()
        for row in table[table.source.isin(["background"]) | (table.label == 1)].sample(40, random_state=0).itertuples():
            assert row.sequence == genome[row.chrom][row.start - 10: row.end + 10], row  # the stored window, flanks too


def test_positives_are_the_sites_and_negatives_keep_away(reb1):
    built, out, exclude = reb1
    sites = pd.read_csv(REB1, sep="\t", header=None, names=["chrom", "start", "end", "distance"])
    (reb1_set,) = built.tfs
    assert reb1_set.peaks == len(sites) == 1773 and reb1_set.merged > 0
    tables = pd.concat([_split(out, s) for s in ("train", "valid", "test")])
    positives, negatives = tables[tables.label == 1], tables[tables.source == "background"]
    kept = {(r.chrom, r.start + 100) for r in positives.itertuples()}  # each positive is centred on a site
    assert kept <= {(r.chrom, r.start) for r in sites.itertuples()}
    assert len(positives) + reb1_set.merged + sum(reb1_set.dropped.values()) == len(sites)
    for chrom, rows in negatives.groupby("chrom"):  # background: never within the margin of any site
        centres = np.sort(sites[sites.chrom == chrom].start.to_numpy())
        # a site s blocks [s - 100 - margin, s + 100 + margin); the stored window [start - 10, end + 10) keeps out
        lo, hi = rows.start.to_numpy() - 10 - 200, rows.end.to_numpy() + 10 + 200
        assert (np.searchsorted(centres, hi, "left") == np.searchsorted(centres, lo, "right")).all(), chrom
    on_chr2 = negatives[negatives.chrom == "chrII"]
    assert not ((on_chr2.end + 10 > 100000) & (on_chr2.start - 10 < 150000)).any()  # the exclusion BED
    shuffled = tables[tables.source.str.startswith("shuffled:")]
    assert len(shuffled) == sum(r["shuffled"] for r in reb1_set.rows.values()) > 0 and (shuffled.label == 0).all()


def test_background_gc_matches_the_positives_in_every_split(reb1):
    built, out, _ = reb1
    (reb1_set,) = built.tfs
    for split in ("train", "valid", "test"):
        table = _split(out, split)
        pos, neg = table[table.label == 1].gc, table[table.source == "background"].gc
        assert len(neg) == len(pos)  # one background window per positive
        assert abs(pos.mean() - neg.mean()) < 0.005 and abs(pos.std() - neg.std()) < 0.01, split
        summary = reb1_set.gc[split]
        assert summary["ks_distance"] < 0.1 and summary["positive_mean"] == pytest.approx(pos.mean())
        codes = encode(list(table.sequence.str[10:-10]))  # gc is the centred window's
        np.testing.assert_allclose(table.gc, ((codes == 1) | (codes == 2)).mean(1), atol=1e-6)
    manifest = json.loads((out / "_PEAKS.json").read_text())
    assert manifest["settings"]["margin"] == 100 and manifest["settings"]["flank"] == 10
    assert manifest["tfs"][0]["rows"] == reb1_set.rows


def test_same_build_is_a_no_op_and_other_settings_are_refused(reb1, tmp_path, capsys):
    built, out, exclude = reb1
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = tb.dataset_from_peaks(REB1, GENOME, out, flank=10, shuffled_ratio=0.5, margin=100, exclude=exclude,
                                  progress=False)
    assert again == built and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    line = cli_fails(capsys, "data", "peaks", REB1, "--fasta", GENOME, "--out", out, "--quiet")
    assert "built with other settings (exclude, flank, margin, shuffled_ratio)" in line
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_peak_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "o"
    base = ["data", "peaks", "--fasta", GENOME, "--out", out, "--quiet"]

    def fails(name, text, *extra):
        path = tmp_path / name
        path.write_text(text)
        line = cli_fails(capsys, *base[:2], path, *base[2:], *extra)
        assert not out.exists(), f"{name} left {out}"
        return line

    assert "Reb1_bad.bed line 2: column 2 (start) is 'ten', expected an integer" in fails(
        "Reb1_bad.bed", "chrI\t100\t100\nchrI\tten\t20\n")
    assert "Reb1_back.bed line 1: start 500 and end 20: need 0 <= start <= end" in fails(
        "Reb1_back.bed", "chrI\t500\t20\n")
    assert "Reb1_empty.bed: no regions (no data lines)" in fails("Reb1_empty.bed", "")
    line = fails("Reb1_lacks.bed", "chrI\t1000\t1000\nchrXVII\t5000\t5000\n")
    assert "1 peaks lie on contigs the FASTA does not have (chrXVII)" in line and "the FASTA has chrI, chrII" in line
    line = fails("Reb1_renamed.bed", "chr4\t1000\t1000\nchr4\t5000\t5000\n")
    assert "2 peaks lie on contigs the FASTA does not have (chr4)" in line and "chr4 -> chrIV" in line
    everything = tmp_path / "everything.bed"
    everything.write_text("chrIV\t0\t2000000\n")
    line = cli_fails(capsys, *base[:2], REB1, *base[2:], "--exclude", everything)
    assert "no background window left on the test chromosomes (chrIV)" in line and str(everything) in line
    line = cli_fails(capsys, *base[:2], REB1, *base[2:], "--valid-chroms", "chrI,chrII", "--test-chroms", "chrII")
    assert "chrII in both valid_chroms and test_chroms" in line
    line = cli_fails(capsys, *base[:2], REB1, *base[2:], "--test-chroms", "chr9")
    assert "test_chroms: 'chr9' is not a contig of the FASTA" in line
    bad = tmp_path / "odd name.bed"
    bad.write_text("chrI\t10\t20\n")
    assert "cannot tell the TF from the file name; pass --tf" in cli_fails(capsys, *base[:2], bad, *base[2:])
    assert not out.exists()


def test_planted_sites_in_a_real_genome_region_come_back_as_its_slices(tmp_path, genome):
    """REB1 consensus sites planted into real yeast sequence, given as point peaks: every positive window is the
    genome slice centred on its site, the site at the centre."""
    rng = np.random.default_rng(5)
    contigs = {name: list(genome["chrIV"][i * 60_000: (i + 1) * 60_000]) for i, name in enumerate(["a", "b", "c"])}
    planted = []
    for name, bases in contigs.items():
        for centre in rng.choice(np.arange(300, 59_700, 400), 40, replace=False):
            bases[centre - 4: centre + 4] = "TTACCCGG"
            planted.append((name, int(centre)))
    fasta = tmp_path / "planted.fa"
    fasta.write_text("".join(f">{n}\n{''.join(b)}\n" for n, b in contigs.items()))
    peaks = tmp_path / "Reb1.bed"
    peaks.write_text("".join(f"{n}\t{c}\t{c}\n" for n, c in planted))
    built = tb.dataset_from_peaks(peaks, fasta, tmp_path / "out", valid_chroms=["b"], test_chroms=["c"], progress=False)
    assert {s: r["positive"] for s, r in built.tfs[0].rows.items()} == {"train": 40, "valid": 40, "test": 40}
    text = {n: "".join(b) for n, b in contigs.items()}
    for split in ("train", "valid", "test"):
        table = pd.read_parquet(tmp_path / "out" / f"Reb1_{split}.parquet")
        positives = table[table.label == 1]
        assert sorted(zip(positives.chrom, positives.start + 100)) == sorted(p for p in planted
                                                                             if p[0] == {"train": "a", "valid": "b",
                                                                                         "test": "c"}[split])
        for row in table.itertuples():
            assert row.sequence == text[row.chrom][row.start: row.end]
        assert (positives.sequence.str[96:104] == "TTACCCGG").all()


ENCODE = YEAST / "CTCF_K562_ENCSR000AKO_hg38.narrowPeak.gz"


def test_narrowpeak_windows_centre_on_the_summit_of_the_real_encode_peaks(tmp_path):
    """The 51,759 ENCODE CTCF IDR peaks: every window centred on start + column 10; those of chr21 built into a
    training set on a genome of chr21's length."""
    from tfbind_dist.data.peaks import _centres
    from tfbind_dist.data.regions import read_regions

    table = pd.read_csv(ENCODE, sep="\t", header=None)
    regions = read_regions(ENCODE)
    assert len(regions.line) == len(table) == 51_759
    np.testing.assert_array_equal(_centres(regions, "summit"), table[1] + table[9])
    chr21 = table[table[0] == "chr21"]
    small = pd.DataFrame([[c, 20_000 * k, 20_000 * k + 300, f"{c}_{k}", 0, ".", 1.0, -1, -1, 150]
                          for c in ("chrA", "chrB") for k in range(1, 5)])
    (tmp_path / "CTCF.narrowPeak").write_text(pd.concat([chr21, small]).to_csv(sep="\t", header=False, index=False))
    rng = np.random.default_rng(0)
    contigs = {"chr21": 46_709_983, "chrA": 100_000, "chrB": 100_000}  # chr21 at its hg38 length
    sequences = {c: rng.choice(np.frombuffer(b"ACGT", np.uint8), n).tobytes() for c, n in contigs.items()}
    (tmp_path / "genome.fa").write_bytes(b"".join(b">" + c.encode() + b"\n" + q + b"\n" for c, q in sequences.items()))
    built = tb.dataset_from_peaks(tmp_path / "CTCF.narrowPeak", tmp_path / "genome.fa", tmp_path / "out",
                                  valid_chroms=["chrA"], test_chroms=["chrB"], progress=False)
    (ctcf,) = built.tfs
    train = pd.read_parquet(tmp_path / "out" / "CTCF_train.parquet")
    positives = train[train.label == 1]
    summits = {(f"{c}:{a}-{b}", a + offset) for c, a, b, offset in zip(chr21[0], chr21[1], chr21[2], chr21[9])}
    assert len(positives) == ctcf.rows["train"]["positive"] == len(chr21) - ctcf.merged - sum(ctcf.dropped.values())
    assert {(name, start + 100) for name, start in zip(positives.source, positives.start)} <= summits
    for row in positives.sample(50, random_state=1).itertuples():
        assert row.sequence == sequences["chr21"][row.start: row.end].decode()


def test_chosen_chromosomes_and_several_tfs_with_one_multilabel_table(tmp_path, genome):
    """Two TFs in one call, each with its own background; the same chromosome splits for both."""
    sites = pd.read_csv(REB1, sep="\t", header=None)
    other = tmp_path / "peaks.narrowPeak"  # narrowPeak: the window centres on the summit (column 10)
    rows = sites.iloc[::7]
    other.write_text("".join(f"{c}\t{s - 50}\t{s + 50}\tp{i}\t0\t.\t1\t-1\t-1\t50\n"
                             for i, (c, s) in enumerate(zip(rows[0], rows[1])) if s >= 50))
    built = tb.dataset_from_peaks([REB1, other], GENOME, tmp_path / "two", tfs=["Reb1", "Other"], valid_chroms=["chrV"],
                                  test_chroms=["chrX", "chrXI"], negative_ratio=2.0, multilabel=True, progress=False)
    assert built.chroms["valid"] == ["chrV"] and built.chroms["test"] == ["chrX", "chrXI"]
    assert [d.tf for d in built.tfs] == ["Reb1", "Other"]
    for d in built.tfs:
        assert all(r["background"] == 2 * r["positive"] for r in d.rows.values()), d.rows
    positive_other = pd.read_parquet(tmp_path / "two" / "Other_train.parquet").query("label == 1")
    assert set(positive_other.source) <= {f"p{i}" for i in range(len(rows))}
    both = pd.read_parquet(tmp_path / "two" / "multilabel_test.parquet")
    assert {"Reb1", "Other"} <= set(both.columns) and not both.duplicated(["chrom", "start"]).any()
    reb1_test = pd.read_parquet(tmp_path / "two" / "Reb1_test.parquet")
    labelled = both.merge(reb1_test[["chrom", "start", "label"]], on=["chrom", "start"])
    assert (labelled.Reb1 >= labelled.label).all()  # every Reb1 positive is labelled Reb1 in the joint table
    assert set(both.chrom) <= {"chrX", "chrXI"}


def test_automatic_splits_hold_about_a_tenth_each():
    counts = {"a": 30, "b": 25, "c": 12, "d": 11, "e": 9, "f": 8, "g": 5}
    chosen = auto_splits(counts)
    assert chosen == auto_splits(dict(reversed(counts.items())))  # deterministic, whatever the order
    assert not set(chosen["test"]) & set(chosen["valid"])
    for split in ("test", "valid"):
        assert 0.07 <= sum(counts[c] for c in chosen[split]) / sum(counts.values()) <= 0.13, chosen


def test_dinucleotide_shuffle_keeps_every_dinucleotide_count():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seq = rng.integers(0, 4, 120).astype(np.uint8)
        (shuffled,) = dinucleotide_shuffle(seq, 1, rng)
        pairs = lambda s: Counter(zip(s[:-1].tolist(), s[1:].tolist()))  # noqa: E731
        assert pairs(shuffled) == pairs(seq) and shuffled[0] == seq[0] and shuffled[-1] == seq[-1]
    assert not np.array_equal(dinucleotide_shuffle(seq, 1, rng)[0], seq)


def test_the_cli_builds_what_train_reads(tmp_path, synth_dir):
    out = tmp_path / "reb1"
    proc = run_cli("data", "peaks", REB1, "--fasta", GENOME, "--out", out, "--quiet", check=True)
    assert "Reb1: 1,773 peaks" in proc.stdout and f"tfbind train --data {out} --tf Reb1" in proc.stdout
    summary = tb.train(tb.recipe("chapter", tf="Reb1", path=str(out), steps=10, eval_every=10), tmp_path / "run",
                       progress=False)
    assert summary["status"] == "finished" and 0 <= summary["test_auroc"] <= 1


def test_flanks_give_training_shifts_of_real_bases_and_evaluation_the_centred_window(reb1, tmp_path):
    import jax

    from tfbind_dist.data.encoding import decode
    from tfbind_dist.training.augment import strand_and_shift

    _, out, _ = reb1
    stored = encode(list(_split(out, "valid").sequence[:64]))  # 220 bp: the 200-bp window and 10 bp each side
    shifted = np.asarray(strand_and_shift(stored, jax.random.PRNGKey(0), rc=False, jitter=6, flank=10))
    offsets = [next(o for o in range(21) if np.array_equal(s, row[o: o + 200])) for s, row in zip(shifted, stored)]
    assert shifted.shape == (64, 200) and set(offsets) <= set(range(4, 17)) and len(set(offsets)) > 3
    centred = np.asarray(strand_and_shift(stored, jax.random.PRNGKey(0), rc=False, jitter=0, flank=10))
    np.testing.assert_array_equal(centred, stored[:, 10:210])
    config = tb.recipe("default", tf="Reb1", path=str(out), steps=10, eval_every=10, **{"data.flank": 10,
                                                                                       "train.jitter": 10})
    summary = tb.train(config, tmp_path / "run", progress=False)
    model = tb.load_model(tmp_path / "run")
    assert model.length == 200 and summary["status"] == "finished"
    valid = tb.choose_sequences(model, split="valid", index="0:4")
    assert [s for s in valid.sequences] == [s[10:210] for s in _split(out, "valid").sequence[:4]]
    assert decode(stored[:1])[0][10:210] == valid.sequences[0]
    with pytest.raises(tb.ConfigError, match=r"train.jitter must be at most data.flank \(10\)"):
        tb.train(tb.recipe("default", tf="Reb1", path=str(out), **{"data.flank": 10, "train.jitter": 11}),
                 tmp_path / "other", progress=False)
