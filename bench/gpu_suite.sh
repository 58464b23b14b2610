#!/usr/bin/env bash
# The GPU checks and figures (issues 19, 20, 21) as two prepared calls for a lent GPU machine,
# planned to fit one 15-minute lease (a 1–2 minute machine start, then the two calls back to back
# while the machine is warm):
#
#   call1  (deadline 570 s; timeout_s 590)  machine and versions; issue 20's two commands exactly as
#          a user types them, one after the other: `charrnn train tinyshakespeare.txt --val-frac 0.1
#          --test-frac 0 --device cuda --max-time 120` (best val ≤ 1.38 nats/char) and `charrnn
#          train ptb --device cuda --max-time 300` (test perplexity ≤ 75 alone, ≤ 68 with a KN5);
#          meanwhile, in the background on the other cores, the whole test suite with the GPU
#          visible (issue 19: tests/conftest.py runs the `cuda` tests on it and hides it from the
#          rest; junit XML)
#   call2  (deadline 150 s; timeout_s 170)  sampling tokens/s, 1 and 64 streams, against the plain
#          CUDA-graph loop of ../shared/gpu-runs/ref_sample_graph.py on the same weights, and the
#          whole `charrnn sample` streamed to a pipe (issue 21: ≥ 25,000 / ≥ 1,200,000 tok/s)
#   fill_reviews  (a part for a later lease, not in the calls: ≤ 7 min) issue 22's `charrnn fill
#          train` of the reviews + news on CUDA in 240 s (its LMs on the CUDA char recipe), then
#          `fill eval` of 100 character and 100 word blanks (bench/fill_eval.py --only reviews)
#
# Here, once: copy the real corpora into the checkout (the device tool carries only the checkout):
#     bash bench/gpu_suite.sh prepare                  # → .gpu/corpora (git-ignored, ~14 MB)
# There (device tool `run`, carry [".gpu"]), from the repository root, $OUT an empty folder:
#     bash bench/gpu_suite.sh call1                    # timeout_s 590
#     bash bench/gpu_suite.sh call2                    # timeout_s 170
#     bash bench/gpu_suite.sh PART...                  # single parts, e.g. a rerun of what failed:
#                                                      # env suite tests train_speed sample_speed
#                                                      # sample_cli tui_speed weight_drop
#                                                      # shakespeare_typed ptb_typed
#                                                      # shakespeare_a shakespeare_b ptb
#                                                      # fill_reviews
# Every part runs under its own time limit (SIGINT, then SIGKILL 20 s later) and writes its line to
# $OUT/results.jsonl as soon as it ends; the call's DEADLINE (seconds from the start) cuts the
# limits of the parts that come late, and a part with too little time left gets a "not_run" line, so
# a call ends inside its timeout_s whatever happens. $OUT also gets log.txt (every part's stderr,
# pytest's output) and pytest.xml: three files (the tool brings back at most 8).
# Runs on the machine's own python3 and packages (torch 2.11 there): PYTHONPATH=., no install.
# On a CPU, with tiny sizes (this checks the script, not the figures; a few minutes):
#     DEVICE=cpu PYTHON=.venv/bin/python SHAKESPEARE_BUDGET=5 PTB_BUDGET=5 SUITE_ARGS="tests/test_plan.py" \
#       SAMPLE_SPEED_ARGS="--tokens 200 --streams 4" bash bench/gpu_suite.sh call1 call2
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [[ "${1:-}" == prepare ]]; then
  mkdir -p .gpu/corpora
  cp ../shared/corpora/{tinyshakespeare,ptb.train,ptb.valid,ptb.test,zh_reviews,zh_seg_train}.txt \
    .gpu/corpora/ || exit
  du -sh .gpu
  exit 0
fi
if [[ $# -eq 0 ]]; then
  echo "usage: bash bench/gpu_suite.sh prepare | call1 | call2 | PART..." >&2
  exit 2
fi

OUT=${OUT:-/tmp/charrnn-gpu-suite}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl LOG=$OUT/log.txt
WORK=$(mktemp -d "${TMPDIR:-/tmp}/charrnn-suite.XXXXXX")  # parts' stdout: not under $OUT
export PYTHONPATH=$REPO PYTHONUNBUFFERED=1 CHARRNN_SHARED_CORPORA=${CHARRNN_SHARED_CORPORA:-$REPO/.gpu/corpora}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu with tiny sizes checks this script on a CPU
STARTED=$(date +%s)
GRACE=20  # seconds between a part's SIGINT and its SIGKILL
case "$*" in
  call1) DEADLINE=${DEADLINE:-570} ;;
  call2) DEADLINE=${DEADLINE:-150} ;;
  *) DEADLINE=${DEADLINE:-570} ;;
esac

# The GPU recipes (none measured yet on a GPU): big cuDNN LSTMs, heavy dropout, AdamW + cosine.
SHAKESPEARE_A=(--cell lstm --layers 3 --hidden 1024 --dropout 0.4 --seq-len 128 --batch-size 64
               --lr 2e-3 --weight-decay 0.1 --warmup 200 --min-lr-ratio 0.02 --no-tie-weights)
SHAKESPEARE_B=(--cell lstm --layers 3 --hidden 1536 --dropout 0.5 --seq-len 128 --batch-size 128
               --lr 1.5e-3 --weight-decay 0.1 --warmup 200 --min-lr-ratio 0.02 --no-tie-weights)
PTB=(--cell lstm --layers 2 --hidden 1500 --dropout 0.65 --tie-weights --seq-len 35
     --batch-size 64 --lr 1e-3 --weight-decay 0.01 --warmup 300 --min-lr-ratio 0.02)

# limit_for WANT: WANT seconds, or less when the call's deadline is nearer (room left for the kill
# grace and the record).
limit_for() {
  local want=$1 left
  left=$((DEADLINE - ($(date +%s) - STARTED) - GRACE - 5))
  echo $((left < want ? left : want))
}

# record KIND NAME RC WALL LIMIT FILE...: one line in results.jsonl, even if python fails there.
record() {
  local line
  if line=$("$PY" bench/gpu_results.py "$@" 2>>"$LOG") && [[ -n $line ]]; then
    echo "$line" >>"$RESULTS"
  else
    printf '{"name": "%s", "rc": %s, "part_s": %s, "limit_s": %s, "error": "%s"}\n' "$2" "$3" "$4" \
      "$5" "bench/gpu_results.py could not record it: see log.txt" >>"$RESULTS"
  fi
  tail -n 1 "$RESULTS"
}

# run_part NAME WANT KIND CMD...: CMD under its limit; stdout and stderr kept in $WORK, stderr
# (or all of pytest's output) copied to the log.
# KIND bench: CMD prints one JSON object; KIND pytest: CMD writes $OUT/pytest.xml.
run_part() {
  local name=$1 want=$2 kind=$3 limit started rc
  shift 3
  limit=$(limit_for "$want")
  if ((limit < 15)); then
    printf '{"name": "%s", "not_run": "%s s left of the call'\''s %s s deadline"}\n' "$name" \
      "$((DEADLINE - ($(date +%s) - STARTED)))" "$DEADLINE" | tee -a "$RESULTS"
    return 0
  fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  started=$(date +%s)
  if [[ $kind == pytest ]]; then
    rm -f "$OUT/pytest.xml"
    timeout -s INT -k "$GRACE" "$limit" "$@" >"$WORK/$name.out" 2>&1
    rc=$?
    cat "$WORK/$name.out" >>"$LOG"
    record pytest "$name" "$rc" "$(($(date +%s) - started))" "$limit" "$OUT/pytest.xml" "$WORK/$name.out"
  else
    timeout -s INT -k "$GRACE" "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
    cat "$WORK/$name.err" >>"$LOG"
    record bench "$name" "$rc" "$(($(date +%s) - started))" "$limit" "$WORK/$name.out" "$WORK/$name.err"
  fi
}

part() {
  local recipe budget timeout_opt=()
  case "$1" in
    env) run_part env 20 bench "$PY" bench/gpu_results.py env ;;
    tests)
      # pytest-timeout (on the machine): one hung test fails alone instead of taking the part
      "$PY" -c 'import pytest_timeout' 2>/dev/null && timeout_opt=(--timeout 120)
      run_part tests 160 pytest "$PY" -m pytest -q -p no:cacheprovider -rfE --durations=10 \
        --junitxml="$OUT/pytest.xml" ${timeout_opt[@]+"${timeout_opt[@]}"} \
        tests/test_cuda.py tests/test_fastpath.py ;;
    suite) suite_start; suite_wait ;;
    # shellcheck disable=SC2086  # *_ARGS: extra options, word-split (tiny sizes for a CPU check)
    train_speed) run_part train_speed 60 bench "$PY" bench/train_speed.py --device "$DEVICE" \
      ${TRAIN_SPEED_ARGS:-} ;;
    # shellcheck disable=SC2086
    sample_speed) run_part sample_speed 60 bench "$PY" bench/sample_speed.py --device "$DEVICE" \
      ${SAMPLE_SPEED_ARGS:---tokens 10000} ;;
    # shellcheck disable=SC2086  # the whole `charrnn sample` streamed to a pipe, and start-up
    sample_cli) run_part sample_cli 70 bench "$PY" bench/sample_cli.py --device "$DEVICE" \
      ${SAMPLE_CLI_ARGS:---hidden 512 --rounds 3} ;;
    # shellcheck disable=SC2086  # the live view against plain output (bar ≥ 0.9×)
    tui_speed) run_part tui_speed 60 bench "$PY" bench/tui_speed.py --device "$DEVICE" \
      ${TUI_SPEED_ARGS:---hidden 512 --tokens 5000 --rounds 4} ;;
    # shellcheck disable=SC2086
    weight_drop) run_part weight_drop 50 bench "$PY" bench/weight_drop_speed.py --device "$DEVICE" \
      ${WEIGHT_DROP_ARGS:-} ;;
    shakespeare_a | shakespeare_b)
      budget=${SHAKESPEARE_BUDGET:-120}
      if [[ -n ${SHAKESPEARE_ARGS:-} ]]; then
        read -ra recipe <<<"$SHAKESPEARE_ARGS"
      elif [[ $1 == shakespeare_a ]]; then
        recipe=("${SHAKESPEARE_A[@]}")
      else
        recipe=("${SHAKESPEARE_B[@]}")
      fi
      run_part "$1" $((budget + 80)) bench "$PY" bench/train_shakespeare.py --budget "$budget" \
        --device "$DEVICE" -- "${recipe[@]}" ;;
    shakespeare_typed)  # issue 20's command, nothing else typed (the bench adds --out, a name, --plain)
      budget=${SHAKESPEARE_BUDGET:-120}
      run_part "$1" $((budget + 90)) bench "$PY" bench/train_shakespeare.py --budget "$budget" \
        --device "$DEVICE" --as-typed ;;
    ptb_typed)  # `charrnn train ptb --max-time 300 --device cuda`, then KN5 and the mixture
      budget=${PTB_BUDGET:-300}
      run_part "$1" $((budget + 140)) bench "$PY" bench/train_ptb.py --budget "$budget" \
        --device "$DEVICE" --as-typed ;;
    ptb)
      budget=${PTB_BUDGET:-300}
      if [[ -n ${PTB_ARGS:-} ]]; then read -ra recipe <<<"$PTB_ARGS"; else recipe=("${PTB[@]}"); fi
      run_part ptb $((budget + 120)) bench "$PY" bench/train_ptb.py --budget "$budget" \
        --device "$DEVICE" -- "${recipe[@]}" ;;
    fill_reviews)  # `charrnn fill train` on CUDA, then `fill eval` there (issue 22)
      budget=${FILL_BUDGET:-240}
      run_part "$1" $((budget + 200)) bench "$PY" bench/fill_eval.py --only reviews \
        --group-budget "$budget" --blanks "${FILL_BLANKS:-100}" --device "$DEVICE" ;;
    *) echo "unknown part $1" | tee -a "$LOG" >&2 ;;
  esac
}

# The whole suite, in the background while other parts run (call1): on CPU cores the training
# parts leave idle; started, then waited for and recorded.
suite_start() {
  local par=() timeout_opt=()
  SUITE_LIMIT=$(limit_for "${SUITE_LIMIT:-420}")
  "$PY" -c 'import pytest_timeout' 2>/dev/null && timeout_opt=(--timeout 150)
  "$PY" -c 'import xdist' 2>/dev/null && par=(-n "${SUITE_WORKERS:-8}")
  echo "== suite (background, limit ${SUITE_LIMIT}s)" | tee -a "$LOG"
  SUITE_STARTED=$(date +%s)
  # shellcheck disable=SC2086  # SUITE_ARGS: which tests (default: all of them)
  OMP_NUM_THREADS=1 timeout -s INT -k "$GRACE" "$SUITE_LIMIT" "$PY" -m pytest -q -p no:cacheprovider -rfE \
    --durations=15 --junitxml="$OUT/pytest.xml" ${par[@]+"${par[@]}"} \
    ${timeout_opt[@]+"${timeout_opt[@]}"} ${SUITE_ARGS:-tests/} >"$WORK/suite.out" 2>&1 &
  SUITE_PID=$!
}

suite_wait() {
  wait "$SUITE_PID"
  local rc=$?
  cat "$WORK/suite.out" >>"$LOG"
  record pytest suite "$rc" "$(($(date +%s) - SUITE_STARTED))" "$SUITE_LIMIT" "$OUT/pytest.xml" \
    "$WORK/suite.out"
}

echo "== $(date -u +%FT%TZ) $* on $(hostname): deadline ${DEADLINE}s, device $DEVICE" | tee -a "$LOG"
for call in "$@"; do
  case "$call" in
    call1) part env; suite_start; part shakespeare_typed; part ptb_typed; suite_wait ;;
    call2) for name in env sample_speed sample_cli; do part "$name"; done ;;
    *) part "$call" ;;
  esac
done
echo "== summary ($(($(date +%s) - STARTED)) s)" | tee -a "$LOG"
"$PY" bench/gpu_results.py summary "$RESULTS" 2>>"$LOG" | tee -a "$LOG"
rm -rf "$WORK"
