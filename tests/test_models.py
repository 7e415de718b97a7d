import jax
import jax.numpy as jnp
import pytest

from tfbind_dist.models import PRESETS, build_model


def _shapes(variables):
    return {"/".join(str(getattr(k, "key", k)) for k in path): leaf.shape
            for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]}


@pytest.mark.parametrize("name", ["conv", "conv_v2"])
def test_chapter_parameter_shapes(name):
    variables = build_model(name).init(jax.random.PRNGKey(0), jnp.zeros((2, 200, 4)), is_training=False)
    shapes = _shapes(variables)
    assert shapes["Conv_0/kernel"] == (10, 4, 64)
    assert shapes["Conv_1/kernel"] == (10, 64, 64)
    assert shapes["Dense_0/kernel"] == (3200, 128)
    assert shapes["Dense_1/kernel"] == (128, 64)
    assert shapes["Dense_2/kernel"] == (64, 1)
    assert ("batch_stats" in variables) == (name == "conv_v2")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_gives_one_logit(name):
    model = build_model(name)
    x = jnp.zeros((3, 200, 4))
    variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, is_training=False)
    assert model.apply(variables, x, is_training=False).shape == (3, 1)


def test_ablation_structure():
    shapes = _shapes(build_model("single_conv_only").init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False))
    assert shapes["Dense_0/kernel"] == (100 * 64, 1)  # one conv block, no MLP
    shapes = _shapes(build_model("fewer_conv_channels").init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False))
    assert shapes["ConvBlock_0/Conv_0/kernel"] == (10, 4, 8)
    shapes = _shapes(build_model("add_two_transformer_block").init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False))
    assert any(k.startswith("TransformerBlock_1/") for k in shapes)
    assert shapes["MLPBlock_1/Dense_0/kernel"] == (128, 64)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")
    with pytest.raises(ValueError, match="no field"):
        build_model("conv", dropout_rate=0.1)
