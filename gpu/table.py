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
ratios = [("bf16 matmul vs cuBLAS", "matmul bf16 (mma.sync)", "matmul bf16 (cuBLAS)"),
          ("f32 matmul vs cuBLAS f32", "matmul f32 (tiled SIMT)", "matmul f32 (cuBLAS, no tf32)"),
          ("attention fwd vs SDPA f32", "attention fwd (flash, f32)", "attention fwd (SDPA, f32)"),
          ("attention fwd+bwd vs SDPA f32", "attention fwd+bwd (f32, pattern)", "attention fwd+bwd (SDPA, f32)")]
lines += ["", "| ratio (ours / reference speed) | value |", "|---|---|"]
for label, ours, ref in ratios:
    if ours in byname and ref in byname:
        lines.append(f"| {label} | {byname[ref]['ms'] / byname[ours]['ms']:.2f} |")
print("\n".join(lines))
