#!/usr/bin/env bash
# `make demo`: the toy lesson (05b_toy) from the shell, in seconds on a CPU: train a linear scorer with
# ATL, SAT, MeanSAT and HingeABL on synthetic pairs and plot where the threshold ends up.
# If a local encoder and Re-DocRED are found, also show the recorded laptop-lab table and the command
# that reruns it (about 8 minutes on a laptop CPU; it runs here only with LAB=1).
# Environment: TOY_STEPS (default 600), DEMO_OUT (default runs/demo), LAB=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
OUT="${DEMO_OUT:-runs/demo}"
echo "== The threshold lesson (nbs/05b_toy.ipynb) on synthetic pairs =="
hingeabl-toy --out "$OUT" --steps "${TOY_STEPS:-600}" --no-progress
echo "Figure: $OUT/toy.png (the mean gold margin s_r - s_TH and the share of gold relations at or below the threshold, per step)"
echo
rm -f runs/.lab_command
python - <<'PY' || echo "(could not read the lab record)"
import sys
from pathlib import Path
from hingeabl_nb.core import find_up
from hingeabl_nb.data import locate_redocred
model, data = find_up("shared/models/minilm-l6-h384-uncased"), locate_redocred()
if model is None or data is None:
    print("No local encoder (shared/models/minilm-l6-h384-uncased) or Re-DocRED (shared/data/redocred) found:"
          " the laptop lab (nbs/10_lab.ipynb) needs both."); sys.exit(0)
cmd = f"hingeabl-lab --model {model} --data-dir {data} --out runs/demo-lab"
rec = Path("nbs/results/lab-cpu.json")
if rec.is_file():
    from hingeabl_nb.records import load_record
    from hingeabl_nb.reproduce import table3
    r = load_record(rec)
    print(f"== The laptop lab as recorded in {rec} ({r['device']}, {r['date']}) ==")
    print(r["protocol"]); print(table3(r))
print(f"Rerun it (about 8 minutes on a laptop CPU): {cmd}")
Path("runs").mkdir(exist_ok=True); Path("runs/.lab_command").write_text(cmd + "\n")
PY
if [ "${LAB:-0}" = "1" ] && [ -f runs/.lab_command ]; then
    echo; echo "== LAB=1: running the laptop lab =="; bash -c "$(cat runs/.lab_command)"
fi
echo
echo "Next: 'make lab' opens the course in JupyterLab (start with nbs/index.ipynb; this demo is nbs/05b_toy.ipynb)."
