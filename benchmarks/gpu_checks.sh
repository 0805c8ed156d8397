#!/usr/bin/env bash
# The GPU path in one go, for the first minutes on a CUDA machine (aubench installed there). STEPS names
# the steps to run, in this order (default: all but cpu-default):
#   doctor       `aubench doctor` (versions, the device, the plugins that entry points found);
#   bench        bench_gpu.py: the paper presets' images/s, memory and time per BP4D fold (one table);
#   cells        one real cell per default model family through `aubench run` on the GPU (SynthAU generated
#                from scratch in a fresh AUBENCH_HOME; bf16 autocast, channels_last, pinned memory,
#                inference-mode evaluation), then their leaderboard with the records' timings;
#   default      the whole default run on the GPU through bench_default_run.py (wall time, each method's
#                share, the calibration figure), JOBS cells at a time (default 1), cut at DEFAULT_RUN_LIMIT
#                seconds; every cell's F1 and seconds go to OUTDIR/default_cells.tsv;
#   cpu-default  the same default run on the machine's CPU cores alone (one cell per core), for comparison;
#   tests        the test suite on the GPU machine, cut at TESTS_LIMIT: its GPU tests (tests/aubench/test_gpu.py)
#                run cells there; the rest keeps CUDA hidden, as on CI.
# CELLS names the cells step's methods. Each step has its own time limit (BENCH_LIMIT, CELL_LIMIT,
# DEFAULT_RUN_LIMIT, CPU_RUN_LIMIT, TESTS_LIMIT) so that a slow one cannot starve the rest; everything it prints also
# goes to OUTDIR.
#
#   bash benchmarks/gpu_checks.sh OUTDIR                          # on the GPU machine
#   STEPS="default tests" JOBS=8 bash benchmarks/gpu_checks.sh OUTDIR
#   DEVICE=cpu TINY=1 bash benchmarks/gpu_checks.sh /tmp/g        # the same script on a CPU, in a few minutes
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
steps=" ${STEPS:-doctor bench cells default tests} "
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export AUBENCH_HOME="$work/home" PYTHONUNBUFFERED=1
step() { echo; echo "=== $1 ($(date +%T))"; }
wanted() { [[ "$steps" == *" $1 "* ]]; }

# cells.tsv RUNS: one line per record (method, protocol, fold, seed, F1, seconds, device)
cells_tsv() {
    $py - "$1" <<'EOF'
import json, sys, pathlib
print("method\tprotocol\tfold\tseed\tf1\tseconds\tdevice")
for rec in sorted(pathlib.Path(sys.argv[1]).rglob("record.json")):
    r = json.loads(rec.read_text())
    print(r["method"], r["protocol"], r["fold"], r["seed"], f'{r["f1_avg"]:.1f}',
          f'{r["timings"]["total_seconds"]:.1f}', r.get("environment", {}).get("device"), sep="\t")
EOF
}

# default_run NAME LIMIT JOBS DEVICE: bench_default_run.py into OUTDIR/NAME.txt and NAME_cells.tsv
default_run() {
    local limit=$2
    [ -n "${TINY:-}" ] && limit=1
    timeout "$limit" $py "$here/bench_default_run.py" --jobs "$3" --keep "$work/$1" "engine.device=$4" \
        >"$out/$1.txt" 2>&1
    echo "$1: exit $? (limit $limit s; 124 = cut at the limit), $(find "$work/$1" -name record.json 2>/dev/null \
        | wc -l) records"
    tail -n 14 "$out/$1.txt"
    [ -d "$work/$1" ] && cells_tsv "$work/$1" >"$out/$1_cells.tsv"
}

if wanted doctor; then
    step doctor
    $py -m aubench.cli doctor 2>&1 | tee "$out/doctor.txt"
fi

if wanted bench; then
    step bench_gpu
    if [ -n "${TINY:-}" ]; then bench_args=(--device "$device" --tiny); else bench_args=(--device "$device"); fi
    timeout "${BENCH_LIMIT:-300}" $py "$here/bench_gpu.py" "${bench_args[@]}" 2>&1 | tee "$out/bench_gpu.md"
    echo "bench_gpu exit: ${PIPESTATUS[0]}"
fi

if wanted cells; then
    step "one cell per model family on $device"
    read -r -a cells <<<"${CELLS-vmnc-bce fantrans monet}"
    [ -n "${TINY:-}" ] && cells=(vmnc-bce)
    for m in "${cells[@]}"; do
        t0=$SECONDS
        timeout "${CELL_LIMIT:-150}" $py -m aubench.cli run "$m" \
            --protocol synth-bp4d-3fold --fold 1 --runs-dir "$work/cells" --no-progress "engine.device=$device" 2>&1 \
            | tail -4
        echo "$m: exit ${PIPESTATUS[0]}, $(( SECONDS - t0 )) s wall"
    done 2>&1 | tee "$out/cells.txt"
    { $py -m aubench.cli leaderboard --runs-dir "$work/cells" --out "$work/cells.md" && cat "$work/cells.md"; } 2>&1 \
        | tee -a "$out/cells.txt"
    cells_tsv "$work/cells" | tee -a "$out/cells.txt"
fi

if wanted default; then
    step "default run on $device, ${JOBS:-1} cell(s) at a time"
    default_run default "${DEFAULT_RUN_LIMIT:-300}" "${JOBS:-1}" "$device"
fi

if wanted cpu-default; then
    step "default run on the CPU, one cell per core"
    AUBENCH_HOME="$work/cpu-home" default_run cpu_default "${CPU_RUN_LIMIT:-${DEFAULT_RUN_LIMIT:-300}}" 0 cpu
fi

if wanted tests; then
    step "the test suite with $device visible"
    # -v names each test as it ends, so a suite cut at its limit still says which failed
    timeout "${TESTS_LIMIT:-300}" $py -m pytest -v -rfE -p no:cacheprovider ${TEST_ARGS:-} "$here/../tests" \
        >"$out/tests.txt" 2>&1
    echo "tests exit: $? (124 = cut at the limit)"
    grep -E "(FAILED|ERROR)( |$)|^(FAILED|ERROR) |passed|failed" "$out/tests.txt" | tail -n 40
fi
rm -rf "$work"
