#!/usr/bin/env bash
# One prepared GPU check of fourdcontrast's sparse engine (issue 15), for a machine with a GPU and
# PyTorch but no network: it installs nothing. The project runs from this source tree on PYTHONPATH;
# optional packages that are missing are named in the results and their tests skipped.
#
#   scripts/gpu_check.sh                       # the GPU run (also: make gpu-check), ≤ 8 minutes
#   scripts/gpu_check.sh --device cpu --quick  # the same stages on tiny inputs (what tests/ runs)
#   scripts/gpu_check.sh --stages bench        # rerun some stages: env,tests,bench,pretrain
#
# Stages (each under its own `timeout`; a failed stage is recorded and the next one runs):
#   1. environment: Python, torch, CUDA, the GPU, which optional packages are present
#   2. engine tests on the device: outputs and gradients against the CPU in float64 and float32,
#      autocast, device moves, host-synchronisation counts (tests/sparse/test_devices.py), the engine
#      suite on the PyTorch path (the one CUDA takes), Batch.to / pin_memory
#   3. engine benchmark (fourdcontrast.models.benchmark) per configuration — MinkUNet34 3D 2 cm,
#      MinkUNet14 4D 5 cm and 2 cm — fp32 and bf16 autocast: time per forward+backward, voxels/s, peak
#      memory, bf16/fp32 speed ratio, share of the time spent building kernel maps
#   4. one paper-preset pre-training step (benchmarks/pretrain_step.py), when that file exists
# Everything goes into one results file, ${OUT:-outputs/gpu_check}/gpu_check.txt, and the figures into
# gpu_check.json beside it. Exit status 0 when every stage passed or was skipped.
#
# Environment: PYTHON (default python3), OUT (results folder), GPU_CHECK_BUDGET (seconds for all stages,
# default 470), GPU_CHECK_PRETRAIN_SCRIPT (default benchmarks/pretrain_step.py), GPU_CHECK_T_TESTS and
# GPU_CHECK_T_PRETRAIN (stage time limits, default 120 and 90 s).
set -u -o pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT" || exit 2
PYTHON=${PYTHON:-python3}
DEVICE=cuda
QUICK=0
STAGES="env,tests,bench,pretrain"
usage() { sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=${2:?--device needs cpu or cuda}; shift 2 ;;
    --device=*) DEVICE=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --stages) STAGES=${2:?--stages needs a list}; shift 2 ;;
    --stages=*) STAGES=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cpu|cuda) ;; *) echo "gpu_check: --device must be cpu or cuda" >&2; exit 2 ;; esac

OUT_DIR=${OUT:-outputs/gpu_check}
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
RESULTS="$OUT_DIR/gpu_check.txt"
FIGURES="$OUT_DIR/gpu_check.json"
WORK="$OUT_DIR/stages"
rm -rf "$WORK" && mkdir -p "$WORK"
PRETRAIN_SCRIPT=${GPU_CHECK_PRETRAIN_SCRIPT:-benchmarks/pretrain_step.py}
BUDGET=${GPU_CHECK_BUDGET:-470}

export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE
# The compiled CPU kernels would be built (~30-60 s, needs ninja) for the CPU references; the PyTorch
# path gives the same results and is the one CUDA takes.
export FOURDCONTRAST_NATIVE=0

if [ "$QUICK" = 1 ]; then
  BENCH_CONFIGS=("MinkUNet14-3D-10cm:60" "MinkUNet14-4D-25cm:60")
  BENCH_REPEATS=1
  BENCH_EXTRA=(--skip-memory)
  TESTS=(tests/sparse/test_devices.py -k "replace_features or sync_free_maps")
  PRETRAIN_ARGS=(--device "$DEVICE" --preset cpu-small --batch 1 --steps 1 --engines torch
                 --set data.voxel_size_3d=0.2 --set data.voxel_size_4d=0.4)
  T_TESTS=${GPU_CHECK_T_TESTS:-60} T_PRETRAIN=${GPU_CHECK_T_PRETRAIN:-60}
else
  # seconds per configuration (CUDA start-up, warm-up, 3 timed runs per precision, map-share forwards)
  BENCH_CONFIGS=("MinkUNet34-3D-2cm:50" "MinkUNet14-4D-5cm:50" "MinkUNet14-4D-2cm:110")
  BENCH_REPEATS=3
  BENCH_EXTRA=()
  TESTS=(tests/sparse/test_devices.py tests/sparse/test_engine.py tests/data/test_dataset.py
         -k "test_devices or (test_engine and pytorch) or test_batch_")
  PRETRAIN_ARGS=(--device "$DEVICE" --preset paper --batch 4 --steps 3 --engines torch)
  T_TESTS=${GPU_CHECK_T_TESTS:-120} T_PRETRAIN=${GPU_CHECK_T_PRETRAIN:-90}
fi

START=$(date +%s)
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
wanted() { case ",$STAGES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
log() { echo "$*" | tee -a "$RESULTS"; }

# record NAME STATUS SECONDS DETAIL: one line of the stage table (tab-separated, read by the summary)
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$WORK/stages.tsv"; }

# stage NAME TIMEOUT COMMAND...: run under `timeout`, log the command and the tail of its output
stage() {
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 5 ]; then
    log "== $name: skipped (the ${BUDGET} s budget is spent)"
    record "$name" skipped 0 "budget spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local logfile="$WORK/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').log"
  echo "== $name (timeout ${limit} s) ..."
  local t0; t0=$(now)
  timeout --kill-after=10 "$limit" "$@" > "$logfile" 2>&1
  local rc=$?
  local secs; secs=$(elapsed "$t0")
  local status=ok
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="timed out"; elif [ "$rc" != 0 ]; then status="failed (exit $rc)"; fi
  local detail; detail=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|[0-9]+ (passed|failed|skipped|error)' "$logfile" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//')
  {
    echo
    echo "== $name: $status in ${secs} s${detail:+ — $detail}"
    echo "\$ $*"
    tail -n 60 "$logfile" | sed 's/^/    /'
  } >> "$RESULTS"
  echo "   $status in ${secs} s${detail:+ — $detail}"
  record "$name" "$status" "$secs" "$detail"
  return 0
}

{
  echo "# fourdcontrast GPU check (scripts/gpu_check.sh) — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# device $DEVICE, quick $QUICK, stages $STAGES, budget ${BUDGET} s, host $(hostname 2>/dev/null || echo '?')"
  echo "# source $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'not a git checkout')$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)')"
  echo "# python: $(command -v "$PYTHON" || echo "$PYTHON not found")"
} > "$RESULTS"
cat "$RESULTS"

# ---- 1. environment ------------------------------------------------------------------------------------
cat > "$WORK/env.py" <<'EOF'
import importlib.util, json, os, platform, sys

device, path = sys.argv[1], sys.argv[2]
info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
optional = ["numpy", "scipy", "pytest", "hypothesis", "tqdm", "numba", "matplotlib", "trimesh", "ninja",
            "yaml", "MinkowskiEngine"]
info["packages_present"] = [m for m in optional if importlib.util.find_spec(m) is not None]
info["packages_missing"] = [m for m in optional if m not in info["packages_present"]]
import torch

info["torch"] = torch.__version__
info["torch_cuda"] = torch.version.cuda
info["cuda_available"] = torch.cuda.is_available()
if info["cuda_available"]:
    p = torch.cuda.get_device_properties(0)
    info["gpu"] = p.name
    info["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
    info["gpu_capability"] = f"{p.major}.{p.minor}"
    info["gpu_count"] = torch.cuda.device_count()
info["nonzero_static"] = hasattr(torch, "nonzero_static")


def save():
    with open(path, "w") as fh:
        json.dump(info, fh, indent=1)


save()
for k, v in info.items():
    print(f"{k}: {v}")
if device == "cuda" and not info["cuda_available"]:
    sys.exit(f"torch {torch.__version__} sees no CUDA device")
import fourdcontrast.models.resunet  # noqa: E402,F401  (needs no trimesh, numba or matplotlib)
from fourdcontrast.sparse import Conv, SparseTensor  # noqa: E402

x = SparseTensor(torch.ones(4, 2), torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 5, 5, 5]]))
y = Conv(2, 3, 3, dimension=3).to(device)(x.to(device))
info["smoke_conv"] = {"device": str(y.F.device), "dtype": str(y.F.dtype), "sync_free_maps": y.manager.sync_free}
print(f"smoke_conv: {info['smoke_conv']}")
save()
if device == "cuda":  # host synchronisations of a MinkUNet14 4D forward+backward (bf16 autocast)
    import warnings

    from fourdcontrast.models.resunet import MinkUNet14
    from fourdcontrast.models.benchmark import room_coordinates

    def syncs(x):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = net(x)
                out.F.float().sum().backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    try:
        coords = torch.as_tensor(room_coordinates(0.1, frames=4), device="cuda")
        feats = torch.ones(len(coords), 3, device="cuda")
        net = MinkUNet14(3, 8, dimension=4).cuda()
        warm = SparseTensor(feats, coords)
        syncs(warm)
        fresh = SparseTensor(feats, coords)
        info["host_syncs"] = {"voxels": len(coords), "fresh_maps": syncs(fresh),
                              "kernel_maps": fresh.manager.num_kernel_maps,
                              "coordinate_sets": len(fresh.manager),
                              "cached_maps": syncs(SparseTensor(feats, coords, manager=warm.manager,
                                                                coordinate_key=warm.coordinate_key))}
    except Exception as exc:  # recorded; the engine tests judge
        info["host_syncs"] = f"{type(exc).__name__}: {exc}"
    print(f"host_syncs: {info['host_syncs']}")
    save()
EOF
if wanted env; then
  stage "environment" 45 "$PYTHON" "$WORK/env.py" "$DEVICE" "$WORK/env.json"
fi

# ---- 2. engine tests -------------------------------------------------------------------------------------
if wanted tests; then
  if "$PYTHON" -c "import pytest" 2>/dev/null; then
    stage "engine tests ($DEVICE)" "$T_TESTS" env FOURDCONTRAST_QUICK=1 "$PYTHON" -m pytest -q -rs "${TESTS[@]}"
  else
    log "== engine tests: skipped (pytest is not installed)"
    record "engine tests ($DEVICE)" skipped 0 "pytest not installed"
  fi
fi

# ---- 3. engine benchmark -----------------------------------------------------------------------------------
if wanted bench; then
  for entry in "${BENCH_CONFIGS[@]}"; do
    config=${entry%%:*}
    limit=${entry##*:}
    stage "benchmark $config" "$limit" "$PYTHON" -m fourdcontrast.models.benchmark --device "$DEVICE" \
      --engine torch --config "$config" --precision fp32 --precision bf16 --map-share \
      --repeats "$BENCH_REPEATS" --timeout "$((limit - 5))" --json "$WORK/bench_$config.json" \
      ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"}
  done
fi

# ---- 4. pre-training step ------------------------------------------------------------------------------------
if wanted pretrain; then
  if [ -f "$PRETRAIN_SCRIPT" ]; then
    stage "pretraining step" "$T_PRETRAIN" "$PYTHON" "$PRETRAIN_SCRIPT" "${PRETRAIN_ARGS[@]}"
  else
    log ""
    log "== pretraining step: skipped: $PRETRAIN_SCRIPT not present"
    record "pretraining step" skipped 0 "$PRETRAIN_SCRIPT not present"
  fi
fi

# ---- summary: the stage table into the results file, every figure into gpu_check.json -----------------------
cat > "$WORK/summary.py" <<'EOF'
import glob, json, os, sys

work, figures, device, quick, total = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
stages = []
if os.path.exists(os.path.join(work, "stages.tsv")):
    for line in open(os.path.join(work, "stages.tsv")):
        name, status, seconds, detail = (line.rstrip("\n").split("\t") + [""] * 4)[:4]
        stages.append({"stage": name, "status": status, "seconds": float(seconds or 0), "detail": detail})
env = {}
if os.path.exists(os.path.join(work, "env.json")):
    env = json.load(open(os.path.join(work, "env.json")))
rows, figures_by_config = [], {}
for path in sorted(glob.glob(os.path.join(work, "bench_*.json"))):
    rows += json.load(open(path))["rows"]
for r in rows:
    if r["engine"] != "torch":
        continue
    f = figures_by_config.setdefault(r["name"], {"voxels": r["voxels"]})
    p = r["precision"]
    f[f"{p}_s_per_forward_backward"] = r["median_s"]
    f[f"{p}_voxels_per_s"] = r["voxels_per_s"]
    f[f"{p}_peak_mib"] = r["peak_rss_mb"]
    f[f"{p}_map_share"] = r["map_share"]
    if p == "bf16":
        f["bf16_output_difference_vs_fp32"] = r["difference_vs_fp32"]
for f in figures_by_config.values():
    if f.get("fp32_s_per_forward_backward") and f.get("bf16_s_per_forward_backward"):
        f["bf16_over_fp32_speed"] = f["fp32_s_per_forward_backward"] / f["bf16_s_per_forward_backward"]
ok = all(s["status"] in ("ok", "skipped") for s in stages)
payload = {"device": device, "quick": quick, "total_seconds": float(total), "passed": ok,
           "environment": env, "stages": stages, "benchmark": figures_by_config, "benchmark_rows": rows}
tmp = figures + ".tmp"
with open(tmp, "w") as fh:
    json.dump(payload, fh, indent=1)
os.replace(tmp, figures)
print("\n== summary" + ("" if ok else " (SOME STAGES FAILED)"))
for s in stages:
    print(f"  {s['stage']:<34} {s['status']:<18} {s['seconds']:>7.1f} s  {s['detail']}")
for name, f in figures_by_config.items():
    def g(key, fmt):
        v = f.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) else "-"
    print(f"  {name}: {f['voxels']} voxels; fp32 {g('fp32_s_per_forward_backward', '.3f')} s "
          f"({g('fp32_voxels_per_s', '.3g')} vox/s, peak {g('fp32_peak_mib', '.0f')} MiB, maps "
          f"{g('fp32_map_share', '.1%')}); bf16 {g('bf16_s_per_forward_backward', '.3f')} s "
          f"(x{g('bf16_over_fp32_speed', '.2f')} speed, peak {g('bf16_peak_mib', '.0f')} MiB, "
          f"output diff {g('bf16_output_difference_vs_fp32', '.1e')})")
print(f"  total {float(total):.0f} s; figures: {figures}")
sys.exit(0 if ok else 1)
EOF
TOTAL=$(( $(date +%s) - START ))
"$PYTHON" "$WORK/summary.py" "$WORK" "$FIGURES" "$DEVICE" "$QUICK" "$TOTAL" 2>&1 | tee -a "$RESULTS"
status=${PIPESTATUS[0]}
echo "results: $RESULTS"
exit "$status"
