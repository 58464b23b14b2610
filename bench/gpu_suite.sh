#!/usr/bin/env bash
# The GPU checks and figures of the foundation and performance issues, as one prepared run for a
# lent GPU machine (device time is short: every part has a time limit and writes its result as
# soon as it has one, so a part that fails or runs out leaves the others' figures).
#
# Here, once: copy the real corpora into the checkout (the device tool carries only the checkout):
#     bash bench/gpu_suite.sh prepare                # → .gpu/corpora (git-ignored)
# There (device tool: run, carry [".gpu"], timeout_s 600), one part per call or several in one:
#     bash bench/gpu_suite.sh core                   # CUDA tests, training + sampling speed (~3 min)
#     bash bench/gpu_suite.sh shakespeare [SECONDS]  # two GPU recipes, 120 s each by default
#     bash bench/gpu_suite.sh ptb [SECONDS]          # PTB word level, test perplexity (300 s)
# Results: $OUT/results.jsonl (one JSON object per bench) and $OUT/log.txt (everything else).
# Runs on the machine's own python3 and packages (no install: nothing can be fetched there).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

if [[ "${1:-}" == prepare ]]; then
  mkdir -p .gpu/corpora
  cp ../shared/corpora/{tinyshakespeare,ptb.train,ptb.valid,ptb.test}.txt .gpu/corpora/
  du -sh .gpu
  exit 0
fi

OUT=${OUT:-/tmp/charrnn-gpu-suite}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl LOG=$OUT/log.txt
export PYTHONPATH=$REPO PYTHONUNBUFFERED=1 CHARRNN_SHARED_CORPORA=${CHARRNN_SHARED_CORPORA:-$REPO/.gpu/corpora}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu with short budgets checks this script itself on a CPU

# The GPU recipes (none measured yet on a GPU): big cuDNN LSTMs, heavy dropout, AdamW + cosine.
SHAKESPEARE_A=(--cell lstm --layers 3 --hidden 1024 --dropout 0.4 --seq-len 128 --batch-size 64
               --lr 2e-3 --weight-decay 0.1 --warmup 200 --min-lr-ratio 0.02 --no-tie-weights)
SHAKESPEARE_B=(--cell lstm --layers 3 --hidden 1536 --dropout 0.5 --seq-len 128 --batch-size 128
               --lr 1.5e-3 --weight-decay 0.1 --warmup 200 --min-lr-ratio 0.02 --no-tie-weights)
PTB=(--cell lstm --layers 2 --hidden 1500 --dropout 0.65 --tie-weights --seq-len 35
     --batch-size 64 --lr 1e-3 --weight-decay 0.01 --warmup 300 --min-lr-ratio 0.02)

# bench NAME SECONDS CMD...: run CMD under a time limit; its JSON (on stdout) becomes one line of
# results.jsonl tagged with NAME, or a line saying how it failed.
bench() {
  local name=$1 limit=$2 started rc
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  started=$(date +%s)
  timeout "$limit" "$@" >"$OUT/$name.out" 2>>"$LOG"
  rc=$?
  "$PY" - "$name" "$rc" "$(($(date +%s) - started))" "$OUT/$name.out" >>"$RESULTS" <<'EOF'
import json, sys
name, rc, wall, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = open(path, encoding="utf-8", errors="replace").read()
try:
    result = json.loads(text)
except ValueError:
    result = {"output_tail": text[-2000:]}
print(json.dumps({"name": name, "rc": rc, "wall_s": wall, **result}))
EOF
  rm -f "$OUT/$name.out"
  tail -n 1 "$RESULTS"
}

core() {
  { nvidia-smi -L; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  } 2>&1 | tee -a "$LOG"
  echo "== tests" | tee -a "$LOG"
  timeout 240 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_fastpath.py 2>&1 \
    | tee -a "$LOG" | tail -n 3
  # shellcheck disable=SC2086  # TRAIN_SPEED_ARGS: smaller sizes for a CPU check of this script
  bench train_speed 120 "$PY" bench/train_speed.py --device "$DEVICE" ${TRAIN_SPEED_ARGS:-}
  bench sample_speed 150 "$PY" bench/sample_speed.py --device "$DEVICE" --tokens "${TOKENS:-20000}"
}

shakespeare() {
  local budget=${1:-120}
  bench shakespeare_a $((budget + 90)) "$PY" bench/train_shakespeare.py --budget "$budget" \
    --device "$DEVICE" -- "${SHAKESPEARE_A[@]}"
  bench shakespeare_b $((budget + 90)) "$PY" bench/train_shakespeare.py --budget "$budget" \
    --device "$DEVICE" -- "${SHAKESPEARE_B[@]}"
}

ptb() {
  local budget=${1:-300}
  bench ptb $((budget + 120)) "$PY" bench/train_ptb.py --budget "$budget" --device "$DEVICE" \
    -- "${PTB[@]}"
}

case "${1:-}" in
  core) core ;;
  shakespeare) shakespeare "${2:-120}" ;;
  ptb) ptb "${2:-300}" ;;
  all) core; shakespeare 120 ;;
  *) echo "usage: bash bench/gpu_suite.sh prepare|core|shakespeare [S]|ptb [S]|all" >&2; exit 2 ;;
esac
