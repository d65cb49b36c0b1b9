#!/usr/bin/env bash
# The main job on the embedded default (called by `make demo`): train ATL and HingeABL with the
# `smoke` preset (tiny random BERT, embedded Re-DocRED sample) on the CPU and print the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
hingeabl-compare --preset smoke --losses ATL HingeABL --seeds 42 --out runs/demo
echo
echo "Results, logs and checkpoints are in runs/demo/. Next: open nbs/index.ipynb (jupyter lab nbs/)."
