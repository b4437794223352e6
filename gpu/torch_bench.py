#!/usr/bin/env python3
"""The PyTorch/cuBLAS side of the GPU check: the same shapes as `mt kernels bench`, timed the same way, on the same
machine in the same run. Prints one JSON object.

  torch_bench.py [SIZE] [--batch 16] [--seq 1024] [--no-step] [--tiny]

- matmul SIZE³ (default 4096) through cuBLAS, f32 (TF32 off) and bf16: median of CUDA-event timings after warm-up;
- causal scaled_dot_product_attention at B16 T1024 H12 d64, forward and forward+backward, f32 and bf16;
- a GPT-2 124M training step (our own compact model below: token + position embeddings, 12 pre-LN blocks with a fused
  qkv Linear, causal SDPA, GELU(tanh) MLP, final LayerNorm, lm_head tied to the token embedding; cross-entropy;
  backward; global-norm clip 1.0; AdamW, fused where this PyTorch has it) at B×T = 16×1024, eager mode (no
  torch.compile), once in float32 with TF32 off and once under bf16 autocast (float32 weights and optimizer state):
  wall clock around whole steps (synchronized), median of --steps after --warmup steps, like `mt kernels bench`.
  Reported: ms/step, tokens/s, model TFLOP/s and MFU.

MFU, the same formula on both sides (llm.c's gpt2_estimate_mfu, after PaLM's appendix B, causal attention counted
once): FLOPs per token = 6·N + 6·L·C·T, N = every parameter (the tied embedding once, position embeddings included),
L layers, C width, T sequence length; MFU = FLOPs per token × tokens/s ÷ the GPU's dense bf16 tensor-core peak
(989 TFLOP/s for an H100/H200 SXM by NVIDIA's datasheet; MT_PEAK_TFLOPS overrides; none → no MFU). Both precisions
are divided by the bf16 peak (the chip's peak); the f32 rows also give the fraction of the plain fp32 peak (67).

--tiny: a tiny model and tiny shapes on whatever device there is (CPU here), to test this script without a GPU.
"""
import argparse, json, os, time
import torch
import torch.nn as nn
import torch.nn.functional as F

# Dense (no sparsity) peaks in TFLOP/s by NVIDIA's datasheets: (bf16 tensor core, plain fp32). H200.md gives the H200
# SXM's as the H100 SXM's: "dense bf16 about 990 TFLOP/s, plain fp32 about 67".
PEAKS = [("H100 PCIe", 756.0, 51.0), ("NVL", 835.0, 60.0), ("H100", 989.4, 66.9), ("H200", 989.4, 66.9), ("A100", 312.0, 19.5)]


def peaks(name):
    """(bf16 peak, fp32 peak) in TFLOP/s for a device name, or (None, None); MT_PEAK_TFLOPS overrides the bf16 one."""
    bf16 = fp32 = None
    for key, b, f in PEAKS:
        if key in name and (key != "NVL" or "H100" in name or "H200" in name):
            bf16, fp32 = b, f
            break
    if os.environ.get("MT_PEAK_TFLOPS"):
        bf16 = float(os.environ["MT_PEAK_TFLOPS"])
    return bf16, fp32


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def median_ms(dev, fn, warmup=3, reps=10):
    """Median milliseconds of fn: CUDA events on a GPU, perf_counter on the CPU."""
    for _ in range(warmup):
        fn()
    sync(dev)
    ts = []
    for _ in range(reps):
        if dev.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); fn(); b.record(); b.synchronize()
            ts.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1e3)
    return median(ts)


HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")


def causal_attention(q, k, v):
    """[B,H,T,d] causal attention: PyTorch's SDPA where it exists (PyTorch ≥ 2.0), else the plain masked softmax."""
    if HAVE_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    s = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return s.softmax(-1) @ v


# ---------------------------------------------------------------------------------------------- GPT-2 (124M shape)

class Block(nn.Module):
    """Pre-LN transformer block: x + proj(attn(ln1 x)), then x + mlp(ln2 x)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)      # q, k, v of every head in one GEMM
        self.attn_out = nn.Linear(width, width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        z = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_out(z)
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, vocab, positions, width, layers, heads):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(positions, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:   # GPT-2's N(0, 0.02) for matrices and embeddings; LayerNorm gains stay 1
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, targets):
        T = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))
        for blk in self.blocks:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.tok.weight)   # lm_head tied to the token embedding
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def make_adamw(params):
    """AdamW with the engine's defaults (lr 1e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1): fused if available."""
    kw = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for extra, tag in ((dict(fused=True), "fused"), (dict(foreach=True), "foreach"), ({}, "for-loop")):
        try:
            return torch.optim.AdamW(params, **kw, **extra), tag   # a fused one that fails at step() is replaced there
        except (TypeError, RuntimeError, ValueError):
            continue
    raise RuntimeError("no AdamW")


def gpt2_step_rows(dev, B, T, cfg, warmup, steps, peak_bf16, peak_fp32, model_name="gpt2-124m"):
    V, P, C, L, H = cfg
    rows = []
    g = torch.Generator(device="cpu").manual_seed(5)
    ids = torch.randint(0, V, (B, T), generator=g).to(dev)
    tgt = torch.randint(0, V, (B, T), generator=g).to(dev)
    for prec in ("f32", "bf16"):
        torch.manual_seed(1)
        model = Gpt2(V, P, C, L, H).to(dev)
        n_params = sum(p.numel() for p in model.parameters())
        opt, opt_kind = make_adamw(model.parameters())
        losses = []

        def step():
            opt.zero_grad(set_to_none=True)
            if prec == "bf16":
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                    loss = model(ids, tgt)
            else:
                loss = model(ids, tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.detach())

        try:
            step()
        except RuntimeError as e:   # a fused AdamW this build cannot run here: fall back to foreach
            if opt_kind != "fused":
                raise
            opt, opt_kind = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8,
                                              weight_decay=0.1, foreach=True), f"foreach (fused failed: {str(e).splitlines()[0][:60]})"
            step()
        for _ in range(warmup - 1):
            step()
        sync(dev)
        ts = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            sync(dev)
            ts.append((time.perf_counter() - t0) * 1e3)
        ms = median(ts)
        loss = float(losses[-1].float().cpu())
        flops_per_token = 6.0 * n_params + 6.0 * L * C * T
        tok_s = B * T / (ms / 1e3)
        tflops = flops_per_token * tok_s / 1e12
        mfu = tflops / peak_bf16 if peak_bf16 else None
        note = f"fwd+bwd+clip+AdamW ({opt_kind}); {tok_s:,.0f} tokens/s"
        if mfu is not None:
            note += f"; MFU {100 * mfu:.1f}% of {peak_bf16:g} (bf16 dense)"
            if prec == "f32" and peak_fp32:
                note += f", {100 * tflops / peak_fp32:.0f}% of fp32 {peak_fp32:g}"
        note += f"; loss {loss:.3f}"
        label = "f32, TF32 off" if prec == "f32" else "bf16 autocast"
        rows.append({"name": f"{model_name} train step ({label}, PyTorch eager)", "shape": f"B{B} T{T}", "ms": ms,
                     "tflops": tflops, "note": note, "kind": "gpt2_step", "precision": prec, "batch": B, "seq": T,
                     "tokens_per_s": tok_s, "mfu": mfu, "peak_tflops": peak_bf16, "n_params": n_params,
                     "flops_per_token": flops_per_token, "loss": loss, "steps_ms": ts})
        del model, opt, losses
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", nargs="?", type=int, default=4096, help="matmul M = N = K")
    ap.add_argument("--batch", type=int, default=16, help="GPT-2 step batch B")
    ap.add_argument("--seq", type=int, default=1024, help="GPT-2 step sequence length T")
    ap.add_argument("--warmup", type=int, default=3, help="GPT-2 steps before timing")
    ap.add_argument("--steps", type=int, default=5, help="timed GPT-2 steps (median)")
    ap.add_argument("--no-step", action="store_true", help="skip the GPT-2 training step")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on any device (a test of this script)")
    a = ap.parse_args()

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda" and not a.tiny:
        raise SystemExit("torch_bench.py: no CUDA device (use --tiny to test the script on the CPU)")
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    peak_bf16, peak_fp32 = peaks(name)
    if a.tiny:
        size, (aB, aT, aH, ad) = 256, (2, 64, 2, 16)
        gcfg, B, T = (97, 32, 32, 2, 2), 2, 32
    else:
        size, (aB, aT, aH, ad) = a.size, (16, 1024, 12, 64)
        gcfg, B, T = (50257, 1024, 768, 12, 12), a.batch, a.seq
    out = {"device": name, "torch": torch.__version__, "peak_bf16_tflops": peak_bf16, "peak_fp32_tflops": peak_fp32,
           "attention": "scaled_dot_product_attention" if HAVE_SDPA else "masked softmax (no SDPA in this PyTorch)",
           "results": []}

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    M = N = K = size
    fl = 2.0 * M * N * K
    a32 = torch.randn(M, K, device=dev)
    b32 = torch.randn(N, K, device=dev)
    ms = median_ms(dev, lambda: a32 @ b32.t(), 1, 3)
    out["results"].append({"name": "matmul f32 (cuBLAS, no tf32)", "shape": f"{M}x{N}x{K}", "ms": ms, "tflops": fl / ms / 1e9})
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    ms = median_ms(dev, lambda: a16 @ b16.t())
    out["results"].append({"name": "matmul bf16 (cuBLAS)", "shape": f"{M}x{N}x{K}", "ms": ms, "tflops": fl / ms / 1e9})
    del a32, b32, a16, b16

    fl_att = 4.0 * aB * aH * aT * aT * ad / 2   # causal: half of q·kᵀ and p·v
    tag_impl = "SDPA" if HAVE_SDPA else "masked softmax"
    for dt, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        q, k, v = (torch.randn(aB, aH, aT, ad, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
        g = torch.randn(aB, aH, aT, ad, device=dev, dtype=dt)
        shape = f"B{aB} T{aT} H{aH} d{ad} causal"
        with torch.no_grad():
            ms = median_ms(dev, lambda: causal_attention(q, k, v))
        out["results"].append({"name": f"attention fwd ({tag_impl}, {tag})", "shape": shape, "ms": ms, "tflops": fl_att / ms / 1e9})

        def fb():
            causal_attention(q, k, v).backward(g)
        ms = median_ms(dev, fb, 2, 5)
        out["results"].append({"name": f"attention fwd+bwd ({tag_impl}, {tag})", "shape": shape, "ms": ms, "tflops": 3.5 * fl_att / ms / 1e9})
        del q, k, v, g

    if not a.no_step:
        out["results"] += gpt2_step_rows(dev, B, T, gcfg, max(a.warmup, 1), max(a.steps, 1), peak_bf16, peak_fp32,
                                         "gpt2-tiny" if a.tiny else "gpt2-124m")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
