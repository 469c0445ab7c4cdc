#!/usr/bin/env bash
# GPU check of the trainer: ms per iteration at extent 8 on CUDA (node-level vs per-edge lin_edge), then a
# short standard training at extent 8 through the slot job, with its metrics. Under 6 minutes on one GPU.
#
# Needs (installed by the caller beforehand): python3 (3.11+) with torch (CUDA build), torch-geometric,
# numpy, scipy, scikit-learn, matplotlib, tqdm, pydantic>=2, ruamel.yaml, and flyvis==1.2.0 installed
# with --no-deps (it only carries the connectome JSON).
#
# Run from the repository root:  bash benchmarks/gpu_check.sh
# Outputs under ${OUT:-/tmp/gpu_check}: env.txt, speed.txt, check.yaml, slot/ (status, metrics, R2 log,
# images). Knobs (env): DEVICE (cuda), EXTENT (8), FRAMES (8000), ITERS (3000), PYTHON (python3),
# GROUND_TRUTH (synthetic, or a flyvis checkpoint directory), ALTERNATE (false; true = cyclic schedule).
# A CPU dry run with tiny sizes: DEVICE=cpu EXTENT=1 FRAMES=300 ITERS=50 bash benchmarks/gpu_check.sh
set -euo pipefail

OUT_DIR=${OUT:-/tmp/gpu_check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
EXTENT=${EXTENT:-8}
FRAMES=${FRAMES:-8000}
ITERS=${ITERS:-3000}
GROUND_TRUTH=${GROUND_TRUTH:-synthetic}
ALTERNATE=${ALTERNATE:-false}
DATA_DIR=${DATA_DIR:-/tmp/gpu_check_data}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
t0=$(date +%s)

echo "== environment"
{
  "$PY" -c "import sys, torch, torch_geometric as g; print('python', sys.version.split()[0], 'torch', torch.__version__, 'pyg', g.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
} | tee "$OUT_DIR/env.txt"

echo "== speed: ms per training iteration at extent $EXTENT on $DEVICE"
"$PY" benchmarks/bench_train.py --device "$DEVICE" --extents "$EXTENT" --n-iter 50 | tee "$OUT_DIR/speed.txt"

echo "== config: extent $EXTENT, $FRAMES frames, $ITERS iterations, alternate=$ALTERNATE, ground truth $GROUND_TRUTH"
"$PY" - "$OUT_DIR/check.yaml" "$EXTENT" "$FRAMES" "$ITERS" "$DEVICE" "$GROUND_TRUTH" "$ALTERNATE" <<'PYEOF'
import sys
from pathlib import Path

from experiment.config import parse_experiment
from experiment.yaml_io import roundtrip_dump, roundtrip_load, write_yaml_roundtrip

out, extent, frames, iters, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ground_truth, alternate = sys.argv[6], sys.argv[7] == "true"
src = Path("configs/flyvis_science_cpu.yaml")
data = roundtrip_load(src.read_text(encoding="utf-8"), str(src))
data["description"] = f"GPU check: extent {extent}, {frames} frames, {iters} iterations, alternate={alternate}"
data["simulation"].update(extent=extent, n_frames=frames, n_test_frames=max(100, frames // 8), ground_truth=ground_truth)
data["training"].update(alternate_training=alternate, n_iterations=iters, device=device)
parse_experiment(roundtrip_load(roundtrip_dump(data)), out)  # validate before writing
write_yaml_roundtrip(out, data)
print(out)
PYEOF

echo "== slot job (generate, train, test)"
set +e
"$PY" -m trainer.slot --config "$OUT_DIR/check.yaml" --out "$OUT_DIR/slot" --data-dir "$DATA_DIR" --device "$DEVICE"
rc=$?
set -e
echo "== status (exit $rc)"
cat "$OUT_DIR/slot/status.json"
if [ -f "$OUT_DIR/slot/metrics.txt" ]; then
  echo "== metrics"
  cat "$OUT_DIR/slot/metrics.txt"
  echo "== connectivity_r2.log"
  cat "$OUT_DIR/slot/connectivity_r2.log"
fi
echo "== total $(( $(date +%s) - t0 )) s"
exit $rc
