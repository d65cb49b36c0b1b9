#!/usr/bin/env bash
# One GPU session's work for the reduced reproduction grid, in steps that each fit one
# 10-minute device call and resume where the last call stopped:
#   bash tools/gpu_session.sh check    # versions, CUDA tests, the `#| gpu` cells' code paths
#   bash tools/gpu_session.sh grid     # the `reduced` grid, 7 losses x seeds 1 5 42, N cells at once
#   bash tools/gpu_session.sh bench    # throughput ours vs official-style (BERT-base size, MiniLM)
# Records (small JSON only) are written to $OUT (default: nbs/results). Needs the Re-DocRED folder
# ($HINGEABL_DATA or shared/data/redocred walking up) and the MiniLM folder for `grid`.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
OUT="${OUT:-nbs/results}"; JOBS="${JOBS:-6}"; GRID="${GRID:-runs/reduced}"; LIMIT="${LIMIT:-540}"
mkdir -p "$OUT"
python -c "import hingeabl_nb" 2>/dev/null || pip install -q --no-deps -e .

case "${1:-check}" in
  check)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    python -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| transformers', transformers.__version__, '| accelerate', accelerate.__version__)"
    python -m pytest tests -q -x -p no:cacheprovider 2>&1 | tail -5
    python bench/bench_model.py --device cuda --len 512 --batch 2 2>&1 | tail -4
    hingeabl-train --preset smoke --device cuda --mixed-precision bf16 --epochs 1 --out runs/gpu-smoke --no-progress | tail -3 ;;
  grid)
    # Each cell resumes from its own checkpoint; a call that hits LIMIT leaves the rest for the next call.
    timeout "$LIMIT" hingeabl-compare --preset reduced --losses ATL BalancedSoftmax AFL AML SAT MeanSAT HingeABL \
      --seeds 1 5 42 --out "$GRID" --jobs "$JOBS" --record "$OUT/reduced-{device}.json" || echo "grid stopped at ${LIMIT}s: run 'grid' again to resume" ;;
  bench)
    python bench/bench_train.py --device cuda --encoder-size base --docs 32 --baseline --record "$OUT/throughput-{device}.json"
    python bench/bench_train.py --device cuda --encoder-size minilm --docs 32 --baseline --record "$OUT/throughput-minilm-{device}.json" ;;
  *) echo "usage: bash tools/gpu_session.sh check|grid|bench" >&2; exit 2 ;;
esac
