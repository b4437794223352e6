#!/usr/bin/env python3
"""The PyTorch/cuBLAS side of the GPU check: the same shapes as `mt kernels bench`, timed the same way
(median of CUDA-event timings after warm-up, random data). Prints one JSON object."""
import json, sys
import torch
import torch.nn.functional as F


def median_ms(fn, warmup=3, reps=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "results": []}
    M = N = K = size
    fl = 2.0 * M * N * K
    a = torch.randn(M, K, device=dev)
    b = torch.randn(N, K, device=dev)
    torch.backends.cuda.matmul.allow_tf32 = False
    ms = median_ms(lambda: a @ b.t(), 1, 3)
    out["results"].append({"name": "matmul f32 (cuBLAS, no tf32)", "shape": f"{M}x{N}x{K}", "ms": ms, "tflops": fl / ms / 1e9})
    a16, b16 = a.bfloat16(), b.bfloat16()
    ms = median_ms(lambda: a16 @ b16.t())
    out["results"].append({"name": "matmul bf16 (cuBLAS)", "shape": f"{M}x{N}x{K}", "ms": ms, "tflops": fl / ms / 1e9})

    B, T, H, d = 16, 1024, 12, 64
    fl_att = 4.0 * B * H * T * T * d / 2
    for dt, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        q, k, v = (torch.randn(B, H, T, d, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        g = torch.randn(B, H, T, d, device=dev, dtype=dt)
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        out["results"].append({"name": f"attention fwd (SDPA, {tag})", "shape": f"B{B} T{T} H{H} d{d} causal", "ms": ms, "tflops": fl_att / ms / 1e9})

        def fb():
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y.backward(g)
        ms = median_ms(fb, 2, 5)
        out["results"].append({"name": f"attention fwd+bwd (SDPA, {tag})", "shape": f"B{B} T{T} H{H} d{d} causal", "ms": ms, "tflops": 3.5 * fl_att / ms / 1e9})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
