#!/usr/bin/env bash
# The first thing to run on a machine with an NVIDIA GPU (docs/gpu.md); within 8 minutes on one GPU:
#   1 env       versions, the device, nvcc, which of nerfhead's packages are missing
#   2 build     the CUDA kernels, in place (NERFHEAD_CUDA=1), then checks nerfhead._C has them
#   3 parity    every CUDA parity test (pytest -m cuda: forward and gradients vs the torch twins); a skip fails
#   4 bench_ops scripts/bench_ops.py (hash grid, march + composite, fused splat pose: CUDA, C++ CPU and twin in one run)
#   5 synth     a 16-camera rig capture (4 timesteps, 128x128)
#   6 fit       a short splat-head fit of it on the GPU (90 s budget), with its held-out evaluation
#   7 bench_render            scripts/bench_render.py: the fitted head at 512x512, CUDA events
#   8 bench_render_gaussians  scripts/bench_render_gaussians.py: gsplat's rasteriser (CUDA) beside ours (C++ CPU,
#                             torch twin) on the same scenes; its parity is one of the tests in step 3
# Writes OUT/gpu_check.json (every step: status, exit code, seconds, and the JSON a bench step printed) and
# OUT/gpu_check.log (everything the steps printed). Exit code 0 only when every step passed.
#
#   scripts/gpu_check.sh [--out DIR] [--python PY]    # on the GPU machine (default OUT: out/gpu_check)
#   scripts/gpu_check.sh --dry [--out DIR]            # on a CPU: the same steps, CPU-sized, checking themselves
#   --only STEP[,STEP...]                              # run only these steps (fit and the render bench go together)
#
# --dry runs every step with the smallest sizes on the CPU, in about a minute: env without a device, build checks
# the CUDA sources and the build script (CI compiles them in tests/test_build.py), parity collects the CUDA tests
# (and fails if none is found), the benches and the fit run on CPU backends at toy sizes. tests/scripts/ runs it.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
ONLY=
OUT=out/gpu_check
PY=${PYTHON:-}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry) MODE=dry ;;
    --out) OUT=$2; shift ;;
    --python) PY=$2; shift ;;
    --only) ONLY=",$2,"; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT/work"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_check.log
STEPS=$OUT/steps.tsv
: > "$LOG"
: > "$STEPS"
BUDGET_S=480
T_START=$(date +%s)
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # scripts/*.py import nerfhead from this checkout
CUDA_TESTS=$(grep -rl --include='test_*.py' "pytest.mark.cuda" tests | sort | tr '\n' ' ')

# step NAME TIMEOUT_S CMD...: run CMD (stdout to OUT/NAME.out and the log, stderr to the log), record the result.
step() {
  local name=$1 limit=$2
  shift 2
  local t0 t1 rc
  if [[ -n "$ONLY" && "$ONLY" != *",$name,"* ]]; then return 0; fi
  echo "=== $name ($MODE): $*" | tee -a "$LOG" >&2
  t0=$(date +%s%N)
  timeout "$limit" "$@" > "$OUT/$name.out" 2>> "$LOG"
  rc=$?
  t1=$(date +%s%N)
  cat "$OUT/$name.out" >> "$LOG"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( (t1 - t0) / 1000000 ))" >> "$STEPS"
  echo "=== $name: exit $rc" | tee -a "$LOG" >&2
  return 0
}

WORK=$OUT/work
CAP=$WORK/capture
RUN=$WORK/run
step env 60 "$PY" - "$MODE" <<'EOF'
import importlib.util, json, platform, shutil, subprocess, sys
import torch
mode = sys.argv[1]
need = ["numpy", "tyro", "rich", "safetensors", "imageio", "av", "soundfile", "plyfile", "trimesh", "scipy",
        "skimage", "PIL", "yaml", "packaging", "gsplat", "pytest"]
nvcc = shutil.which("nvcc")
info = {
    "mode": mode,
    "python": platform.python_version(),
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(),
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "nvcc": subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    if nvcc else None,
    "missing_packages": [m for m in need if importlib.util.find_spec(m) is None],
}
print(json.dumps(info))
if mode == "gpu" and not info["cuda_available"]:
    sys.exit("no CUDA device: run with --dry on a CPU")
if info["missing_packages"] and (mode == "gpu" or set(info["missing_packages"]) - {"gsplat"}):
    sys.exit(f"missing packages: {info['missing_packages']} (docs/gpu.md: carry them as wheels)")
EOF

if [[ $MODE == gpu ]]; then
  step build 300 env NERFHEAD_CUDA=1 MAX_JOBS="$(nproc)" bash -c \
    "'$PY' setup.py -q build_ext --inplace >&2 && '$PY' -c 'import json; from nerfhead import _backend as b; \
assert b.has_cuda_kernels(), \"nerfhead._C has no CUDA kernels\"; print(json.dumps({\"with_cuda\": True}))'"
  # shellcheck disable=SC2086
  step parity 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider -rs --junitxml="$OUT/parity.xml" $CUDA_TESTS
  step bench_ops 120 "$PY" scripts/bench_ops.py --json
  step synth 60 "$PY" -m nerfhead synth --rig nersemble16 --frames 4 --res 128 --out "$CAP"
  step fit 180 "$PY" -m nerfhead fit "$CAP" --model splat --device cuda --max-minutes 1.5 --out "$RUN"
  step bench_render 120 "$PY" scripts/bench_render.py --run "$RUN" --res 512 --ref-res 128 --device cuda
  step bench_render_gaussians 120 "$PY" scripts/bench_render_gaussians.py --quick
else
  step build 60 "$PY" -c "import json; from cuda_ext import build as B; from nerfhead import _backend as b
src = B.cuda_sources(); assert src, 'no CUDA sources'; assert b.has_cpu_kernels(), 'nerfhead._C is not built'
print(json.dumps({'cuda_sources': len(src), 'nvcc': B.find_nvcc(), 'with_cuda': b.has_cuda_kernels()}))"
  # shellcheck disable=SC2086
  step parity 60 "$PY" -m pytest -q -m cuda -p no:cacheprovider --collect-only $CUDA_TESTS
  step bench_ops 60 "$PY" scripts/bench_ops.py --json --quick --backends cpu
  step synth 60 "$PY" -m nerfhead synth --rig nersemble16 --frames 1 --res 32 --supersample 1 --out "$CAP"
  step fit 60 "$PY" -m nerfhead fit "$CAP" --model splat --device cpu --preset fast --steps 2 --threads 1 \
    --out "$RUN"
  step bench_render 60 "$PY" scripts/bench_render.py --run "$RUN" --res 32 --ref-res 16 --repeats 1 \
    --ref-repeats 1 --device cpu
  step bench_render_gaussians 60 "$PY" scripts/bench_render_gaussians.py --quick --repeats 1 --backends cpu
fi

"$PY" - "$OUT" "$MODE" "$T_START" "$BUDGET_S" <<'EOF'
import json, re, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path
out, mode, t_start, budget = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def printed_json(text):
    """The JSON object a step printed: the whole output from its first brace, else its last one-line object."""
    candidates = [text[text.find("{"):]] if "{" in text else []
    candidates += [ln for ln in reversed(text.splitlines()) if ln.startswith("{")]
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            pass
    return None


steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, ms = line.split("\t")
    text = (out / f"{name}.out").read_text()
    s = {"step": name, "exit_code": int(rc), "seconds": round(int(ms) / 1000, 2)}
    s["result"] = printed_json(text)
    if name == "fit" and (out / "work" / "run" / "fit.json").is_file():
        fit = json.loads((out / "work" / "run" / "fit.json").read_text())
        s["result"] = {k: fit.get(k) for k in ("device", "steps", "seconds", "eval")}
    if name == "parity":
        if mode == "gpu" and (out / "parity.xml").is_file():
            suite = ET.parse(out / "parity.xml").getroot().iter("testsuite").__next__()
            counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            s["result"] = counts
            if counts["skipped"] or counts["tests"] == 0:
                s["exit_code"] = s["exit_code"] or 1  # a skipped CUDA test is a failure here
        else:
            m = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
            s["result"] = {"collected": int(m.group(1)) if m else 0}
            if not m or int(m.group(1)) == 0:
                s["exit_code"] = s["exit_code"] or 1
    s["status"] = "passed" if s["exit_code"] == 0 else ("timeout" if s["exit_code"] == 124 else "failed")
    steps.append(s)
total = time.time() - t_start
report = {
    "mode": mode,
    "ok": all(s["status"] == "passed" for s in steps),
    "seconds": round(total, 1),
    "budget_s": budget,
    "within_budget": total <= budget,
    "steps": steps,
}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps({k: report[k] for k in ("mode", "ok", "seconds", "within_budget")}))
print(" ".join(f"{s['step']}={s['status']}" for s in steps))
sys.exit(0 if report["ok"] and (mode == "dry" or report["within_budget"]) else 1)
EOF
