import pytest

from tfbind_dist import config as C


def test_defaults_are_the_chapter_recipe():
    cfg = C.RunConfig()
    assert (cfg.train.batch_size, cfg.train.learning_rate, cfg.train.steps, cfg.train.eval_every, cfg.train.seed) == (
        32, 1e-3, 1000, 100, 42)
    assert cfg.model.name == "conv_v2" and cfg.train.optimizer == "adam"


def test_chapter_recipe_yaml_round_trip(tmp_path):
    from conftest import REPO

    cfg = C.load(REPO / "jobs" / "recipes" / "chapter.yaml")
    assert cfg.train == C.RunConfig().train
    C.save(cfg, tmp_path / "c.yaml")
    assert C.load(tmp_path / "c.yaml") == cfg


def test_overrides_by_bare_and_dotted_key():
    cfg = C.with_overrides(C.RunConfig(), {"steps": "50", "data.tf": "REST", "model.overrides.dropout_rate": "0.0"})
    assert cfg.train.steps == 50 and cfg.data.tf == "REST" and cfg.model.overrides == {"dropout_rate": 0.0}


@pytest.mark.parametrize("data,message", [
    ({"train": {"stepz": 1}}, "unknown config key 'train.stepz'"),
    ({"train": {"steps": "ten"}}, "train.steps must be int"),
    ({"model": {"name": "resnet"}}, "model.name must be one of"),
    ({"data": {"n_policy": "maybe"}}, "data.n_policy must be one of"),
    ({"trian": {}}, "unknown config key 'trian'"),
])
def test_bad_config_names_the_key(data, message):
    with pytest.raises(C.ConfigError, match=message.replace("(", r"\(")):
        C.from_dict(data)


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: [1\n")
    with pytest.raises(C.ConfigError, match="bad.yaml"):
        C.load(path)
