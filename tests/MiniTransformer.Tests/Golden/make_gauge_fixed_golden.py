#!/usr/bin/env python3
"""Independent check of `mt gauge fix`: PyTorch runs the original model and its canonical (gauge-fixed) form.

Run from the repository root (needs python3-torch and a built mt):
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_gauge_fixed_golden.py [MT_COMMAND...]
MT_COMMAND defaults to `dotnet run -c Release --project src/MiniTransformer.Cli --`.

For a tied and an untied GPT-2 at a generic point (the same generator as make_gauge_golden.py), the script
  1. writes the original as a Hugging Face directory (config.json + F64 model.safetensors),
  2. runs `mt gauge fix --model ORIG --out FIXED --dtype f64`,
  3. runs both with its own GPT-2 (torch functional pieces, float64) and compares the log-probabilities,
  4. checks gauge.json against the stored tensors (every listed entry holds its value, flat row-major indices) and the
     fixed-entry count against the analytic formula written out here (README, "Gauge invariance"):
        per layer 10d + 2d·d_h + 2F + 2, plus d + T (tied) or V + T + d − 1 + 3d (untied, the residual rotation's
        (d−1)(d−2)/2 not removable by fixed entries),
  5. writes gauge_fixed_tied.safetensors / gauge_fixed_untied.safetensors here: orig/NAME, fixed/NAME, input_ids, the
     log-probabilities of both, and in the metadata gauge.json, the deviation and the counts.
GaugeFixedGoldenTests reads them.
"""

import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save_safetensors, load_safetensors  # noqa: E402
from make_gauge_golden import generic_weights, forward, write_model, config, V, NPOS, D, NH, NL, NI  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def analytic_removable(tied):
    dh = D // NH
    per_layer = 10 * D + 2 * D * dh + 2 * NI + 2
    return NL * per_layer + (D + NPOS if tied else (V + NPOS + D - 1) + 3 * D)


def fix_and_check(mt, w0, write, expect):
    """Writes w0 with write(dir, w0), runs `mt gauge fix` on it, and checks gauge.json against the fixed tensors:
    every listed entry holds its value, the count equals the analytic `expect` and the removed kinds' sum, and
    free_parameters = total − fixed. Returns (fixed weights, gauge.json text, fixed count, total parameters)."""
    with tempfile.TemporaryDirectory() as tmp:
        orig, fixed = os.path.join(tmp, "orig"), os.path.join(tmp, "fixed")
        write(orig, w0)
        cmd = mt + ["gauge", "fix", "--model", orig, "--out", fixed, "--dtype", "f64"]
        print("$", " ".join(cmd[len(mt):]))
        subprocess.run(cmd, check=True)
        _, w1 = load_safetensors(os.path.join(fixed, "model.safetensors"))
        with open(os.path.join(fixed, "gauge.json")) as f:
            gauge_text = f.read()
    gauge = json.loads(gauge_text)
    assert set(w1) == set(w0), sorted(set(w1) ^ set(w0))
    n_fixed = 0
    for e in gauge["fixed"]:
        flat = w1[e["tensor"]].reshape(-1)
        for i, v in zip(e["indices"], e["values"]):
            assert flat[i].item() == v, (e["tensor"], i, flat[i].item(), v)
        n_fixed += len(e["indices"])
    assert n_fixed == expect == sum(gauge["removed"].values()), (n_fixed, expect, gauge["removed"])
    total = sum(v.numel() for v in w0.values())
    assert gauge["free_parameters"] == total - n_fixed
    return w1, gauge_text, n_fixed, total


def run(tied, mt, gen):
    name = "tied" if tied else "untied"
    w0 = generic_weights(tied, gen)
    expect = analytic_removable(tied)
    w1, gauge_text, n_fixed, total = fix_and_check(mt, w0, lambda d, w: write_model(d, w, tied), expect)
    ids = torch.randint(0, V, (3, NPOS), generator=gen)
    with torch.no_grad():
        l0, l1 = forward(w0, ids, tied), forward(w1, ids, tied)
    lp0, lp1 = F.log_softmax(l0, -1), F.log_softmax(l1, -1)
    dev = ((lp1 - lp0).abs().max() / lp0.abs().max()).item()
    moved = (sum((w1[k] - w0[k]).norm() ** 2 for k in w0) ** 0.5 / sum(w0[k].norm() ** 2 for k in w0) ** 0.5).item()
    print(f"{name}: {total} parameters, {n_fixed} fixed (= analytic {expect}), {total - n_fixed} free; weights moved {moved:.3e}; "
          f"torch log-probabilities deviate {dev:.2e} (relative max)")
    assert dev < 1e-12 and moved > 1e-2
    tensors = {"input_ids": ids.to(torch.int64)}
    tensors.update({"orig/" + k: v for k, v in w0.items()})
    tensors.update({"fixed/" + k: v for k, v in w1.items()})
    tensors.update({"logprobs/orig": lp0, "logprobs/fixed": lp1})
    meta = {"config": json.dumps(config(tied)), "gauge_json": gauge_text, "torch": torch.__version__,
            "logprobs_max_rel_deviation": repr(dev), "weights_moved_rel": repr(moved),
            "fixed_count": str(n_fixed), "analytic_removable": str(expect), "parameters": str(total)}
    save_safetensors(os.path.join(OUT_DIR, f"gauge_fixed_{name}.safetensors"), tensors, meta)


def main():
    mt = sys.argv[1:] or ["dotnet", "run", "-c", "Release", "--project", "src/MiniTransformer.Cli", "--"]
    gen = torch.Generator().manual_seed(4321)
    run(True, mt, gen)
    run(False, mt, gen)


if __name__ == "__main__":
    main()
