"""Training-loop throughput: `tfbind train` vs a faithful copy of the chapter's loop, and vs bare jitted steps.

Run: .venv/bin/python benchmarks/bench_train_loop.py [--data DIR] [--tf REST] [--batch-sizes 32 1024]
     [--steps 1000 200] [--eval-every 100]

For each batch size, in one process and on the same model (conv_v2), data and device:
  chapter : the chapter's loop: tf.data (shuffle/repeat/batch/prefetch of host one-hot arrays), a jitted
            train step, a host sync every step (loss shown in the progress bar), and evaluation every
            `eval_every` steps through the un-jitted eval_step + scikit-learn per validation batch.
  tfbind  : tfbind_dist.training.train_and_evaluate (grain, uint8 codes, one-hot on device, no per-step sync,
            orbax checkpoints, final test evaluation and plots included).
  steps   : the same jitted train step alone on batches already on device (compile included).
Prints sequences/s for each and the ratios tfbind/chapter and tfbind/steps.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax
from flax.training import train_state
from sklearn.metrics import accuracy_score, roc_auc_score

from tfbind_dist import config as C
from tfbind_dist.data.encoding import one_hot
from tfbind_dist.data.sources import load_splits
from tfbind_dist.models import build_model
from tfbind_dist.training.loop import train_and_evaluate
from tfbind_dist.training.mesh import make_mesh
from tfbind_dist.training.state import create_state, make_optimizer
from tfbind_dist.training.steps import make_train_step

REPO = Path(__file__).resolve().parents[1]


class ChapterState(train_state.TrainState):
    batch_stats: dict
    key: jax.Array


def chapter_batches(x, y, batch_size, training):
    """The chapter's convert_to_tfds; a numpy stand-in with the same semantics when TensorFlow is absent."""
    try:
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")
        ds = tf.data.Dataset.from_tensor_slices({"sequences": x, "labels": y})
        if training:
            ds = ds.shuffle(buffer_size=len(y)).repeat()
        return ds.batch(batch_size).prefetch(tf.data.experimental.AUTOTUNE).as_numpy_iterator(), "tf.data"
    except ImportError:
        def gen():
            rng = np.random.default_rng(0)
            while True:
                order = rng.permutation(len(y)) if training else np.arange(len(y))
                for i in range(0, len(order), batch_size):
                    idx = order[i:i + batch_size]
                    yield {"sequences": x[idx], "labels": y[idx]}
                if not training:
                    return
        return gen(), "numpy (TensorFlow not installed)"


def run_chapter_loop(splits, batch_size, steps, eval_every):
    x_train = one_hot(splits["train"].codes, "ones").astype(np.int64)  # the chapter's int one-hot
    y_train = splits["train"].labels.astype(np.int64)[:, None]
    x_valid = one_hot(splits["valid"].codes, "ones").astype(np.int64)
    y_valid = splits["valid"].labels.astype(np.int64)[:, None]
    start = time.perf_counter()
    train_ds, backend = chapter_batches(x_train, y_train, batch_size, True)
    model = build_model("conv_v2")
    rng = jax.random.PRNGKey(42)
    rng, rng_init, rng_train = jax.random.split(rng, 3)
    dummy = next(train_ds)["sequences"]
    variables = model.init(rng_init, dummy)
    state = ChapterState.create(apply_fn=model.apply, params=variables["params"], batch_stats=variables["batch_stats"],
                                tx=optax.adam(optax.cosine_decay_schedule(1e-3, steps)), key=rng_init)

    @jax.jit
    def train_step(state, batch, rng_dropout):
        def calculate_loss(params):
            logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, x=batch["sequences"],
                                             is_training=True, rngs={"dropout": rng_dropout}, mutable=["batch_stats"])
            return optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean(), updates

        (loss, updates), grads = jax.value_and_grad(calculate_loss, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads).replace(batch_stats=updates["batch_stats"])
        return state, {"loss": loss}

    def eval_step(state, batch):  # not jitted, as in the chapter
        logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, x=batch["sequences"],
                                is_training=False, mutable=False)
        loss = optax.sigmoid_binary_cross_entropy(logits, batch["labels"]).mean()
        return {"loss": loss.item(), "accuracy": accuracy_score(batch["labels"], jax.nn.sigmoid(logits) >= 0.5),
                "auc": float(roc_auc_score(batch["labels"], logits))}

    log = []
    for step in range(steps):
        rng, rng_dropout = jax.random.split(rng, 2)
        state, batch_metrics = train_step(state, next(train_ds), rng_dropout)
        log.append(float(batch_metrics["loss"]))  # the progress bar's per-step host sync
        if step % eval_every == 0:
            valid_ds, _ = chapter_batches(x_valid, y_valid, batch_size, False)
            log.extend(eval_step(state, b)["auc"] for b in valid_ds if 0 < b["labels"].sum() < len(b["labels"]))
    return time.perf_counter() - start, backend


def run_tfbind(data, tf, batch_size, steps, eval_every):
    cfg = C.with_overrides(C.RunConfig(), {"data.path": str(data), "data.tf": tf, "train.batch_size": batch_size,
                                           "train.steps": steps, "train.eval_every": eval_every})
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        summary = train_and_evaluate(cfg, workdir, progress=False, devices=jax.devices()[:1])
        return time.perf_counter() - start, summary


def run_bare_steps(splits, batch_size, steps):
    plan = make_mesh(jax.devices()[:1])
    cfg = C.TrainConfig(steps=steps, batch_size=batch_size)
    model, tx = build_model("conv_v2"), make_optimizer(cfg)
    start = time.perf_counter()
    state = jax.device_put(create_state(model, tx, splits["train"].length, 42), plan.replicated)
    step_fn = make_train_step(model, tx, plan, "uniform")
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(8):
        rows = rng.choice(len(splits["train"]), batch_size, replace=False)
        batches.append(jax.device_put({"codes": splits["train"].codes[rows], "labels": splits["train"].labels[rows]},
                                      plan.batch))
    for i in range(steps):
        state, loss = step_fn(state, batches[i % 8]["codes"], batches[i % 8]["labels"])
    jax.block_until_ready(loss)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/koo_chipseq_200bp"))
    parser.add_argument("--tf", default="REST")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 1024])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 200], help="steps per batch size")
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args()
    splits = load_splits(C.DataConfig(tf=args.tf, path=args.data))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); data: {args.tf} "
          f"{len(splits['train'])} train / {len(splits['valid'])} valid rows; eval every {args.eval_every}")
    print(f"{'batch':>6s} {'steps':>6s} {'chapter seq/s':>14s} {'tfbind seq/s':>13s} {'steps seq/s':>12s} "
          f"{'tfbind/chapter':>15s} {'tfbind/steps':>13s}  chapter loader")
    for batch_size, steps in zip(args.batch_sizes, args.steps):
        seqs = batch_size * steps
        t_bare = run_bare_steps(splits, batch_size, steps)
        t_tfbind, summary = run_tfbind(args.data, args.tf, batch_size, steps, args.eval_every)
        t_chapter, backend = run_chapter_loop(splits, batch_size, steps, args.eval_every)
        print(f"{batch_size:6d} {steps:6d} {seqs / t_chapter:14,.0f} {seqs / t_tfbind:13,.0f} {seqs / t_bare:12,.0f} "
              f"{t_chapter / t_tfbind:14.2f}x {t_bare / t_tfbind:12.1%}  {backend}", flush=True)


if __name__ == "__main__":
    main()
