#!/usr/bin/env bash
# Builds the CPU emulator of the CUDA driver: OUT/libcuda.so.1 holding driver.cpp and every kernel of kernels/*.cu
# (each file, and its bf16-storage build where it has one), compiled as C++ with cuda_emu.h. See README.md.
# Usage: tools/cuda-emu/build.sh [OUT]   (default OUT: tools/cuda-emu/out)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kernels=${MT_KERNELS_DIR:-$root/kernels}   # the same variable points mt at edited kernel sources
out=${1:-$here/out}
CXX=${CXX:-g++}
command -v "$CXX" >/dev/null || { echo "cuda-emu: $CXX not found (apt-get install g++)" >&2; exit 1; }
mkdir -p "$out/gen"
rm -f "$out"/gen/* "$out/libcuda.so.1"   # a failed build leaves no stale driver behind
for cu in "$kernels"/*.cu; do
    base=$(basename "$cu" .cu)
    builds=(f32)
    grep -q 'KNAME(' "$cu" && builds+=(bf16)
    for b in "${builds[@]}"; do
        unit=$base; defs=(-DMT_CUDA_EMU -D__CUDA_ARCH__=800); label="$base.cu"
        if [ "$b" = bf16 ]; then unit=${base}_bf16; defs+=(-DMT_BF16); label="$base.cu#bf16"; fi
        # Preprocess with the build's defines (kernel names expand through KNAME, #ifdef'd kernels drop out), then
        # make it C++: no extern "C" (each file gets its own namespace), dynamic shared memory from the runtime.
        "$CXX" -E -x c++ -std=c++17 "${defs[@]}" -I"$kernels" "$cu" \
            | sed -e 's/extern "C"//g' \
                  -e 's/extern __shared__ \(__align__([0-9]*) \)\{0,1\}\([A-Za-z_0-9]*\) \([A-Za-z_0-9]*\)\[\];/\2* \3 = (\2*)emu_dynamic_shared();/g' \
            > "$out/gen/$unit.ii"
        # "name (bound)" per kernel: its __launch_bounds__ argument list, "(0)" when it has none
        found=$(perl -ne 'while (/__global__\s+void\s+(?:__launch_bounds__\s*(\((?:[^()]++|(?1))*\))\s*)?(\w+)\s*\(/g) { print "$2 ", ($1 // "(0)"), "\n" }' "$out/gen/$unit.ii")
        {
            echo "#include \"cuda_emu.h\""
            echo "namespace emu_$unit {"
            echo "#include \"$unit.ii\""
            echo "}"
            echo "static const emu_kernel_entry entries[] = {"
            while read -r n bound; do
                [ -n "$n" ] && echo "    {\"$n\", &emu_invoker<&emu_$unit::$n>::invoke, emu_bound$bound},"
            done <<< "$found"
            echo "};"
            echo "__attribute__((constructor)) static void register_kernels() { emu_register(\"$label\", entries, (int)(sizeof entries / sizeof entries[0])); }"
        } > "$out/gen/$unit.cpp"
    done
done
objs=()
flags=(-O2 -g -std=c++17 -fPIC -fvisibility=hidden -fno-strict-aliasing -Wall -Wno-unused-variable -Wno-unused-function -Wno-unknown-pragmas -Wno-sign-compare -I"$here")
for src in "$here/driver.cpp" "$out"/gen/*.cpp; do
    obj="$out/gen/$(basename "$src" .cpp).o"
    "$CXX" "${flags[@]}" -c "$src" -o "$obj" &
    objs+=("$obj")
    while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
wait
for o in "${objs[@]}"; do [ -f "$o" ] || { echo "cuda-emu: compiling $(basename "$o" .o) failed" >&2; exit 1; }; done
"$CXX" -shared -o "$out/libcuda.so.1" "${objs[@]}"
echo "cuda-emu: $out/libcuda.so.1 ($(ls "$out"/gen/*.cpp | wc -l) kernel builds)"
