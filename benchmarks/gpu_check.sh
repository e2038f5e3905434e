#!/usr/bin/env bash
# The GPU check of issue 16: one prepared script, at most 8 minutes on a CUDA machine.
#
#   bash benchmarks/gpu_check.sh                  # on the CUDA machine (device cuda, full sizes)
#   DEVICE=cpu bash benchmarks/gpu_check.sh       # dry run on CPU, reduced sizes (--quick)
#   bash benchmarks/gpu_check.sh --fetch-wheels   # here, with internet: the wheels it needs there
#
# Steps, each under its own `timeout` (the caps add up to 420 s; 445 s with kill margins):
#   1. the machine: nvidia-smi, python, torch, CUDA;
#   2. the device-parametrised tests (`pytest -m device --device $DEVICE`; tests/conftest.py);
#   3. benchmarks/suite.py (matmul + policies) in exact float32, then with
#      --tf32 --bf16 --compile --cuda_graphs (on CPU the CUDA-only flags are dropped and the
#      report says so);
#   4. a small replica dataset (make_dataset.py --policies shipped, hopper medium), then CQL+COCOA
#      through run_pipeline.py (forward dynamics, anchor seeker, 2,000 policy gradient steps),
#      whose steps/s come from the run's own record (2,000 / time/train_one_epoch);
#   5. one Markdown report: $OUT/gpu_report.md when $OUT is set, else ./gpu_report.md. It is
#      written step by step, so a stopped run still leaves what it measured.
#
# Python: $PYTHON, else python3 (on the device machines the one that holds PyTorch). The repo is
# used in place (PYTHONPATH), not installed: those machines cannot reach a package index. What
# their image lacks (gymnasium, mujoco and their small dependencies) travels as wheels in .whl/
# (made here by --fetch-wheels; `carry` it) and is installed with --no-index into a scratch
# folder. A missing package is named in the report; nothing is faked.
#
# Options (or environment): --device D (DEVICE; default cuda), --quick (QUICK=1; the default on
# cpu), --work DIR (GPU_CHECK_WORK; default a fresh folder under /tmp).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=${DEVICE:-cuda}
QUICK=${QUICK:-}
WORK=${GPU_CHECK_WORK:-}
FETCH=
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --work) WORK=$2; shift 2 ;;
        --fetch-wheels) FETCH=1; shift ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}

# Wheels the device image lacks (its package list: .library/device/KINDS.md), at the versions
# this project is tested with. mujoco imports glfw; mujoco-studio is not imported.
WHEELS="gymnasium==1.4.0 farama-notifications==0.0.6 mujoco==4.0.1 mujoco-core==4.0.1 glfw==2.11.0"
if [ -n "$FETCH" ]; then
    mkdir -p "$ROOT/.whl"
    EXCLUDE=$(git -C "$ROOT" rev-parse --path-format=absolute --git-path info/exclude 2>/dev/null)
    if [ -n "$EXCLUDE" ] && ! grep -qx '/.whl/' "$EXCLUDE" 2>/dev/null; then
        mkdir -p "$(dirname "$EXCLUDE")" && echo '/.whl/' >> "$EXCLUDE"  # never committed
    fi
    # shellcheck disable=SC2086
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$ROOT/.whl" $WHEELS || exit 1
    ls -l "$ROOT/.whl"
    echo "carry .whl in the device call (run: carry [\".whl\"])"
    exit 0
fi

if [ "$DEVICE" = cpu ] && [ -z "$QUICK" ]; then QUICK=1; fi
if [ -n "$QUICK" ]; then  # the dry run: every step, minutes on a busy 2-core CPU
    MODE="quick (reduced sizes: a dry run of the script, not a measurement)"
    T_TESTS=120; T_SUITE=150; T_FAST=200; T_DATA=90; T_CQL=300
    SUITE_ARGS=(--steps 2 --warmup 1 --repeats 1 --matmul_size 256)
    EXACT_ALGOS=(bc iql); FAST_ALGOS=(bc); ROWS=2000; CQL_STEPS=5
    SMALL=(--hidden_dims 32 32 --tr_hidden_dims 32 32 --embedding_dim 4
           --dynamics_hidden_dims 32 32 --dynamics_weight_decay 2.5e-5 5e-5 1e-4)
    MODEL_EPOCHS=1
else
    MODE="full"
    T_TESTS=80; T_SUITE=55; T_FAST=110; T_DATA=35; T_CQL=140  # 420 s (+5 s kill margin each)
    SUITE_ARGS=(--steps 20 --warmup 5 --repeats 3)
    EXACT_ALGOS=(bc cql iql mopo mobile)
    FAST_ALGOS=(cql); ROWS=20000; CQL_STEPS=2000  # compiling: tens of seconds per variant
    SMALL=()
    MODEL_EPOCHS=3
fi

OUT_DIR=${OUT:-$PWD}
REPORT=$OUT_DIR/gpu_report.md
[ -n "$WORK" ] || WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$OUT_DIR" "$WORK"
START=$(date +%s)
export PYTHONUNBUFFERED=1 MUJOCO_GL=${MUJOCO_GL:-egl}

say() { echo "[gpu_check $(($(date +%s) - START))s] $*"; }
md() { printf '%s\n' "$@" >> "$REPORT"; }
# fence FILE [LINES]: the file's last lines in a code block
fence() { md '```'; tail -n "${2:-40}" "$1" >> "$REPORT"; md '```'; }

# run NAME CAP CMD...: CMD under `timeout CAP`, output in $WORK/NAME.log; sets STATUS and SECS
run() {
    local name=$1 cap=$2; shift 2
    local t0=$(date +%s) rc
    say "$name: $* (at most ${cap} s)"
    timeout -k 5 "$cap" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    SECS=$(($(date +%s) - t0))
    case $rc in
        0) STATUS="ok" ;;
        124|137) STATUS="TIMED OUT after ${cap} s" ;;
        *) STATUS="FAILED (exit $rc)" ;;
    esac
    say "$name: $STATUS in ${SECS} s"
    return $rc
}

# --- 1. the machine and the Python environment ---
: > "$REPORT"
md "# GPU check (benchmarks/gpu_check.sh)" ""
md "* started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); device: \`$DEVICE\`; mode: $MODE"
md "* commit: \`$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(
    git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
md "* work folder: \`$WORK\`" ""

SITE=$WORK/site
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$ROOT/.whl/*.whl" > /dev/null; then
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$ROOT"/.whl/*.whl > "$WORK/wheels.log" 2>&1; then
        export PYTHONPATH="$PYTHONPATH:$SITE"
        WHEEL_NOTE="installed from .whl/ into $SITE: $(cd "$ROOT/.whl" && ls -- *.whl | tr '\n' ' ')"
    else
        WHEEL_NOTE="FAILED to install .whl/ (see below)"
    fi
else
    WHEEL_NOTE="none (.whl/ absent; make it with --fetch-wheels where pip can download)"
fi

md "## Machine" ""
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
        > "$WORK/nvidia-smi.txt" 2>&1
    fence "$WORK/nvidia-smi.txt" 10
else
    md "nvidia-smi: not found on this machine" ""
fi
if ! "$PY" - > "$WORK/env.txt" 2>&1 <<'EOF'
import importlib, platform, sys
import torch
print(f"python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, "
          f"capability {p.major}.{p.minor}")
print(f"cpu threads {torch.get_num_threads()}, {platform.platform()}")
for name in ("numpy", "gymnasium", "mujoco", "h5py", "tqdm", "tensorboard", "pytest"):
    try:
        print(f"{name} {importlib.import_module(name).__version__}")
    except Exception as err:  # noqa: BLE001 - the report names whatever is missing
        print(f"{name} MISSING ({type(err).__name__}: {err})")
EOF
then
    md "Python \`$PY\` cannot import torch: nothing below can run." ""
    fence "$WORK/env.txt"
    say "no torch in $PY; report: $REPORT"
    exit 1
fi
fence "$WORK/env.txt"
md "" "* extra wheels: $WHEEL_NOTE"
[ -f "$WORK/wheels.log" ] && [ -s "$WORK/wheels.log" ] && fence "$WORK/wheels.log" 10
if [ "$DEVICE" != cpu ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    md "" "**torch finds no CUDA device**: the CUDA steps below skip or fail; nothing is measured on a GPU."
fi
md ""

# --- 2. the device-parametrised tests ---
md "## Device-parametrised tests (\`pytest -m device --device $DEVICE\`)" ""
run tests "$T_TESTS" "$PY" -m pytest "$ROOT/tests" -m device --device "$DEVICE" -q \
    -p no:cacheprovider -rfEs --rootdir "$ROOT" -c "$ROOT/pytest.ini" \
    --continue-on-collection-errors  # a module needing a missing extra must not stop the rest
md "* $STATUS in ${SECS} s; summary: \`$(grep -E '(passed|failed|error|skipped|deselected)' \
    "$WORK/tests.log" | tail -n 1)\`" ""
fence "$WORK/tests.log" 30
md ""

# --- 3. the speed suite, exact and with every speed option ---
suite() {  # suite NAME CAP TITLE ARGS...
    local name=$1 cap=$2 title=$3; shift 3
    md "## Speed suite: $title" ""
    run "$name" "$cap" "$PY" "$ROOT/benchmarks/suite.py" --device "$DEVICE" --only matmul policies \
        --markdown "$WORK/$name.md" "$@"
    md "* \`suite.py --device $DEVICE --only matmul policies $*\`: $STATUS in ${SECS} s" ""
    if [ -f "$WORK/$name.md" ]; then
        sed '/^# Speed table/d; s/^## /### /' "$WORK/$name.md" >> "$REPORT"
    else  # stopped or failed: what it printed
        fence "$WORK/$name.log" 60
    fi
    md ""
}
suite suite_exact "$T_SUITE" "exact float32 (the default)" "${SUITE_ARGS[@]}" \
    --algos "${EXACT_ALGOS[@]}"

FAST=(--tf32 --bf16 --compile --cuda_graphs)
if [ "$DEVICE" = cpu ]; then
    FAST=(--tf32 --bf16 --compile)
    say "--cuda_graphs needs CUDA: not run on cpu; --tf32 has no effect on cpu"
    FAST_NOTE="on cpu: --cuda_graphs dropped (it needs CUDA; suite.py refuses it), --tf32 has no effect"
else
    FAST_NOTE="all four options"
fi
suite suite_fast "$T_FAST" "${FAST[*]} ($FAST_NOTE)" "${SUITE_ARGS[@]}" \
    --algos "${FAST_ALGOS[@]}" "${FAST[@]}"

# --- 4. CQL+COCOA end to end: dataset, dynamics, seeker, policy steps ---
md "## CQL+COCOA, $CQL_STEPS gradient steps (run_pipeline.py)" ""
DATA=$WORK/replica
if run dataset "$T_DATA" "$PY" "$ROOT/run_example/make_dataset.py" --policies shipped \
        --robot hopper --levels medium --num_samples "$ROWS" --out_dir "$DATA" --device "$DEVICE" \
        --progress False; then
    md "* dataset: \`make_dataset.py --policies shipped --robot hopper --levels medium --num_samples $ROWS\`: $STATUS in ${SECS} s"
    PIPE=(--task replica:hopper-medium-v2 --algo cql --variant cocoa --log_dir "$WORK/log"
          --device "$DEVICE" --progress False --epoch 1 --step_per_epoch "$CQL_STEPS"
          --eval_episodes 1 --dynamics_max_epochs "$MODEL_EPOCHS"
          --seeker.asp_epoch "$MODEL_EPOCHS" "${SMALL[@]}")
    COCOA_REPLICA_DIR=$DATA run cql "$T_CQL" "$PY" "$ROOT/run_example/run_pipeline.py" "${PIPE[@]}"
    md "* \`run_pipeline.py ${PIPE[*]}\`: $STATUS in ${SECS} s (dynamics and seeker: at most $MODEL_EPOCHS epoch(s) each)"
    if "$PY" - "$WORK/log" "$CQL_STEPS" > "$WORK/cql_rate.txt" 2>&1 <<'EOF'
import csv, sys
from pathlib import Path
runs = sorted(Path(sys.argv[1]).glob("*/cql_cocoa/*/record/policy_training_progress.csv"))
if not runs:
    sys.exit("no policy_training_progress.csv: the policy stage did not finish an epoch")
rows = list(csv.DictReader(runs[-1].open()))
seconds = float(rows[-1]["time/train_one_epoch"])
steps = int(sys.argv[2])
print(f"{steps / seconds:.3g} steps/s ({steps} steps in {seconds:.1f} s, timestep "
      f"{rows[-1]['timestep']}; the first, warm-up steps included)")
EOF
    then
        md "* **CQL+COCOA: $(cat "$WORK/cql_rate.txt")**"
        say "CQL+COCOA: $(cat "$WORK/cql_rate.txt")"
    else
        md "* steps/s: not measured ($(tail -n 1 "$WORK/cql_rate.txt"))"
    fi
    md ""
    fence "$WORK/cql.log" 25
else
    md "* dataset: $STATUS in ${SECS} s: CQL+COCOA not run" ""
    fence "$WORK/dataset.log" 25
fi
md ""

# --- 5. done ---
TOTAL=$(($(date +%s) - START))
md "Total: ${TOTAL} s."
say "done in ${TOTAL} s; report: $REPORT"
