"""DeepLIFT/SHAP: ours (rules on the jaxpr) against tangermeme's deep_lift_shap on PyTorch copies.

Run: cd benchmarks && ../.venv/bin/python bench_deeplift.py [--n 128] [--references 20] [--float64]
(tangermeme in its own venv: bash benchmarks/setup_tangermeme.sh once.)

For conv_v2 (Conv, BatchNorm, GELU, max-pool, Dense) and motif_pool on one strand (Conv, BatchNorm,
ReLU, max-pool, global max as a max-pool over the whole length, means, Dense), both with the same
weights and the same dinucleotide-shuffled references: max |ours - tangermeme| over every
attribution, each side's completeness error (|sum of attributions - (f(x) - mean f(refs))|, max
over sequences), and sequences per second, ours compiled first. `--float64`: both sides in double
precision (no timing), to tell rounding from a difference in the rules. motif_pool's strand averaging
runs its trunk twice, which tangermeme's module hooks do not support, so it is compared without.
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.interpret.deeplift import _deeplift, deeplift, shuffled_references
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.models import build_model

from bench_ism import TANGERMEME_PYTHON  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

MODELS = {"conv_v2": ("conv_v2", {}), "motif_pool_single_strand": ("motif_pool", {"strand_average": False})}


def completeness_error(model, variables, codes, refs, attributions) -> float:
    fx = np.asarray(predict(model, variables, codes, output="logit"))
    fr = np.asarray(predict(model, variables, refs.reshape(-1, refs.shape[-1]), output="logit"))
    return float(np.abs(attributions.sum((1, 2)) - (fx - fr.reshape(refs.shape[:2]).mean(1))).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--references", type=int, default=20)
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    codes = np.random.default_rng(0).integers(0, 4, size=(args.n, 200)).astype(np.uint8)
    refs = shuffled_references(codes, args.references, seed=1)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {args.n} sequences x 200 bp, "
          f"{args.references} references each")
    print(f"{'model':26s} {'max |ours - tangermeme|':>24s} {'max |attribution|':>18s} {'completeness ours':>18s} "
          f"{'tangermeme':>11s} "
          f"{'ours seq/s':>11s} {'tangermeme seq/s':>17s}")
    for name, (preset, overrides) in MODELS.items():
        model = build_model(preset, **overrides)
        variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False)
        variables = jax.tree.map(lambda leaf: leaf * 1.5 if leaf.ndim >= 2 else leaf, variables)
        if args.float64:
            variables = jax.tree.map(lambda leaf: leaf.astype(jnp.float64), variables)
            ours = np.asarray(_deeplift(model, variables, jnp.asarray(one_hot(codes), jnp.float64),
                                        jnp.asarray(one_hot(refs), jnp.float64), output="logit"))
            ours_rate = float("nan")
        else:
            deeplift(model, variables, codes[:2], refs[:2])  # compile for another shape; then time a warm run
            ours = deeplift(model, variables, codes, refs)
            started = time.perf_counter()
            ours = deeplift(model, variables, codes, refs)
            ours_rate = args.n / (time.perf_counter() - started)
        flat = {".".join(str(getattr(k, "key", k)) for k in path[1:]): np.asarray(value)
                for path, value in jax.tree_util.tree_flatten_with_path(variables)[0]}
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(f"{tmp}/w.npz", **flat)
            np.save(f"{tmp}/x.npy", one_hot(codes))
            np.save(f"{tmp}/refs.npy", one_hot(refs))
            subprocess.run([str(TANGERMEME_PYTHON), str(Path(__file__).parent / "tangermeme_side.py"), name,
                            f"{tmp}/w.npz", f"{tmp}/x.npy", f"{tmp}/out.npz", "--deeplift", f"{tmp}/refs.npy",
                            *(["--float64"] if args.float64 else [])], check=True)
            out = np.load(f"{tmp}/out.npz")
            theirs, their_rate = out["deeplift"], args.n / float(out["seconds"])
        print(f"{name:26s} {np.abs(ours - theirs).max():24.2e} {np.abs(theirs).max():18.2e} "
              f"{completeness_error(model, variables, codes, refs, ours):18.2e} "
              f"{completeness_error(model, variables, codes, refs, theirs):11.2e} {ours_rate:11.1f} {their_rate:17.1f}",
              flush=True)


if __name__ == "__main__":
    main()
