#!/usr/bin/env bash
# `make demo`: the course's results from the shell, the most robust first (tools/demo.py):
# 05a's threshold table, the toy scorer of 05b (hingeabl-toy, in seconds on a CPU) and the
# laptop lab as recorded in nbs/results/lab-cpu.json, each with one sentence saying what it
# shows and what it does not. Offline, well under a minute of CPU.
# If a local encoder and Re-DocRED are found, it also prints the command that reruns the lab
# (minutes on a laptop CPU; it runs here only with LAB=1).
# Environment: TOY_STEPS (default 1000), TABLE_PAIRS (default 2000, 05a's population),
# DEMO_OUT (default runs/demo), LAB=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
OUT="${DEMO_OUT:-runs/demo}"
python tools/demo.py --toy-steps "${TOY_STEPS:-1000}" --table-pairs "${TABLE_PAIRS:-2000}" \
    --out "$OUT"
rm -f runs/.lab_command
python - <<'PY' || echo "(could not locate the encoder or the data)"
import sys
from pathlib import Path
from hingeabl_nb.core import find_up
from hingeabl_nb.data import locate_redocred
model, data = find_up("shared/models/minilm-l6-h384-uncased"), locate_redocred()
if model is None or data is None:
    print("To rerun the lab: it needs a local encoder (shared/models/minilm-l6-h384-uncased)"
          " and Re-DocRED (shared/data/redocred); see nbs/10_lab.ipynb.")
    sys.exit(0)
cmd = f"hingeabl-lab --model {model} --data-dir {data} --out runs/demo-lab"
print(f"Rerun the lab (minutes on a laptop CPU; LAB=1 make demo runs it): {cmd}")
Path("runs").mkdir(exist_ok=True)
Path("runs/.lab_command").write_text(cmd + "\n")
PY
if [ "${LAB:-0}" = "1" ] && [ -f runs/.lab_command ]; then
    echo; echo "== LAB=1: running the laptop lab =="; bash -c "$(cat runs/.lab_command)"
fi
echo
echo "Next: 'make lab' opens the course in JupyterLab (start with nbs/index.ipynb)."
