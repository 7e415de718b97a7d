#!/usr/bin/env bash
# The tangermeme comparison's own environment (torch + tangermeme are not tfbind_dist dependencies).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-tangermeme
.venv-tangermeme/bin/pip install -q torch==2.13.0 tangermeme numpy
