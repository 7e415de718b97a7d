"""Packed training (K runs of one architecture as one vmapped program) and several steps per dispatch.

Tolerances: a packed or multi-step program computes each member's step with XLA free to order its
float sums differently (a batched convolution, a fused block), as 8 devices do against 1
(tests/test_train.py allows 1e-4 there, for the same reason). Training amplifies that rounding
step by step: over 20 steps at learning rate 2e-3 the gap grew from 0 to 1.5e-4 here. So the
first two steps, before rounding has had time to grow, must agree to 1e-5 (a member given another
member's batch, dropout rate or learning rate is off by far more there), later losses to 1e-3.
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, latest_checkpoint_step, run_cli
from tfbind_dist import config as C
from tfbind_dist.errors import ConfigError
from tfbind_dist.experiment import check_packable, group_into_packs
from tfbind_dist.registry import TFS
from tfbind_dist.training.loop import train_and_evaluate, train_pack

LOSS_ATOL = 1e-3


@pytest.fixture(scope="module")
def five_tf_dir(tmp_path_factory):
    """Small synthetic data for the five TFs the packs train."""
    from tfbind_dist.data.synthetic import synthesize

    out = tmp_path_factory.mktemp("five_tfs")
    synthesize(out, tfs=list(TFS[:5]), n_train=400, seed=0)
    return out


def _base(data, **overrides):
    return C.with_overrides(C.RunConfig(), {"data.path": str(data), "data.eval_batch_size": 256,
                                            "train.optimizer": "adamw", "train.steps": 20, "train.eval_every": 10,
                                            **overrides})


def _members(data):
    """Five runs differing in everything a pack allows: TF, seed (three), learning rate, weight decay, dropout rate
    (three), and one (learning rate 0, patience 1, evaluated every 5 steps) that must stop early at step 10."""
    configs = [C.with_overrides(_base(data), {"data.tf": tf, "train.seed": 40 + i % 3,
                                              "train.learning_rate": (1e-3, 2e-3)[i % 2],
                                              "train.weight_decay": (1e-4, 1e-2)[i % 2],
                                              "model.overrides.dropout_rate": (0.2, 0.1, 0.0)[i % 3]})
               for i, tf in enumerate(TFS[:4])]
    stopper = C.with_overrides(_base(data), {"data.tf": TFS[4], "train.learning_rate": 0.0, "train.patience": 1,
                                             "train.eval_every": 5})
    return [*configs, stopper]


def _metrics(run):
    return pd.read_parquet(run / "metrics.parquet").sort_values(["step", "split", "metric"]).reset_index(drop=True)


def _losses(run):
    m = _metrics(run)
    return m[m.split == "train"].value.to_numpy()


@pytest.mark.slow
def test_five_packed_members_match_their_solo_runs(five_tf_dir, tmp_path):
    configs = _members(five_tf_dir)
    solo = [train_and_evaluate(c, tmp_path / f"solo{i}", progress=False) for i, c in enumerate(configs)]
    packed = train_pack(configs, [tmp_path / f"pack{i}" for i in range(5)], progress=False)
    for i, (a, b) in enumerate(zip(solo, packed)):
        assert b["status"] == "finished" and b["pack_size"] == 5 and a["pack_size"] == 1
        assert b["best_step"] == a["best_step"] and b["stopped_early_at"] == a["stopped_early_at"], i
        la, lb = _losses(tmp_path / f"solo{i}"), _losses(tmp_path / f"pack{i}")
        assert len(la) == len(lb) == (10 if i == 4 else 20)
        np.testing.assert_allclose(lb[:2], la[:2], rtol=1e-5)
        np.testing.assert_allclose(lb, la, atol=LOSS_ATOL, err_msg=f"member {i}")
        ma, mb = _metrics(tmp_path / f"solo{i}"), _metrics(tmp_path / f"pack{i}")
        valid = (ma.split == "valid") & ma.metric.isin(["auroc", "loss"])
        np.testing.assert_allclose(mb[valid].value, ma[valid].value, atol=1e-3)  # as 8 devices against 1
        assert b["test_auroc"] == pytest.approx(a["test_auroc"], abs=1e-3)
    # the stopper stopped at step 10 while the others went on to 20, and its state stopped changing
    assert packed[4]["stopped_early_at"] == 10 and {p["stopped_early_at"] for p in packed[:4]} == {None}
    assert latest_checkpoint_step(tmp_path / "pack4") == 10
    assert {latest_checkpoint_step(tmp_path / f"pack{i}") for i in range(4)} == {20}
    assert json.loads((tmp_path / "pack3" / "progress.json").read_text())["status"] == "finished"
    # a finished pack is not trained again
    assert train_pack(configs, [tmp_path / f"pack{i}" for i in range(5)], progress=False) == packed


def test_an_inactive_member_is_carried_through_unchanged():
    from tfbind_dist.models import build_model
    from tfbind_dist.training.mesh import make_mesh, shard_batch
    from tfbind_dist.training.packing import member_hypers
    from tfbind_dist.training.state import create_state, make_optimizer
    from tfbind_dist.training.steps import make_packed_train_step

    config = C.RunConfig()
    plan = make_mesh()
    model = build_model(config.model.name)
    states = [create_state(model, make_optimizer(config.train), 64, seed) for seed in (1, 2)]
    stacked = jax.device_put(jax.tree.map(lambda *x: jnp.stack(x), *states), plan.replicated)
    before = jax.tree.map(np.asarray, stacked)
    step = make_packed_train_step(lambda rate: build_model(config.model.name, dropout_rate=rate), config.train, plan,
                                  "uniform")
    rng = np.random.default_rng(0)
    batch = shard_batch(plan, {"codes": rng.integers(0, 4, (3, 2, 32, 64)).astype(np.uint8),
                               "labels": rng.integers(0, 2, (3, 2, 32)).astype(np.int8)}, leading=2)
    after, losses = step(stacked, batch["codes"], batch["labels"], member_hypers([config, config]),
                         jnp.asarray([True, False]))
    assert losses.shape == (3, 2)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a)[0] != b[0])), after, before)
    kept = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a)[1], b[1])), after, before)
    assert any(jax.tree.leaves(moved)) and all(jax.tree.leaves(kept))
    assert int(after.step[0]) == 3 and int(after.step[1]) == 0


@pytest.mark.slow
def test_steps_per_dispatch_equals_one_step_per_dispatch_and_resumes_exactly(five_tf_dir, tmp_path):
    cfg = _base(five_tf_dir, **{"data.tf": "CTCF", "train.steps": 30})
    one = train_and_evaluate(cfg, tmp_path / "one", progress=False)
    blocked = C.with_overrides(cfg, {"train.steps_per_dispatch": 4})  # blocks of 4, 4, 2 between evaluations
    four = train_and_evaluate(blocked, tmp_path / "four", progress=False)
    assert four["best_step"] == one["best_step"]
    np.testing.assert_allclose(_losses(tmp_path / "four"), _losses(tmp_path / "one"), atol=LOSS_ATOL)
    halted = train_and_evaluate(C.with_overrides(blocked, {"train.halt_after": 13}), tmp_path / "resumed",
                                progress=False)
    assert halted["step"] == 14  # the end of the block (steps 11-14) that holds step 13
    resumed = train_and_evaluate(blocked, tmp_path / "resumed", progress=False)
    assert resumed["resumed_from"] == [14]
    np.testing.assert_allclose(_metrics(tmp_path / "resumed").value, _metrics(tmp_path / "four").value, atol=1e-6)


@pytest.mark.slow
def test_a_killed_pack_resumes_exactly(five_tf_dir, tmp_path):
    """SIGKILL a packed run (several steps per dispatch) once every member has a checkpoint; the same call
    then finishes it with the metrics of an uninterrupted pack."""
    configs = [C.with_overrides(_base(five_tf_dir), {"data.tf": tf, "train.seed": i, "train.steps_per_dispatch": 3})
               for i, tf in enumerate(TFS[:2])]
    straight = train_pack(configs, [tmp_path / f"straight{i}" for i in range(2)], progress=False)
    runs = [tmp_path / f"killed{i}" for i in range(2)]
    script = ("import sys, json; from tfbind_dist import api; "
              "api.train_pack([json.loads(c) for c in sys.argv[1:3]], sys.argv[3:], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, *(json.dumps(c.to_dict()) for c in configs), *map(str, runs)],
                            cwd=REPO, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not all(latest_checkpoint_step(r) >= 10 for r in runs) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert not any((r / "summary.json").exists() for r in runs)
    resumed = train_pack(configs, runs, progress=False)
    for i in range(2):
        assert resumed[i]["resumed_from"] and resumed[i]["best_step"] == straight[i]["best_step"]
        np.testing.assert_allclose(_metrics(runs[i]).value, _metrics(tmp_path / f"straight{i}").value, atol=1e-6)


def test_runs_that_cannot_share_a_program_are_named(five_tf_dir, tmp_path):
    a = _base(five_tf_dir, **{"data.tf": "CTCF"})
    b = C.with_overrides(a, {"data.tf": "REST", "train.batch_size": 64})
    with pytest.raises(ConfigError, match=r"CTCF and REST cannot share a pack: train.batch_size is 32 vs 64"):
        check_packable([a, b])
    with pytest.raises(ConfigError, match="cannot share a pack: model.name"):
        train_pack([a, C.with_overrides(a, {"model.name": "baseline"})], [tmp_path / "a", tmp_path / "b"],
                   progress=False)
    assert not (tmp_path / "a").exists()  # refused before any run directory is written
    from tfbind_dist import api

    with pytest.raises(ConfigError, match="2 configs but 1 run directories"):
        api.train_pack([a, b], [tmp_path / "a"])
    packs = group_into_packs(list("aAbBcCa"), lambda x: x.lower() if x != "c" else None, 2)
    assert packs == [["a", "A"], ["b", "B"], ["c"], ["C"], ["a"]]
    assert group_into_packs([1, 2, 3], lambda x: 0, 1) == [[1], [2], [3]]


@pytest.mark.slow
def test_sweep_packs_what_shares_an_architecture_on_fractional_gpus(ray_cluster, tmp_path):
    spec = tmp_path / "packed.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "packed", "recipe": "chapter", "pack": 1,
        "defaults": {"data": {"path": "synthetic", "synth_n_train": 600}, "train": {"steps": 20, "eval_every": 10}},
        "matrix": {"data.tf": ["CTCF", "REST", "GABPA"]},
        "jobs": [{"data.tf": "ZNF24", "model.name": "fewer_conv_channels"}]}))
    bad = run_cli("sweep", spec, "--out", tmp_path / "bad", "--pack", "0")
    assert bad.returncode == 2 and "--pack" in bad.stderr
    proc = run_cli("sweep", spec, "--out", tmp_path / "sweep", "--address", ray_cluster, "--quiet", "--pack", "3",
                   "--gpus-per-job", "0.5", "--cpus-per-job", "1", env_extra={"XLA_FLAGS": ""}, check=True)
    assert "4/4 jobs finished" in proc.stdout
    board = pd.read_parquet(tmp_path / "sweep" / "leaderboard.parquet")
    assert len(board) == 4
    summaries = {json.loads(p.read_text())["tf"]: json.loads(p.read_text())
                 for p in (tmp_path / "sweep").glob("*/summary.json")}
    assert {tf: s["pack_size"] for tf, s in summaries.items()} == {"CTCF": 3, "REST": 3, "GABPA": 3, "ZNF24": 1}
    attempts = [json.loads(log.read_text().splitlines()[-1]) for log in (tmp_path / "sweep").glob("*/attempts*.jsonl")]
    assert len(attempts) == 4 and sorted(a.get("pack", 1) for a in attempts) == [1, 3, 3, 3]
    assert {a["xla_memory_fraction"] for a in attempts} == {"0.450"} and all(a["gpus"] for a in attempts)
