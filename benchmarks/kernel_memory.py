"""Device memory each compiled kernel asks for, per model, at one batch size (compiled, not run).

Run: .venv/bin/python benchmarks/kernel_memory.py [--n 2048] [--models conv_v2 motif_pool ...]
     [--kernels "ISM reference" ...] [--hlo DIR]   (DIR: each compiled program's HLO text, gzipped)

For every kernel the scoring service and `tfbind explain` run (forward, input gradients,
integrated gradients, fast and reference ISM), prints XLA's `memory_analysis()` of the program
compiled for this machine's default device: temporaries, arguments and outputs, in GB. Used to
find which kernel XLA's GPU compiler planned ~114 GB for at 2,048 sequences on an H200 (its warning
lands on that kernel's line) while assigning it 288 MiB, and to check the bound
(`ism.REFERENCE_MUTANTS_PER_CHUNK`; `--reference-mutants-per-chunk N` compiles with another).
"""
from __future__ import annotations

import argparse
import gzip
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tfbind_dist.interpret import gradients
from tfbind_dist.interpret.ism import _ism_fast, _ism_reference

ism_module = sys.modules[_ism_reference.__module__]  # (`interpret.ism` names the function)
from tfbind_dist.interpret.outputs import _predict
from tfbind_dist.models import build_model

KERNELS = {
    "forward": partial(_predict.lower, n_policy="uniform", output="prob"),
    "input gradients": partial(gradients.input_gradients.lower, n_policy="uniform", output="logit"),
    "integrated gradients": partial(gradients.integrated_gradients.lower, n_policy="uniform", output="logit"),
    "ISM fast": partial(_ism_fast.lower, n_policy="uniform", output="prob", num_alts=3),
    "ISM reference": partial(_ism_reference.lower, n_policy="uniform", output="prob", num_alts=3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--models", nargs="+", default=["conv_v2", "motif_pool", "add_two_transformer_block"])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    parser.add_argument("--reference-mutants-per-chunk", type=int, default=ism_module.REFERENCE_MUTANTS_PER_CHUNK)
    parser.add_argument("--hlo", type=Path, help="write each compiled program's HLO text here (gzipped)")
    args = parser.parse_args()
    ism_module.REFERENCE_MUTANTS_PER_CHUNK = args.reference_mutants_per_chunk  # read when the kernel is traced
    codes = jnp.asarray(np.random.default_rng(0).integers(0, 4, size=(args.n, 200)).astype(np.uint8))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {args.n} sequences x 200 bp")
    print(f"{'model':28s} {'kernel':22s} {'temp GB':>9s} {'args GB':>8s} {'out GB':>8s}", flush=True)
    for name in args.models:
        model = build_model(name)
        variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 200, 4)), is_training=False)
        for kernel in args.kernels:
            print(f"{name:28s} {kernel:22s}", end=" ", flush=True)  # a compiler warning lands next to its kernel
            compiled = KERNELS[kernel](model, variables, codes).compile()
            memory = compiled.memory_analysis()
            if args.hlo:
                args.hlo.mkdir(parents=True, exist_ok=True)
                slug = f"{name}_{kernel.replace(' ', '_')}.hlo.txt.gz"
                (args.hlo / slug).write_bytes(gzip.compress(compiled.as_text().encode()))
            print(f"{memory.temp_size_in_bytes / 1e9:9.3f} {memory.argument_size_in_bytes / 1e9:8.3f} "
                  f"{memory.output_size_in_bytes / 1e9:8.3f}", flush=True)


if __name__ == "__main__":
    main()
