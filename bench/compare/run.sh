#!/usr/bin/env bash
# Side-by-side: MiniTransformer vs PyTorch (Debian python3-torch, OpenBLAS) on the same shapes, in one run.
#
#   bench/compare/run.sh [--rounds R] [--threads N] [--quick]
#
# Each round measures torch then ours (alternating, so a noisy neighbour hits both), the table quotes medians
# over rounds and each row's spread. Needs: apt-get install -y python3-torch libopenblas0-pthread
# Measures: GPT-2 124M training step (B=4, T=64, f32, AdamW, clip 1.0), matmul 1024/2048/4096 f32, and
# forward+backward of layernorm, gelu, attention, softmax+cross-entropy, the lm-head and MLP-fc matmuls at GPT-2 124M
# shapes, and AdamW over 124M parameters.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ROUNDS=3 THREADS=2 QUICK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "error: unknown argument $1 (expected --rounds R, --threads N, --quick)" >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3
$PY -c "import torch" 2>/dev/null || { echo "error: $PY cannot import torch; apt-get install -y python3-torch libopenblas0-pthread" >&2; exit 2; }
OUT="${COMPARE_OUT:-$ROOT/bench/compare/out}"
ART="${COMPARE_ARTIFACTS:-/tmp/mt-compare-artifacts}"
mkdir -p "$OUT"
rm -f "$OUT"/torch-*.json "$OUT"/ours-*.json
echo "building mt (Release) ..." >&2
dotnet build -c Release "$ROOT/src/MiniTransformer.Cli" --artifacts-path "$ART" -v q -nologo >/dev/null
MT="dotnet $ART/bin/MiniTransformer.Cli/release/mt.dll"
SIZES="1024 2048 4096"; STEPS=5; REPS=10
if [[ $QUICK == 1 ]]; then SIZES="1024 2048"; STEPS=3; REPS=5; fi

# The peer at its best: OpenBLAS's SkylakeX kernels (its default pick on this CPU is far slower) and passive
# OpenMP waiting (otherwise torch's OpenMP threads and OpenBLAS's spin against each other).
peer() {
  OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
    $PY "$ROOT/bench/compare/torch_peer.py" --threads "$THREADS" --sizes $SIZES --steps $STEPS --op-reps $REPS "$@"
}

# Each pair (peer, ours) is measured back to back, part by part, so both sides of a ratio see the same machine state.
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS: matmul ..." >&2
  peer --parts matmul --out "$OUT/torch-$r-matmul.json"
  mm="{"
  for n in $SIZES; do
    g=$($MT bench matmul --n "$n" --threads "$THREADS" --json | $PY -c "import json,sys; print(json.load(sys.stdin)['gflops'])")
    mm+="\"$n\": $g,"
  done
  mm="${mm%,}}"
  echo "round $r/$ROUNDS: ops ..." >&2
  peer --parts ops --out "$OUT/torch-$r-ops.json"
  ops=$($MT bench ops --reps $REPS --threads "$THREADS" --json)
  echo "round $r/$ROUNDS: GPT-2 124M training step ..." >&2
  peer --parts train --out "$OUT/torch-$r-train.json"
  train=$($MT bench train --preset gpt2-124m --batch 4 --seq 64 --steps $STEPS --threads "$THREADS" --json)
  $PY - "$OUT" "$r" <<PYEOF
import json, sys
out, r = sys.argv[1], sys.argv[2]
merged = {}
for part in ("matmul", "ops", "train"):
    merged.update(json.load(open(f"{out}/torch-{r}-{part}.json")))
json.dump(merged, open(f"{out}/torch-{r}.json", "w"), indent=1)
train = json.loads('''$train''')
ops = json.loads('''$ops''')
json.dump({"train": {"ms_per_step": train["ms_per_step"], "forward_ms": train["forward_ms"],
                     "tokens_per_s": train["tokens_per_s"], "peak_bytes": train["peak_bytes"]},
           "matmul_gflops": json.loads('''$mm'''), "ops_ms": ops["ops_ms"]}, open(f"{out}/ours-{r}.json", "w"), indent=1)
PYEOF
done

$PY "$ROOT/bench/compare/torch_peer.py" table --torch $(ls "$OUT"/torch-[0-9]*.json | grep -Ev -- "-(matmul|ops|train)\.json$") --ours "$OUT"/ours-*.json \
  --date "$(date -u +%Y-%m-%dT%H:%MZ)" --command "bench/compare/run.sh --rounds $ROUNDS --threads $THREADS$([[ $QUICK == 1 ]] && echo ' --quick')" \
  | tee "$OUT/table.md"
