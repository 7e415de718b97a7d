import itertools

import numpy as np
import pytest

from tfbind_dist.data.encoding import encode, reverse_complement
from tfbind_dist.data.jaspar import tf_probabilities as motif_probabilities
from tfbind_dist.interpret import motifs


def _random_probs(rng, width):
    return rng.dirichlet(np.full(4, 0.7), size=width) * 0.96 + 0.01


def _all_sequences(width):
    return np.array(list(itertools.product(range(4), repeat=width)), dtype=np.uint8)


def test_log_odds_values_and_validation():
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    lom = motifs.log_odds(probs)
    np.testing.assert_allclose(lom[0], np.log2([2.8, 0.4, 0.4, 0.4]))
    np.testing.assert_allclose(lom[1], 0.0)
    with pytest.raises(ValueError, match=r"shape \(W, 4\)"):
        motifs.log_odds(np.ones((3, 5)) / 5)
    with pytest.raises(ValueError, match="strictly positive"):
        motifs.log_odds(np.array([[1.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="summing to 1"):
        motifs.log_odds(probs, background=(0.5, 0.5, 0.5, 0.5))


def test_score_windows_matches_direct_sums_on_both_strands():
    rng = np.random.default_rng(0)
    lom = motifs.log_odds(_random_probs(rng, 6))
    codes = rng.integers(0, 4, size=(3, 20)).astype(np.uint8)
    codes[1, 7] = 4  # N
    scores = motifs.score_windows(codes, lom)
    assert scores.shape == (3, 15, 2)
    table = np.vstack([lom.T, np.zeros(6)])  # (5, W): N scores 0
    for n, i in itertools.product(range(3), range(15)):
        window = codes[n, i:i + 6]
        assert np.isclose(scores[n, i, 0], table[window, np.arange(6)].sum())
        assert np.isclose(scores[n, i, 1], table[reverse_complement(window), np.arange(6)].sum())
    with pytest.raises(ValueError, match="shorter than the motif"):
        motifs.score_windows(codes[:, :4], lom)


@pytest.mark.parametrize("background", [motifs.UNIFORM, (0.3, 0.2, 0.2, 0.3)])
def test_p_values_match_brute_force_enumeration(background):
    rng = np.random.default_rng(1)
    width, resolution = 5, 1000
    bg = np.asarray(background)
    lom = motifs.log_odds(_random_probs(rng, width), background)
    seqs = _all_sequences(width)
    all_scores = lom[np.arange(width), seqs].sum(axis=1)
    weights = bg[seqs].prod(axis=1)
    queries = np.concatenate([all_scores[rng.choice(len(seqs), 200)], [all_scores.max(), all_scores.min()]])
    p = motifs.score_p_values(lom, queries, background, resolution=resolution)
    tol = (width + 2) / (2 * resolution)  # matrix rounding plus query rounding
    upper = (weights * (all_scores[None] >= queries[:, None] - tol)).sum(axis=1)
    lower = (weights * (all_scores[None] >= queries[:, None] + tol)).sum(axis=1)
    assert np.all(p <= upper + 1e-12) and np.all(p >= lower - 1e-12)
    exact = (weights * (all_scores[None] >= queries[:, None])).sum(axis=1)
    assert np.abs(p - exact).max() < 0.02
    assert np.isclose(p[-2], weights[all_scores.argmax()])  # only the consensus reaches the maximum
    assert np.isclose(p[-1], 1.0)


def test_p_values_are_monotone_and_bounded():
    lom = motifs.log_odds(motif_probabilities("CTCF"))
    grid = np.linspace(lom.min(axis=1).sum() - 1, lom.max(axis=1).sum() + 1, 400)
    p = motifs.score_p_values(lom, grid)
    assert p.shape == grid.shape
    assert np.all(np.diff(p) <= 0)
    assert p[0] == 1.0 and p[-1] == 0.0
    assert motifs.score_p_values(lom, grid.reshape(20, 20)).shape == (20, 20)


def _consensus(tf):
    return "".join("ACGT"[i] for i in motif_probabilities(tf).argmax(axis=1))


def test_planted_ctcf_consensus_is_significant_but_random_best_hits_mostly_not():
    rng = np.random.default_rng(2)
    random = rng.integers(0, 4, size=(300, 200)).astype(np.uint8)
    hit = motifs.best_match(random, "CTCF")
    assert np.mean(hit.p_value < 1e-4) < 0.1
    planted = random[:5].copy()
    planted[:, 90:90 + len(_consensus("CTCF"))] = encode([_consensus("CTCF")])[0]
    match = motifs.best_match(planted, "CTCF")
    assert np.all(match.p_value < 1e-4)
    assert np.all(match.start == 90)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_best_match_finds_planted_motif_on_either_strand(strand):
    rng = np.random.default_rng(3)
    probs = motif_probabilities("REST")
    site = encode([_consensus("REST")])[0]
    if strand == "-":
        site = reverse_complement(site)
    codes = rng.integers(0, 4, size=(4, 150)).astype(np.uint8)
    starts = np.array([0, 17, 64, 150 - len(site)])
    for row, start in enumerate(starts):
        codes[row, start:start + len(site)] = site
    match = motifs.best_match(codes, probs)
    np.testing.assert_array_equal(match.start, starts)
    np.testing.assert_array_equal(match.end, starts + len(site))
    assert match.strand.dtype == np.dtype("<U1") and set(match.strand) == {strand}
    np.testing.assert_allclose(match.score, motifs.log_odds(probs).max(axis=1).sum())
    assert match.p_value.shape == (4,) and np.all(match.p_value < 1e-6)


def test_best_match_rejects_unknown_tf():
    with pytest.raises(ValueError, match="unknown TF"):
        motifs.best_match(np.zeros((1, 50), dtype=np.uint8), "NOPE")


def test_hot_window():
    importance = np.zeros((3, 12))
    importance[0, 2:5] = 1.0
    importance[1, 8:] = [0.5, 2.0, 0.5, 0.1]
    importance[2] = 1.0  # all windows tie: leftmost wins
    np.testing.assert_array_equal(motifs.hot_window(importance, 3), [2, 8, 0])
    np.testing.assert_array_equal(motifs.hot_window(importance, 12), [0, 0, 0])
    with pytest.raises(ValueError, match="width"):
        motifs.hot_window(importance, 13)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        motifs.hot_window(importance[0], 3)


def test_spans_overlap_half_open():
    a_start, a_end = np.array([0, 0, 5, 3, 2]), np.array([5, 5, 9, 3, 8])
    b_start, b_end = np.array([4, 5, 0, 0, 3]), np.array([8, 9, 5, 9, 4])
    np.testing.assert_array_equal(motifs.spans_overlap(a_start, a_end, b_start, b_end),
                                  [True, False, False, False, True])
    assert motifs.spans_overlap(10, 20, np.array([0, 15, 20]), np.array([10, 16, 30])).tolist() == [False, True, False]
