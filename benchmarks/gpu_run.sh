#!/usr/bin/env bash
# Runs the training-loop and ISM benchmarks on a lent GPU machine (see benchmarks/RESULTS.md).
# Expects wheels for packages missing there in .whl/ and the REST/GABPA data in .devdata/koo_chipseq_200bp.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TANGERMEME_PYTHON=python3
nvidia-smi -L
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
python3 benchmarks/bench_ism.py --n 2048 --loop-n 1 2>&1 | grep -v Warning | tee "${OUT:-/tmp}/bench_ism_gpu.txt"
python3 benchmarks/bench_train_loop.py --data .devdata/koo_chipseq_200bp --batch-sizes 32 1024 --steps 1000 300 2>&1 \
  | grep -v -i warn | tee "${OUT:-/tmp}/bench_train_loop_gpu.txt"
