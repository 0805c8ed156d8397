#!/usr/bin/env bash
# The GPU path in one go, for the first minutes on a CUDA machine (aubench installed there):
#   1. `aubench doctor` (versions, the device, the plugins that entry points found);
#   2. bench_gpu.py: the paper presets' images/s, memory and time per BP4D fold (one table);
#   3. one real cell per default model family through `aubench run` on the GPU (SynthAU generated from
#      scratch in a fresh AUBENCH_HOME; bf16 autocast, channels_last, pinned memory, inference-mode
#      evaluation), then their leaderboard with the records' timings;
#   4. the whole default run on the GPU (`aubench run --all`; DEFAULT_METHODS="a b": those methods only),
#      cut at DEFAULT_RUN_LIMIT seconds.
# CELLS names step 3's methods. Each step has its own time limit (BENCH_LIMIT, CELL_LIMIT,
# DEFAULT_RUN_LIMIT, TOTAL_LIMIT) so that a slow one cannot starve the rest; everything it prints also
# goes to OUTDIR.
#
#   bash benchmarks/gpu_checks.sh OUTDIR                 # on the GPU machine
#   DEVICE=cpu TINY=1 bash benchmarks/gpu_checks.sh /tmp/g   # the same script on a CPU, in a few minutes
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTDIR}
mkdir -p "$out"
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
export AUBENCH_HOME="$work/home" PYTHONUNBUFFERED=1
step() { echo; echo "=== $1 ($(date +%T))"; }

step doctor
$py -m aubench.cli doctor 2>&1 | tee "$out/doctor.txt"

step bench_gpu
if [ -n "${TINY:-}" ]; then bench_args=(--device "$device" --tiny); else bench_args=(--device "$device"); fi
timeout "${BENCH_LIMIT:-300}" $py "$here/bench_gpu.py" "${bench_args[@]}" 2>&1 | tee "$out/bench_gpu.md"
echo "bench_gpu exit: ${PIPESTATUS[0]}"

step "one cell per model family on $device"
read -r -a cells <<<"${CELLS-vmnc-bce fantrans monet}"
[ -n "${TINY:-}" ] && cells=(vmnc-bce)
for m in "${cells[@]}"; do
    t0=$SECONDS
    timeout "${CELL_LIMIT:-150}" $py -m aubench.cli run "$m" \
        --protocol synth-bp4d-3fold --fold 1 --runs-dir "$work/cells" --no-progress "engine.device=$device" 2>&1 | tail -4
    echo "$m: exit ${PIPESTATUS[0]}, $(( SECONDS - t0 )) s wall"
done 2>&1 | tee "$out/cells.txt"
{ $py -m aubench.cli leaderboard --runs-dir "$work/cells" --out "$work/cells.md" && cat "$work/cells.md"; } 2>&1 | tee -a "$out/cells.txt"
$py - "$work/cells" <<'EOF' 2>&1 | tee -a "$out/cells.txt"
import json, sys, pathlib
for rec in sorted(pathlib.Path(sys.argv[1]).rglob("record.json")):
    r = json.loads(rec.read_text())
    env, t = r.get("environment", {}), r.get("timings", {})
    print(rec.parent.relative_to(sys.argv[1]), "| device", env.get("device"), "| timings", t)
EOF

step "default run on $device"
limit=${DEFAULT_RUN_LIMIT:-240}
# TOTAL_LIMIT: the whole script's budget in seconds; the default run gets what the steps before left
[ -n "${TOTAL_LIMIT:-}" ] && [ $(( TOTAL_LIMIT - SECONDS - 20 )) -lt "$limit" ] && limit=$(( TOTAL_LIMIT - SECONDS - 20 ))
[ -n "${TINY:-}" ] && limit=1
[ "$limit" -lt 1 ] && limit=1
start=$(date +%s)
if [ -n "${DEFAULT_METHODS:-}" ]; then  # a part of the default run: these methods on their default protocols
    timeout "$limit" bash -c 'for m in $0; do "$1" -m aubench.cli run "$m" --runs-dir "$2" --no-progress "engine.device=$3"; done' \
        "$DEFAULT_METHODS" "$py" "$work/default" "$device" >"$out/default_run.log" 2>&1
else
    timeout "$limit" $py -m aubench.cli run --all --runs-dir "$work/default" --no-progress "engine.device=$device" \
        >"$out/default_run.log" 2>&1
fi
rc=$?
echo "default run: exit $rc after $(( $(date +%s) - start )) s (limit $limit s; 124 = cut at the limit)"
echo "records written: $(find "$work/default" -name record.json 2>/dev/null | wc -l)"
$py -m aubench.cli leaderboard --runs-dir "$work/default" --out "$work/default_board.md" >/dev/null 2>&1 \
    && cp "$work/default_board.md" "$out/"
tail -3 "$out/default_run.log"
rm -rf "$work"
