"""PyTorch peer for bench/compare/run.sh: GPT-2 124M training step, matmul and per-op timings on the CPU.

Run with Debian's python3-torch (1.13, OpenBLAS). The environment the peer is measured at its best in
(OPENBLAS_CORETYPE=SkylakeX, OMP_WAIT_POLICY=PASSIVE) is set by run.sh before Python starts.

    /usr/bin/python3 bench/compare/torch_peer.py --threads 2 --out torch.json
    /usr/bin/python3 bench/compare/torch_peer.py table torch.json ours.json   # print the comparison

GPT-2 is written here with torch modules (nn.Embedding, nn.LayerNorm, nn.Linear, F.gelu tanh, causal softmax
attention, tied lm head, F.cross_entropy) - no Hugging Face transformers.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------- GPT-2 in torch

class Attention(nn.Module):
    def __init__(self, d, nh):
        super().__init__()
        self.nh = nh
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.nh
        q = q.view(B, T, self.nh, hs).transpose(1, 2)
        k = k.view(B, T, self.nh, hs).transpose(1, 2)
        v = v.view(B, T, self.nh, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, d, nh):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Attention(d, nh)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, V=50257, ctx=1024, d=768, L=12, nh=12):
        super().__init__()
        self.wte = nn.Embedding(V, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList([Block(d, nh) for _ in range(L)])
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        for n, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if n.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif n.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for blk in self.h:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)    # tied output map
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-100)


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def bench_train(B, T, steps, dtype):
    torch.manual_seed(1)
    model = GPT2().to(dtype)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 50257, (B, T), generator=g)
    tgt = torch.randint(0, 50257, (B, T), generator=g)
    fwd = []

    def step():
        opt.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        loss = model(idx, tgt)
        fwd.append((time.perf_counter() - t0) * 1000)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    med, mn = median_ms(step, 2, steps)
    return {"ms_per_step": med, "ms_per_step_min": mn, "forward_ms": statistics.median(fwd[2:]),
            "tokens_per_s": B * T / (med / 1000)}


def bench_matmul(n, dtype):
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    c = torch.empty(n, n, dtype=dtype)
    reps = max(3, min(20, int(2e10 / (2 * n ** 3))))
    med, _ = median_ms(lambda: torch.matmul(a, b, out=c), 1, reps)
    return 2 * n ** 3 / (med / 1000) / 1e9


def bench_ops(dtype, reps):
    """Forward + backward of each op at GPT-2 124M shapes (B=4, T=64, d=768, 12 heads, V=50257), in ms."""
    B, T, C, NH, V = 4, 64, 768, 12, 50257
    N = B * T
    torch.manual_seed(3)
    out = {}

    def fb(make_inputs, f):
        xs = make_inputs()
        gy = []

        def run():
            for x in xs:
                x.grad = None
            y = f(*xs)
            if y.dim() > 0 and not gy:
                gy.append(torch.randn_like(y))
            y.backward(gy[0] if gy else None)
        return median_ms(run, 2, reps)[0]

    ln = nn.LayerNorm(C).to(dtype)
    out["layernorm"] = fb(lambda: [torch.randn(N, C, dtype=dtype, requires_grad=True)], lambda x: ln(x))
    out["gelu"] = fb(lambda: [torch.randn(N, 4 * C, dtype=dtype, requires_grad=True)],
                     lambda x: F.gelu(x, approximate="tanh"))

    def attention(qkv):
        Bq, Tq, C3 = qkv.shape
        Cq = C3 // 3
        q, k, v = qkv.split(Cq, dim=2)
        hs = Cq // NH
        q = q.view(Bq, Tq, NH, hs).transpose(1, 2)
        k = k.view(Bq, Tq, NH, hs).transpose(1, 2)
        v = v.view(Bq, Tq, NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(Tq, Tq, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return (att @ v).transpose(1, 2).contiguous().view(Bq, Tq, Cq)

    out["attention"] = fb(lambda: [torch.randn(B, T, 3 * C, dtype=dtype, requires_grad=True)], attention)
    tg = torch.randint(0, V, (N,))
    out["softmax_ce"] = fb(lambda: [torch.randn(N, V, dtype=dtype, requires_grad=True)],
                           lambda x: F.cross_entropy(x, tg))
    W = torch.randn(V, C, dtype=dtype) * 0.02
    out["lm_head_matmul"] = fb(lambda: [torch.randn(N, C, dtype=dtype, requires_grad=True),
                                        W.clone().requires_grad_(True)], lambda x, w: F.linear(x, w))
    Wfc = torch.randn(4 * C, C, dtype=dtype) * 0.02
    out["fc_matmul"] = fb(lambda: [torch.randn(N, C, dtype=dtype, requires_grad=True),
                                   Wfc.clone().requires_grad_(True)], lambda x, w: F.linear(x, w))
    # AdamW over 124M parameters as one tensor (the memory-bound update), with torch's own implementation
    p = torch.zeros(124_439_808, dtype=dtype, requires_grad=True)
    p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    out["adamw_124m"] = median_ms(lambda: opt.step(), 1, max(3, reps // 3))[0]
    del p, opt
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def measure(args):
    torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.dtype == "f64" else torch.float32
    res = {"torch": torch.__version__, "threads": args.threads, "dtype": args.dtype,
           "env": {k: os.environ.get(k, "") for k in ("OPENBLAS_CORETYPE", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}}
    if "matmul" in args.parts:
        res["matmul_gflops"] = {str(n): bench_matmul(n, dtype) for n in args.sizes}
    if "ops" in args.parts:
        res["ops_ms"] = bench_ops(dtype, args.op_reps)
    if "train" in args.parts:
        res["train"] = bench_train(args.batch, args.seq, args.steps, dtype)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


# ----------------------------------------------------------------------------- the table

def table(torch_files, ours_files, meta):
    def load(files):
        return [json.load(open(f)) for f in files]
    tt, oo = load(torch_files), load(ours_files)

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def spread(xs):
        xs = [x for x in xs if x is not None]
        return (max(xs) - min(xs)) / statistics.median(xs) * 100 if len(xs) > 1 else 0.0

    rows = []   # (what, ours, torch, unit, ratio, ratio meaning, spread)

    def row(what, ours, peer, unit, meaning):
        # ours and peer are per-round values measured back to back: the ratio quoted is the median of the
        # per-round ratios, its spread (max - min)/median over rounds
        ratios = [o / p for o, p in zip(ours, peer) if o is not None and p]
        rows.append((what, med(ours), med(peer), unit, med(ratios), meaning, spread(ratios)))

    row("GPT-2 124M train step B=4 T=64", [o["train"]["ms_per_step"] for o in oo], [t["train"]["ms_per_step"] for t in tt],
        "ms", "time ours/torch (target <= 0.70)")
    row("  of which forward", [o["train"].get("forward_ms") for o in oo], [t["train"]["forward_ms"] for t in tt],
        "ms", "time ours/torch")
    for n in tt[0]["matmul_gflops"]:
        row(f"matmul {n}^3 f32", [o["matmul_gflops"][n] for o in oo], [t["matmul_gflops"][n] for t in tt],
            "GFLOP/s", "speed ours/openblas (target >= 0.90)")
    for op in tt[0]["ops_ms"]:
        if op not in oo[0].get("ops_ms", {}):
            continue
        row(op if op.startswith("adamw") else f"{op} fwd+bwd", [o["ops_ms"][op] for o in oo], [t["ops_ms"][op] for t in tt],
            "ms", "time ours/torch")

    print(f"# MiniTransformer vs PyTorch {tt[0]['torch']} (OpenBLAS), {tt[0]['threads']} threads, {tt[0]['dtype']}")
    print(f"# date: {meta.get('date', '')}   cpu: {cpu_model()} ({os.cpu_count()} vCPUs)   rounds: {len(tt)}")
    print(f"# torch env: {tt[0]['env']}")
    print(f"# command: {meta.get('command', '')}")
    print()
    w = max(len(r[0]) for r in rows)
    print(f"| {'what'.ljust(w)} | {'ours':>9} | {'torch':>9} | unit    | ratio | ratio is                             | spread |")
    print(f"|{'-' * (w + 2)}|-----------|-----------|---------|-------|--------------------------------------|--------|")
    for what, o, p, unit, r, meaning, sp in rows:
        print(f"| {what.ljust(w)} | {o:9.1f} | {p:9.1f} | {unit:<7} | {r:5.2f} | {meaning:<36} | {sp:5.0f}% |")
    print()
    print("ours, torch: medians over rounds; ratio: median over rounds of the per-round ratio (each pair measured back to back);")
    print("spread: (max - min) / median of the per-round ratios.")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "table":
        ap = argparse.ArgumentParser()
        ap.add_argument("mode")
        ap.add_argument("--torch", nargs="+", required=True)
        ap.add_argument("--ours", nargs="+", required=True)
        ap.add_argument("--date", default="")
        ap.add_argument("--command", default="")
        a = ap.parse_args()
        table(a.torch, a.ours, {"date": a.date, "command": a.command})
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f64"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--op-reps", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--parts", nargs="+", default=["matmul", "ops", "train"])
    ap.add_argument("--out", required=True)
    measure(ap.parse_args())


if __name__ == "__main__":
    main()
