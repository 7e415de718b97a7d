#!/usr/bin/env bash
# The scoring service on a lent GPU (benchmarks/RESULTS.md, "Scoring on a GPU"). The GPU machine has
# no Ray or grain and takes 64 MiB of extra files: expects in .whl/ the wheels of the missing packages
# and Ray's wheel unpacked without ray/jars and *.js.map as ray-*-slim.tar.xz, and in .devdata/ the
# genome (MG1655-K12.fasta.gz) and 5 trained default-recipe runs, each scored twice (a copy of each
# run directory) to make the 10 models of one pass.
set -uo pipefail
mkdir -p /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
tar xJf .whl/ray-*-slim.tar.xz -C /tmp/site || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
for r in .devdata/runs/*; do [[ $r == *_2 ]] || cp -r "$r" "${r}_2"; done
OUT=${OUT:-/tmp}
nvidia-smi -L
timeout 60 python3 -c "
import jax, ray, grain, tfbind_dist.scoring.service
print('jax', jax.__version__, jax.devices(), 'ray', ray.__version__)
ray.init(address='local', include_dashboard=True, log_to_driver=False); print(ray.cluster_resources())" 2>&1 | grep -v -i warn
timeout 270 python3 benchmarks/bench_ecoli.py --runs .devdata/runs/* --genome .devdata/MG1655-K12.fasta.gz \
  --gpus-per-actor 1 --batch-size 4000 --ism-batch-size 500 --ism-windows 8000 --ism-shard-rows 2000 2>&1 \
  | grep -v -i warn | tee "$OUT/bench_ecoli_gpu.txt"
timeout 120 python3 benchmarks/kernel_memory.py --n 2048 2>&1 | tee "$OUT/kernel_memory_gpu.txt"
timeout 90 python3 benchmarks/bench_ism.py --models motif_pool --n 2048 --loop-n 1 --no-tangermeme 2>&1 \
  | grep -v -i warn | tee "$OUT/bench_ism_motif_pool_gpu.txt"
