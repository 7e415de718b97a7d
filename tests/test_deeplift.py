"""DeepLIFT/SHAP: the rules against a hand computation, completeness on every model family, references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import presets_transformers_slow
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.interpret import explain
from tfbind_dist.interpret.deeplift import (_surrogate, deeplift, deeplift_shap, dinucleotide_shuffle,
                                            shuffled_references)
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.models import build_model
from tfbind_dist.models.blocks import max_pool

L = 200


def _dinucleotides(codes):
    return np.bincount(codes[:-1].astype(int) * 5 + codes[1:], minlength=25)


def test_dinucleotide_shuffle_keeps_every_dinucleotide_and_the_ends():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 5, L).astype(np.uint8)  # N (4) included
    shuffles = dinucleotide_shuffle(seq, 10, np.random.default_rng(1))
    for s in shuffles:
        assert (_dinucleotides(s) == _dinucleotides(seq)).all() and s[0] == seq[0] and s[-1] == seq[-1]
    assert all((s != seq).mean() > 0.3 for s in shuffles)  # really shuffled
    assert len({s.tobytes() for s in shuffles}) == 10
    np.testing.assert_array_equal(shuffles, dinucleotide_shuffle(seq, 10, np.random.default_rng(1)))
    np.testing.assert_array_equal(dinucleotide_shuffle(seq[:2], 3, rng), np.tile(seq[:2], (3, 1)))


def test_a_sequence_gets_the_same_references_in_any_batch():
    codes = np.random.default_rng(0).integers(0, 4, (5, L)).astype(np.uint8)
    all_five = shuffled_references(codes, 4, seed=3)
    np.testing.assert_array_equal(all_five[2:3], shuffled_references(codes[2:3], 4, seed=3))
    assert not np.array_equal(all_five, shuffled_references(codes, 4, seed=4))


def test_rules_equal_the_hand_computed_deeplift_of_a_small_network():
    """conv -> ReLU -> max-pool -> dense: rescale at the ReLU, the change routed through the pool's maxima."""
    rng = np.random.default_rng(0)
    kernel = jnp.asarray(rng.normal(size=(3, 4, 8)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(3 * 8,)), jnp.float32)
    conv = lambda x: jax.lax.conv_general_dilated(x, kernel, (1,), ((1, 1),),  # noqa: E731
                                                  dimension_numbers=("NWC", "WIO", "NWC"))

    def f(x):
        return max_pool(jax.nn.relu(conv(x)), 2).reshape(x.shape[0], -1) @ weights

    x = jnp.asarray(one_hot(rng.integers(0, 4, (2, 6)).astype(np.uint8)))
    r = jnp.asarray(one_hot(rng.integers(0, 4, (2, 6)).astype(np.uint8)))
    ours = (x - r) * jax.grad(lambda z: _surrogate(f, z, r)[0].sum())(x)

    hx, hr = conv(x), conv(r)
    ax, ar = jax.nn.relu(hx), jax.nn.relu(hr)
    relu_slope = jnp.where(jnp.abs(hx - hr) > 1e-6, (ax - ar) / jnp.where(hx == hr, 1, hx - hr), hx > 0)
    px, pr = ax.reshape(2, 3, 2, 8).max(2), ar.reshape(2, 3, 2, 8).max(2)
    top = jnp.maximum(px, pr)
    first_max = lambda a: jax.nn.one_hot(a.reshape(2, 3, 2, 8).argmax(2), 2, axis=2)  # noqa: E731
    routed = first_max(ax) * (top - pr)[:, :, None] + first_max(ar) * (px - top)[:, :, None]
    change = (ax - ar).reshape(2, 3, 2, 8)
    pool_slope = jnp.where(change != 0, routed / jnp.where(change == 0, 1, change), 0).reshape(2, 6, 8)
    upstream = pool_slope * jnp.repeat(weights.reshape(3, 8), 2, axis=0)[None] * relu_slope
    _, backward = jax.vjp(conv, x)
    expected = (x - r) * backward(upstream)[0]
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    np.testing.assert_allclose(ours.sum((1, 2)), f(x) - f(r), atol=1e-5)


@pytest.mark.parametrize("name", presets_transformers_slow())
def test_attributions_sum_to_the_output_difference_on_every_preset(name):
    model = build_model(name)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, L, 4)), is_training=False)
    variables = jax.tree.map(lambda leaf: leaf * 1.5 if leaf.ndim >= 2 else leaf, variables)
    codes = np.random.default_rng(1).integers(0, 4, (3, L)).astype(np.uint8)
    codes[0, 5] = codes[2, 150] = 4  # N bases
    refs = shuffled_references(codes, 4, seed=0)
    for output in ("logit", "prob"):
        attributions = deeplift(model, variables, codes, refs, output=output, batch_size=2)
        target = (np.asarray(predict(model, variables, codes, output=output))
                  - np.asarray(predict(model, variables, refs.reshape(-1, L), output=output)).reshape(3, 4).mean(1))
        assert np.abs(target).max() > (0.01 if output == "prob" else 0.1), "the references must move the output"
        np.testing.assert_allclose(attributions.sum((1, 2)), target, atol=1e-4)
        # reported on the observed base: zero on the others (N spreads over all four)
        assert (attributions[0, 6:] * (1 - one_hot(codes[0, 6:]))).max() == 0
        # hypothetical contributions: the observed base's entry is the position's attribution (an N's four
        # entries averaged), the other bases' are not zero
        hypothetical = deeplift(model, variables, codes, refs, output=output, batch_size=2, hypothetical=True)
        np.testing.assert_allclose((hypothetical * one_hot(codes)).sum(-1), attributions.sum(-1), atol=1e-6)
        assert np.abs(hypothetical[0, 6:] * (1 - one_hot(codes[0, 6:]))).max() > 0


def test_explain_and_the_direct_call_agree_and_unsupported_operations_are_named():
    model = build_model("motif_pool")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, L, 4)), is_training=False)
    codes = np.random.default_rng(2).integers(0, 4, (5, L)).astype(np.uint8)
    out = explain(model, variables, codes, ["deeplift-shap"], batch_size=2, references=6, seed=1)
    np.testing.assert_allclose(out["deeplift_shap"], deeplift_shap(model, variables, codes, n_references=6, seed=1),
                               atol=1e-6)

    def sorted_model(x):
        return jnp.sort(x.sum(-1), axis=-1)[:, -1]

    x = jnp.asarray(one_hot(codes[:1]))
    with pytest.raises(NotImplementedError, match="'sort'"):
        _surrogate(sorted_model, x, x[::-1])
