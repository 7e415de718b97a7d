"""ISM and gradient throughput on 200-bp sequences, all measured side by side in one run.

Run: .venv/bin/python benchmarks/bench_ism.py [--n 256] [--models conv_v2 motif_pool add_two_transformer_block]
Optional tangermeme comparison: bash benchmarks/setup_tangermeme.sh once (its own venv; torch and
tangermeme are not project dependencies), then this script runs it on PyTorch copies of conv_v2 and
motif_pool (the default recipe's model) with the same weights.

Per model: forward seq/s, input-gradient seq/s, and ISM seq/s for
  fast      : tfbind_dist.interpret.ism_fast (windowed recompute, low-rank dense update)
  reference : tfbind_dist.interpret.ism_reference (every mutant through the whole model, batched)
  loop      : one jitted forward call per mutant (the naive per-mutant loop), on a few sequences
  tangermeme: saturation_mutagenesis(batch_size=256) on a PyTorch copy with the same weights
and the ceiling for fast ÷ reference: the reference kernel's FLOPs over the fast kernel's, for one
sequence, as XLA counts them in the compiled programs (`cost_analysis`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.data.encoding import one_hot
from tfbind_dist.interpret import gradients
from tfbind_dist.interpret.ism import _ism_fast, _ism_reference, ism_fast, ism_reference
from tfbind_dist.interpret.outputs import predict
from tfbind_dist.models import build_model

# The interpreter that has torch + tangermeme (its own venv here; set TANGERMEME_PYTHON elsewhere, e.g. on a GPU box).
TANGERMEME_PYTHON = Path(os.environ.get("TANGERMEME_PYTHON", Path(__file__).parent / ".venv-tangermeme" / "bin" / "python"))


def rate(fn, n, repeats=2):
    """Sequences per second of fn() over n sequences (compiled first; best of `repeats`)."""
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return n / best


def per_mutant_loop(model, variables, codes):
    f = jax.jit(lambda x: jax.nn.sigmoid(model.apply(variables, x, is_training=False)))
    x = one_hot(codes)
    f(x[:1]).block_until_ready()
    start = time.perf_counter()
    for seq in x:
        for pos in range(seq.shape[0]):
            for base in range(4):
                if seq[pos, base] == 1:
                    continue
                mutant = seq.copy()
                mutant[pos] = 0
                mutant[pos, base] = 1
                f(mutant[None]).block_until_ready()
    return len(codes) / (time.perf_counter() - start)


def flops(kernel, model, variables, codes) -> float:
    """FLOPs XLA counts in the compiled ISM kernel for `codes` (no N: three alternatives per position)."""
    lowered = kernel.lower(model, variables, codes, n_policy="uniform", output="prob", num_alts=3)
    analysis = lowered.compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"])


def tangermeme_rate(name, variables, codes, ours):
    if not (TANGERMEME_PYTHON.exists() or shutil.which(str(TANGERMEME_PYTHON))):
        return None, "not run (bash benchmarks/setup_tangermeme.sh)"
    flat = {".".join(str(getattr(k, "key", k)) for k in path[1:]): np.asarray(value)
            for path, value in jax.tree_util.tree_flatten_with_path(variables)[0]}  # path without the collection
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(f"{tmp}/w.npz", **flat)
        np.save(f"{tmp}/x.npy", one_hot(codes))
        subprocess.run([str(TANGERMEME_PYTHON), str(Path(__file__).parent / "tangermeme_side.py"), name,
                        f"{tmp}/w.npz", f"{tmp}/x.npy", f"{tmp}/out.npz"], check=True)
        out = np.load(f"{tmp}/out.npz")
        agree = float(np.abs(out["logits"] - ours).max())
        return len(codes) / float(out["seconds"]), f"PyTorch copy's logits match to {agree:.1e}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--loop-n", type=int, default=2, help="sequences for the per-mutant loop")
    parser.add_argument("--models", nargs="+", default=["conv_v2", "motif_pool", "add_two_transformer_block"])
    parser.add_argument("--no-tangermeme", action="store_true")
    args = parser.parse_args()
    codes = np.random.default_rng(0).integers(0, 4, size=(args.n, 200)).astype(np.uint8)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {args.n} sequences x 200 bp")
    for name in args.models:
        model = build_model(name)
        variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False)
        c = jnp.asarray(codes)
        fwd = rate(lambda: predict(model, variables, c), args.n, 5)
        grad = rate(lambda: gradients.input_gradients(model, variables, c), args.n, 3)
        fast = rate(lambda: ism_fast(model, variables, c).delta, args.n)
        ref = rate(lambda: ism_reference(model, variables, c).delta, args.n, 1)
        loop = per_mutant_loop(model, variables, codes[: args.loop_n])
        one = c[:1]
        ceiling = flops(_ism_reference, model, variables, one) / flops(_ism_fast, model, variables, one)
        print(f"\n{name}")
        print(f"  forward            {fwd:10.1f} seq/s")
        print(f"  input gradients    {grad:10.1f} seq/s   ({grad / fwd:.2f} of forward)")
        print(f"  ISM fast           {fast:10.1f} seq/s   ({fast / ref:.2f}x reference, {fast / loop:.0f}x loop; "
              f"FLOP ceiling {ceiling:.1f}x)")
        print(f"  ISM reference      {ref:10.1f} seq/s")
        print(f"  ISM per-mutant loop{loop:10.2f} seq/s   ({args.loop_n} sequences)")
        if name in ("conv_v2", "motif_pool") and not args.no_tangermeme:
            ours = np.asarray(predict(model, variables, c, output="logit"))
            tm, note = tangermeme_rate(name, variables, codes, ours)
            if tm is None:
                print(f"  tangermeme         {note}")
            else:
                print(f"  tangermeme         {tm:10.1f} seq/s   (fast is {fast / tm:.1f}x; {note})")


if __name__ == "__main__":
    main()
