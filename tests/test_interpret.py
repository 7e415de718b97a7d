"""Interpretation kernels: fast ISM against the reference on every preset, gradients, summaries, explain()."""
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.errors import ConfigError
from tfbind_dist.interpret import ARRAY_NAMES, explain, gradients
from tfbind_dist.interpret.ism import has_fast_ism, ism, ism_fast, ism_reference
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.interpret.quality import importance_auroc
from tfbind_dist.interpret.summaries import describe_change, top_mutations
from conftest import presets_transformers_slow
from tfbind_dist.models import PRESETS, build_model

L = 200


def _variables(name, seed=0):
    """Weights scaled up and BatchNorm statistics perturbed so outputs move a lot under mutation."""
    model = build_model(name)
    v = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, L, 4)), is_training=False)
    keys = iter(jax.random.split(jax.random.PRNGKey(seed + 1), 1000))

    def perturb(path, leaf):
        name = str(path[-1])
        if "var" in name:
            return jax.random.uniform(next(keys), leaf.shape, minval=0.5, maxval=2.0)
        if "mean" in name or "bias" in name:
            return 0.2 * jax.random.normal(next(keys), leaf.shape)
        return leaf * 1.6 if leaf.ndim >= 2 else leaf

    return model, jax.tree_util.tree_map_with_path(perturb, v)


def _codes(n=3, seed=0, with_n=False):
    codes = np.random.default_rng(seed).integers(0, 4, size=(n, L)).astype(np.uint8)
    if with_n:
        codes[0, 0], codes[1, 100], codes[2, L - 1] = 4, 4, 4
    return codes


class _NoSplit(nn.Module):
    """A family that declares no ism_split."""

    @nn.compact
    def __call__(self, x, is_training: bool = True):
        return nn.Dense(1)(nn.relu(nn.Conv(4, (5,))(x)).mean(axis=-2))


def test_every_preset_declares_a_split_and_others_fall_back_with_one_line(capfd):
    assert all(has_fast_ism(build_model(name)) for name in PRESETS)
    model = _NoSplit()
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, L, 4)))
    assert not has_fast_ism(model, v)
    with pytest.raises(ConfigError, match="fast ISM does not know _NoSplit"):
        ism_fast(model, v, _codes(n=1))
    for _ in range(2):
        np.testing.assert_allclose(ism(model, v, _codes(n=1)).delta, ism_reference(model, v, _codes(n=1)).delta)
    lines = [line for line in capfd.readouterr().err.splitlines() if "ism_split" in line]
    assert lines == ["tfbind: _NoSplit declares no ism_split; ISM uses the reference kernel (every mutant through "
                     "the whole model)"]


def _assert_fast_matches_reference(model, v, codes):
    for output in ("prob", "logit"):
        ref = ism_reference(model, v, codes, output=output)
        fast = ism_fast(model, v, codes, output=output)
        scale = float(jnp.abs(ref.delta).max())
        assert scale > (1e-3 if output == "prob" else 0.05), "mutations must move the output for a real check"
        np.testing.assert_allclose(fast.delta, ref.delta, atol=1e-5 * max(1.0, scale))
        # the unmutated output: one forward pass in each kernel, batched differently (float32 rounding)
        np.testing.assert_allclose(fast.reference, ref.reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", presets_transformers_slow())
def test_fast_ism_matches_reference_on_every_preset(name):
    model, v = _variables(name)
    _assert_fast_matches_reference(model, v, _codes(with_n=name in ("conv_v2", "motif_pool")))


@pytest.mark.parametrize("overrides", [
    {"activation": "gelu", "strand_average": False},
    pytest.param({"activation": "exp", "kernel_size": 10, "first_pool": 3, "conv2_kernel_size": 6},  # even kernels,
                 marks=pytest.mark.slow),  # ragged pool
    pytest.param({"activation": "relu", "kernel_size": 15, "first_pool": 2, "conv2_kernel_size": 3, "conv_filters": 32},
                 marks=pytest.mark.slow),
])
def test_fast_ism_matches_reference_on_motif_pool_variants(overrides):
    model = build_model("motif_pool", **overrides)
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, L, 4)), is_training=False)
    v = jax.tree.map(lambda leaf: leaf * 1.5 if leaf.ndim >= 2 else leaf, v)
    _assert_fast_matches_reference(model, v, _codes(with_n=True))


@pytest.mark.parametrize("name", ["conv_v2", "motif_pool"])
def test_reference_ism_is_the_difference_of_forward_passes(name):
    model, v = _variables(name)
    codes = _codes(n=1)
    result = ism_reference(model, v, codes)
    np.testing.assert_allclose(ism(model, v, codes).delta, result.delta, atol=1e-5)  # the kernel `ism` picks
    base = float(predict(model, v, codes)[0])
    assert float(result.reference[0]) == pytest.approx(base, abs=1e-6)
    for position, new in [(0, 1), (57, 2), (199, 3), (100, 0)]:
        mutant = codes.copy()
        mutant[0, position] = new
        expected = 0.0 if new == codes[0, position] else float(predict(model, v, mutant)[0]) - base
        assert float(result.delta[0, position, new]) == pytest.approx(expected, abs=1e-6)
    identity = np.asarray(result.delta[0])[np.arange(L), codes[0]]
    assert (identity == 0).all()
    np.testing.assert_allclose(result.importance, np.abs(result.delta).sum(-1), rtol=1e-6)


def test_gradients_shapes_correction_and_finite_difference():
    model, v = _variables("conv_v2")
    codes = _codes()
    g = np.asarray(gradients.input_gradients(model, v, codes))
    assert g.shape == (3, L, 4)
    corrected = np.asarray(gradients.corrected_gradients(model, v, codes))
    np.testing.assert_allclose(corrected.mean(-1), 0, atol=1e-6)
    np.testing.assert_allclose(corrected, g - g.mean(-1, keepdims=True), atol=1e-6)
    gxi = np.asarray(gradients.gradient_x_input(model, v, codes))
    np.testing.assert_allclose(gxi, g * one_hot(codes), atol=1e-7)
    x = one_hot(codes[:1])
    eps = 1e-2
    f = lambda z: float(model.apply(v, jnp.asarray(z), is_training=False)[0, 0])  # noqa: E731
    bumped = x.copy()
    bumped[0, 90, 2] += eps
    assert (f(bumped) - f(x)) / eps == pytest.approx(g[0, 90, 2], rel=0.05, abs=1e-3)


def test_integrated_gradients_completeness():
    model, v = _variables("conv_v2")
    codes = _codes(n=2)
    ig = np.asarray(gradients.integrated_gradients(model, v, codes, steps=128))
    logit = lambda x: np.asarray(model.apply(v, jnp.asarray(x), is_training=False)[:, 0])  # noqa: E731
    expected = logit(one_hot(codes)) - logit(np.full((2, L, 4), 0.25, np.float32))
    np.testing.assert_allclose(ig.sum(axis=(1, 2)), expected, rtol=0.02, atol=0.02)


def test_top_mutations_and_describe_change():
    delta = np.zeros((L, 4), np.float32)
    delta[100, 0] = -0.042
    delta[12, 3] = 0.3
    seq = "G" * L
    down = top_mutations(delta, seq, k=1, increasing=False)[0]
    assert (down.position, down.ref, down.alt) == (100, "G", "A")
    assert describe_change(down, reference=1.0) == "position 100 with G→A (-4.20% decrease)"
    assert top_mutations(delta, seq, k=1)[0].position == 12


def test_explain_batches_and_names():
    model, v = _variables("conv")
    codes = _codes(n=5)
    out = explain(model, v, codes, ["ism", "grad-corrected", "grad"], batch_size=2)
    assert set(out) == {"prediction", "ism", "grad_corrected", "grad"}
    assert all(out[k].shape == (5, L, 4) for k in ("ism", "grad", "grad_corrected"))
    np.testing.assert_allclose(out["prediction"], np.asarray(predict(model, v, codes)), rtol=1e-6)
    np.testing.assert_allclose(out["ism"], np.asarray(ism_reference(model, v, codes).delta), atol=1e-5)
    assert ARRAY_NAMES["grad-x-input"] == "grad_x_input"
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, v, codes, ["shap"])


def test_importance_auroc():
    planted = np.zeros((2, 10), bool)
    planted[:, 4:6] = True
    perfect = planted.astype(float)
    assert importance_auroc(perfect, planted).mean_auroc == 1.0
    assert importance_auroc(1 - perfect, planted).mean_auroc == 0.0
    assert importance_auroc(perfect, np.zeros((2, 10), bool)).sequences == 0
