#!/usr/bin/env bash
# The GPU check: the one script a person runs on a GPU machine. Every stage is time-boxed and a failed stage does
# not stop the others; each writes JSON under $OUT, and gpu_check.json gathers them (README figures come from it).
#
# Stages, in this order (limits 45 + 50 + 150 + 220 + 80 s: at most about 560 s of wall time with start-up;
# compile runs last because it is the most likely to overrun and the least needed):
#   env       python/torch/GPU/driver, CUDA MPS availability                              -> env.json
#   speed     ms per iteration at extent 8: previous (old) vs current eager (new), torch.profiler top-10
#             of the new step                                                             -> speed.json, profile.txt
#   datagen   64,000 frames at extent 8 (full config, procedural stimulus), on the GPU    -> datagen.json
#   slots     one full-scale slot alone vs 4 at once on the one GPU (2,000 iterations each; CUDA MPS when
#             nvidia-cuda-mps-control exists and works)                                   -> slots.json
#   science   concurrent runs on the one GPU: (a) configs/flyvis_science_cpu.yaml and (b) flyvis_demo_cpu.yaml,
#             3 seeds x {standard, cyclic W-first, cyclic V_rest-first}; (c) the full config with procedural
#             stimulus on the datagen dataset, 32,000 iterations, standard vs cyclic  -> science.json
#   compile   the new step with training.compile=reduce-overhead (CUDA graphs) vs eager -> compile.json
#   checkpoints (not in the default STAGES) train() on the demo config with R2 checkpoints off, in the loop and on
#             the background thread (training.r2_async), and in the loop again (loop2), eager then reduce-overhead;
#             background vs loop R2 rows must agree within the run-to-run noise floor (loop2 vs loop; 0 on the CPU)
#                                                              -> checkpoints.json, checkpoints_compiled.json
#
# Needs: python3 with torch (CUDA build), torch-geometric, numpy, scipy, scikit-learn, matplotlib, tqdm, pyyaml,
# and on PYTHONPATH pydantic>=2, ruamel.yaml, flyvis (connectome JSON). No network, nothing installed.
# Run from the repository root:
#   OUT=/path/out GROUND_TRUTH=/path/to/flyvis/checkpoint bash benchmarks/gpu_check.sh
# CPU dry run with tiny sizes (proves the script end to end):  DEVICE=cpu SMOKE=1 bash benchmarks/gpu_check.sh
# Knobs (env): DEVICE (cuda), GROUND_TRUTH (default: the shared checkpoint if found, else synthetic), SCALE (1.0: multiplies science iteration counts),
# EXTENT (8), FRAMES (64000), SLOTS (4), SLOT_ITERS (2000), COMPILE_MODES ("compile:reduce-overhead"),
# STAGES ("env speed compile datagen slots science"; also: checkpoints), T_SPEED T_COMPILE T_DATAGEN T_SLOTS
# T_SCIENCE T_CHECKPOINTS (seconds), CKPT_ITERS (1000),
# WORK (/tmp/gpu_check_work), PYTHON (python3).
set -uo pipefail

OUT_DIR=${OUT:-/tmp/gpu_check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
SMOKE=${SMOKE:-0}
if [ -z "${GROUND_TRUTH:-}" ]; then  # the shared flyvis checkpoint when there is one ($FLYVIS_SHARED_DATA, ../shared/data)
  GROUND_TRUTH=$(PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "from simulator.ground_truth import shared_checkpoint_dir as d; print(d() or 'synthetic')" 2>/dev/null || echo synthetic)
fi
WORK=${WORK:-/tmp/gpu_check_work}
STAGES=${STAGES:-env speed compile datagen slots science}
if [ "$SMOKE" = 1 ]; then
  EXTENT=${EXTENT:-1}; FRAMES=${FRAMES:-400}; SLOTS=${SLOTS:-2}; SLOT_ITERS=${SLOT_ITERS:-30}; SCALE=${SCALE:-0.003}
  ROUNDS=2; NITER=2; COMPILE_MODES=${COMPILE_MODES:-}
  T_SPEED=${T_SPEED:-240}; T_COMPILE=${T_COMPILE:-400}; T_DATAGEN=${T_DATAGEN:-120}; T_SLOTS=${T_SLOTS:-300}
  T_SCIENCE=${T_SCIENCE:-600}; SCIENCE_FLAGS="--smoke"; T_CHECKPOINTS=${T_CHECKPOINTS:-240}; CKPT_ITERS=${CKPT_ITERS:-60}
else
  EXTENT=${EXTENT:-8}; FRAMES=${FRAMES:-64000}; SLOTS=${SLOTS:-4}; SLOT_ITERS=${SLOT_ITERS:-2000}; SCALE=${SCALE:-1.0}
  ROUNDS=5; NITER=20; COMPILE_MODES=${COMPILE_MODES-compile:reduce-overhead}
  T_SPEED=${T_SPEED:-45}; T_COMPILE=${T_COMPILE:-80}; T_DATAGEN=${T_DATAGEN:-50}; T_SLOTS=${T_SLOTS:-150}
  T_SCIENCE=${T_SCIENCE:-220}; SCIENCE_FLAGS=""; T_CHECKPOINTS=${T_CHECKPOINTS:-120}; CKPT_ITERS=${CKPT_ITERS:-1000}
fi
mkdir -p "$OUT_DIR" "$WORK"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
T0=$(date +%s)
: >"$OUT_DIR/stages.txt"
echo "ground_truth=$GROUND_TRUTH device=$DEVICE smoke=$SMOKE scale=$SCALE extent=$EXTENT frames=$FRAMES" | tee -a "$OUT_DIR/stages.txt"

has_stage() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# stage NAME SECONDS CMD...: run CMD under timeout, log to $OUT/NAME.log, record rc and seconds
stage() {
  local name=$1 limit=$2; shift 2
  local s=$(date +%s)
  echo "== $name (limit ${limit}s, t=$(( s - T0 ))s)"
  timeout -k 15 "$limit" "$@" > >(tee "$OUT_DIR/$name.log") 2>&1
  local rc=$?
  echo "$name rc=$rc seconds=$(( $(date +%s) - s ))" | tee -a "$OUT_DIR/stages.txt"
  return 0
}

MPS_STARTED=0
stop_mps() {
  if [ "$MPS_STARTED" = 1 ]; then
    echo quit | nvidia-cuda-mps-control >/dev/null 2>&1 || true
    MPS_STARTED=0
  fi
}
trap stop_mps EXIT

start_mps() {  # only where the control binary exists; kept only if a CUDA process then works under it
  [ "$DEVICE" = cuda ] || return 0
  command -v nvidia-cuda-mps-control >/dev/null 2>&1 || { echo "mps: nvidia-cuda-mps-control not found"; return 0; }
  export CUDA_MPS_PIPE_DIRECTORY="$WORK/mps/pipe" CUDA_MPS_LOG_DIRECTORY="$WORK/mps/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d; then
    MPS_STARTED=1
    if timeout 60 "$PY" -c "import torch; x = torch.ones(8, device='cuda'); assert float(x.sum()) == 8.0"; then
      echo "mps: started"; echo "mps=1" >>"$OUT_DIR/stages.txt"; return 0
    fi
    echo "mps: a CUDA process failed under MPS; stopped it"
    stop_mps
  fi
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  echo "mps=0" >>"$OUT_DIR/stages.txt"
}

if has_stage env; then
  stage env 60 "$PY" - "$OUT_DIR/env.json" "$DEVICE" <<'PYEOF'
import json, os, platform, shutil, subprocess, sys
out, device = sys.argv[1], sys.argv[2]
env = {"python": platform.python_version(), "cpus": os.cpu_count(), "device": device,
       "mps_control": shutil.which("nvidia-cuda-mps-control")}
try:
    import torch
    env.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), gpu_count=torch.cuda.device_count())
except Exception as err:
    env["torch_error"] = str(err)
for mod in ("torch_geometric", "numpy", "scipy", "sklearn", "pydantic", "ruamel.yaml", "yaml"):
    try:
        m = __import__(mod, fromlist=["_"])
        env[mod] = getattr(m, "__version__", "present")
    except Exception as err:
        env[mod] = f"missing ({type(err).__name__})"
try:  # the connectome carrier is read as a distribution, never imported
    import importlib.metadata as md
    env["flyvis"] = md.version("flyvis")
except Exception as err:
    env["flyvis"] = f"missing ({type(err).__name__})"
if shutil.which("nvidia-smi"):
    q = "name,memory.total,driver_version,clocks.sm,clocks.max.sm"
    r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True)
    env["nvidia_smi"] = r.stdout.strip()
json.dump(env, open(out, "w"), indent=1)
print(json.dumps(env, indent=1))
PYEOF
fi

if has_stage speed; then
  stage speed "$T_SPEED" "$PY" benchmarks/bench_train.py --device "$DEVICE" --extents "$EXTENT" --modes old new \
    --rounds "$ROUNDS" --n-iter "$NITER" --json "$OUT_DIR/speed.json" --profile "$OUT_DIR/profile.txt"
fi


DATA64="$WORK/datagen"
GEN_SETS=(--set simulation.stimulus=procedural --set "simulation.ground_truth=$GROUND_TRUTH"
  --set "simulation.n_frames=$FRAMES" --set "simulation.extent=$EXTENT")
if [ "$SMOKE" = 1 ]; then GEN_SETS+=(--set simulation.n_test_frames=60 --set training.n_rollout_frames=20
  --set training.cluster_n_components=5); fi
# slots and science train on the datagen dataset: asked for without it (and without a dataset left in $WORK),
# datagen runs first anyway
if has_stage datagen || { { has_stage slots || has_stage science; } && [ ! -f "$DATA64/data/meta.json" ]; }; then
  stage datagen "$T_DATAGEN" "$PY" benchmarks/gpu_runs.py datagen --device "$DEVICE" --out "$DATA64" \
    --json "$OUT_DIR/datagen.json" --deadline-s "$(( T_DATAGEN - 10 ))" "${GEN_SETS[@]}"
fi

if has_stage slots || has_stage science; then start_mps; fi

if has_stage slots; then
  stage slots "$T_SLOTS" "$PY" benchmarks/gpu_runs.py slots --device "$DEVICE" --data "$DATA64/data" \
    --work "$WORK/slots" --json "$OUT_DIR/slots.json" --slots "$SLOTS" --iterations "$SLOT_ITERS" \
    --deadline-s "$(( T_SLOTS - 10 ))" "${GEN_SETS[@]}"
fi

if has_stage science; then
  # shellcheck disable=SC2086  # SCIENCE_FLAGS is empty or one flag
  stage science "$T_SCIENCE" "$PY" benchmarks/gpu_runs.py science --device "$DEVICE" --work "$WORK/science" \
    --json "$OUT_DIR/science.json" --scale "$SCALE" --ground-truth "$GROUND_TRUTH" --c-data "$DATA64/data" \
    --c-frames "$FRAMES" --deadline-s "$(( T_SCIENCE - 15 ))" $SCIENCE_FLAGS
fi
stop_mps

if has_stage compile && [ -n "$COMPILE_MODES" ]; then
  # shellcheck disable=SC2086  # COMPILE_MODES is a list
  stage compile "$T_COMPILE" "$PY" benchmarks/bench_train.py --device "$DEVICE" --extents "$EXTENT" \
    --modes new $COMPILE_MODES --rounds "$ROUNDS" --n-iter "$NITER" --json "$OUT_DIR/compile.json"
fi

if has_stage checkpoints; then  # R2 checkpoints in the loop vs on the background thread, eager and CUDA graphs
  stage checkpoints "$T_CHECKPOINTS" "$PY" benchmarks/bench_train.py --checkpoints --device "$DEVICE" \
    --iterations "$CKPT_ITERS" --rounds 2 --work "$WORK/checkpoints" --json "$OUT_DIR/checkpoints.json"
  if [ -n "$COMPILE_MODES" ]; then
    stage checkpoints_compiled "$T_CHECKPOINTS" "$PY" benchmarks/bench_train.py --checkpoints --device "$DEVICE" \
      --iterations "$CKPT_ITERS" --rounds 1 --compile reduce-overhead --work "$WORK/checkpoints" \
      --json "$OUT_DIR/checkpoints_compiled.json"
  fi
fi

echo "== summary (t=$(( $(date +%s) - T0 ))s)"
"$PY" benchmarks/gpu_summary.py "$OUT_DIR" || echo "summary failed (stage JSON files are in $OUT_DIR)"
echo "== total $(( $(date +%s) - T0 )) s"
