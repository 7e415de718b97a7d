#!/usr/bin/env bash
# Recipe search on a lent GPU (see benchmarks/RESULTS.md): the variants of recipe_search.py on GABPA and REST.
# Expects wheels for packages missing there in .whl/ and the data in .devdata/koo_chipseq_200bp.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 benchmarks/recipe_search.py --data .devdata/koo_chipseq_200bp --tfs GABPA REST --seeds 42 \
  --budget-s "${BUDGET_S:-420}" --csv "${OUT:-/tmp}/recipe_search_gpu.csv" \
  --variants motif_pool_long_aug conv_v2_long_aug motif_pool_aug_exp motif_pool_aug_single_strand \
             motif_pool_long motif_pool_aug_6k motif_pool_aug_wide motif_pool_aug_b128 motif_pool_aug_drop3 \
             motif_pool_aug_k11 motif_pool_aug_jitter10 motif_pool_aug_lr1e-3 motif_pool_aug_wd5e-2 conv_v2_long \
  2>&1 | grep -v -i warn
