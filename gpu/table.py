#!/usr/bin/env python3
"""Merges the GPU check's JSON files into one Markdown table (stdout). Usage: table.py DIR"""
import json, os, sys, datetime

d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    try:
        with open(p) as f:
            return json.load(f)
    except Exception as e:
        return {"error": f"{name}: {e}"}

comp, st, mt, pt = load("compile.json"), load("selftest.json"), load("bench.json"), load("torch.json")
st16 = load("selftest_bf16.json")
lines = [f"# GPU check — {datetime.date.today().isoformat()} — {mt.get('device') or st.get('device') or '?'} — torch {pt.get('torch', '?')}", ""]
if "kernels" in comp:
    lines.append(f"Kernels compiled (NVRTC {comp['nvrtc']}): {len(comp['kernels']) - comp['failed']} of {len(comp['kernels'])} clean.")
else:
    lines.append(f"Kernels: {comp.get('error')}")
for label, res in (("float32 storage", st), ("bf16 storage", st16)):
    if "cases" in res:
        cases = res["cases"]
        bad = [c for c in cases if not c["passed"]]
        lines.append(f"Op self-test vs CPU float64, {label}: {len(cases) - len(bad)} of {len(cases)} passed.")
        lines += ["", "| op | case | rel. error | tolerance | worst tensor | pass |", "|---|---|---|---|---|---|"]
        for c in cases:
            e = "NaN/err" if c["error"] is None else f"{c['error']:.2e}"
            lines.append(f"| {c['op']} | {c['case']} | {e} | {c['tolerance']:.0e} | {c['worst']} | {'yes' if c['passed'] else '**NO**'} |")
        lines.append("")
    else:
        lines.append(f"Self-test ({label}): {res.get('error')}")
for arch in ("gpt2", "bert"):
    p = os.path.join(d, f"gauge_verify_{arch}.txt")
    if os.path.exists(p):
        with open(p) as f:
            rows = [l for l in f.read().splitlines() if "invariant (" in l or "FAILED" in l]   # "not a symmetry here" rows are expected
        ok = sum(1 for l in rows if "invariant (" in l)
        lines.append(f"gauge verify on cuda, {arch}: {ok} of {len(rows)} kinds invariant (float32, threshold 1e-5).")
lines += ["", "| kernel | shape | ms (median) | TFLOP/s | note |", "|---|---|---|---|---|"]
for src in (mt, pt):
    for r in src.get("results", []):
        note = r.get("note", "")
        if r.get("rel_error"):
            note = f"{note} (rel err {r['rel_error']:.1e})"
        lines.append(f"| {r['name']} | {r['shape']} | {r['ms']:.3f} | {r['tflops']:.1f} | {note} |")
    if "error" in src:
        lines.append(f"| {src['error']} | | | | |")
byname = {r["name"]: r for src in (mt, pt) for r in src.get("results", [])}


def steps(src):
    return {r.get("precision"): r for r in src.get("results", []) if r.get("kind") == "gpt2_step"}


peak = pt.get("peak_bf16_tflops") or next((r.get("peak_tflops") for r in mt.get("results", []) if r.get("peak_tflops")), None)


def mfu(r):
    if r.get("mfu") is not None:
        return r["mfu"]
    return r["tflops"] / peak if peak else None


def pct(x):
    return "—" if x is None else f"{100 * x:.1f} %"


ours_steps, torch_steps = steps(mt), steps(pt)
step_ratio = {}
if ours_steps or torch_steps:
    any_row = next(iter({**torch_steps, **ours_steps}.values()))
    full = (any_row.get("n_params") or 0) > 100_000_000   # GPT-2 124M, else the tiny model of a dry run (--tiny)
    lines += ["", f"GPT-2 {'124M' if full else '(tiny dry-run model)'} training step, B×T = {any_row['batch']}×{any_row['seq']} (forward, backward, global-norm clip 1.0, "
              "AdamW), ours vs a PyTorch eager GPT-2 step on this GPU in the same run; wall clock around synchronized steps, "
              "median. MFU = (6·N + 6·L·C·T) · tokens/s ÷ "
              + (f"{peak:g} TFLOP/s (dense bf16 peak by NVIDIA's datasheet)" if peak else "the dense bf16 peak (unknown for this device: set MT_PEAK_TFLOPS)")
              + f"; N = {format(any_row['n_params'], ',') if any_row.get('n_params') else '?'} parameters, {'L = 12, C = 768, ' if full else ''}T = {any_row['seq']} (llm.c's formula).", "",
              "| precision (ours / PyTorch) | ours ms | PyTorch ms | step time ours/PyTorch | ours tokens/s | PyTorch tokens/s | ours MFU | PyTorch MFU | MFU ours/PyTorch |",
              "|---|---|---|---|---|---|---|---|---|"]
    labels = {"f32": "f32 storage / f32 (TF32 off)", "bf16": "bf16 storage / bf16 autocast"}
    for prec in ("f32", "bf16"):
        o, t = ours_steps.get(prec), torch_steps.get(prec)
        if not o and not t:
            continue
        f = lambda r, k, fmt: "—" if not r or r.get(k) is None else format(r[k], fmt)
        mo, mt_ = (mfu(o) if o else None), (mfu(t) if t else None)
        ratio_t = f"{o['ms'] / t['ms']:.2f}" if o and t else "—"
        ratio_m = f"{mo / mt_:.2f}" if mo and mt_ else "—"
        if o and t:
            step_ratio[prec] = t["ms"] / o["ms"]
        lines.append(f"| {labels[prec]} | {f(o, 'ms', '.1f')} | {f(t, 'ms', '.1f')} | {ratio_t} | {f(o, 'tokens_per_s', ',.0f')} | "
                     f"{f(t, 'tokens_per_s', ',.0f')} | {pct(mo)} | {pct(mt_)} | {ratio_m} |")
    if ours_steps and torch_steps:
        no = {r.get("n_params") for r in ours_steps.values()}
        nt = {r.get("n_params") for r in torch_steps.values()}
        if no != nt:
            lines.append(f"\n**Parameter counts differ** (ours {sorted(no)}, PyTorch {sorted(nt)}): the MFU figures use different N.")

ratios = [("bf16 matmul vs cuBLAS", "matmul bf16 (mma.sync)", "matmul bf16 (cuBLAS)", "≥ 0.70 (aim 0.90)"),
          ("f32 matmul vs cuBLAS f32", "matmul f32 (tiled SIMT)", "matmul f32 (cuBLAS, no tf32)", ""),
          ("attention fwd vs SDPA f32", "attention fwd (flash, f32)", "attention fwd (SDPA, f32)", ""),
          ("attention fwd+bwd vs SDPA f32", "attention fwd+bwd (flash, f32)", "attention fwd+bwd (SDPA, f32)", "≥ 1.00"),
          ("attention fwd vs SDPA bf16", "attention fwd (flash, bf16)", "attention fwd (SDPA, bf16)", "≥ 1.00"),
          ("attention fwd+bwd vs SDPA bf16", "attention fwd+bwd (flash, bf16)", "attention fwd+bwd (SDPA, bf16)", "≥ 1.00")]
lines += ["", "| ratio (ours / reference speed) | value | issue's aim |", "|---|---|---|"]
for label, ours, ref, aim in ratios:
    if ours in byname and ref in byname:
        lines.append(f"| {label} | {byname[ref]['ms'] / byname[ours]['ms']:.2f} | {aim} |")
for prec, label in (("f32", "GPT-2 step f32 vs PyTorch f32 (TF32 off)"), ("bf16", "GPT-2 step bf16 vs PyTorch bf16 autocast")):
    if prec in step_ratio:
        lines.append(f"| {label} | {step_ratio[prec]:.2f} | |")
if "bf16" in ours_steps and mfu(ours_steps["bf16"]) is not None:
    lines.append(f"| GPT-2 step bf16: our MFU (not a ratio) | {pct(mfu(ours_steps['bf16']))} | ≥ 40 % |")
print("\n".join(lines))
