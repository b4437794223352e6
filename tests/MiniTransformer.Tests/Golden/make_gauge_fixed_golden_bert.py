#!/usr/bin/env python3
"""Independent check of `mt gauge fix` on BERT: PyTorch runs the original model and its canonical (gauge-fixed) form.

Run from the repository root (needs python3-torch and a built mt):
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_gauge_fixed_golden_bert.py [MT_COMMAND...]
MT_COMMAND defaults to `dotnet run -c Release --project src/MiniTransformer.Cli --`.

For the two BERTs of make_gauge_golden_bert.py (tied with a pooler, odd sizes; untied) at a generic point, the script
  1. writes the original as a Hugging Face directory (config.json + F64 model.safetensors, query/key/value separate),
  2. runs `mt gauge fix --model ORIG --out FIXED --dtype f64`,
  3. runs both with the post-LN BERT of make_gauge_golden_bert.py (torch functional pieces, float64; token types and
     padding) and compares the MLM log-probabilities, and the pooler outputs (tanh(h[:,0]·W_poolᵀ + b_pool)),
  4. checks gauge.json against the stored tensors (every listed entry holds its value; names and flat row-major indices
     as stored: query/key/value, Linear weights [out, in]) and the fixed-entry count against the analytic formula
     written out here (README, "Gauge invariance"): L·(2d·d_h + 8d + 2F + 2) + 6d + T + S (tied), plus V − 1 + 2d for
     an untied decoder (its own lngain and lnbias d each, lnmean V, writer1 d, embshift V − 1, less the tied head fold
     postln d + 1);
  5. writes gauge_fixed_bert_tied.safetensors / gauge_fixed_bert_untied.safetensors here: orig/NAME, fixed/NAME,
     input_ids, token_type_ids, attention_mask, the log-probabilities of both, and in the metadata gauge.json, the
     deviation and the counts.
GaugeFixedBertGoldenTests reads them.
"""

import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save_safetensors  # noqa: E402
from make_gauge_fixed_golden import fix_and_check  # noqa: E402
from make_gauge_golden_bert import CASES, config, generic_weights, encode, forward, write_model  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def analytic_removable(c):
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    dh = D // NH
    n = NL * (2 * D * dh + 8 * D + 2 * FF + 2) + 6 * D + NPOS + NTYPE
    if not tied:
        # untied decoder: lngain + lnbias of the head LN (2d), lnmean on the decoder (V), writer1 on it (d: d + 1 less the
        # (0, 0) entry lnmean has), embshift's word-table 1-components (V − 1); the tied head fold (postln d + 1) is gone
        n += 2 * D + V + D + (V - 1) - (D + 1)
    return n


def pooled(c, w, ids, types, mask):
    """The pooler output tanh(h[:, 0]·W_poolᵀ + b_pool) from the encoder's last hidden state."""
    x = encode(c, w, ids, types, mask)
    return torch.tanh(F.linear(x[:, 0], w["bert.pooler.dense.weight"], w["bert.pooler.dense.bias"]))


def run(name, c, mt, gen):
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    w0 = generic_weights(c, gen)
    expect = analytic_removable(c)
    w1, gauge_text, n_fixed, total = fix_and_check(mt, w0, lambda d, w: write_model(d, w, c), expect)
    B = 3
    ids = torch.randint(0, V, (B, NPOS), generator=gen)
    types = torch.randint(0, NTYPE, (B, NPOS), generator=gen)
    mask = torch.ones(B, NPOS, dtype=torch.int64)
    mask[1, -2:] = 0
    mask[2, 1:] = 0
    with torch.no_grad():
        l0, l1 = forward(c, w0, ids, types, mask), forward(c, w1, ids, types, mask)
        pool_dev = ((pooled(c, w1, ids, types, mask) - pooled(c, w0, ids, types, mask)).abs().max().item()) if pooler else 0.0
    lp0, lp1 = F.log_softmax(l0, -1), F.log_softmax(l1, -1)
    dev = ((lp1 - lp0).abs().max() / lp0.abs().max()).item()
    moved = (sum((w1[k] - w0[k]).norm() ** 2 for k in w0) ** 0.5 / sum(w0[k].norm() ** 2 for k in w0) ** 0.5).item()
    print(f"bert {name}: {total} parameters, {n_fixed} fixed (= analytic {expect}), {total - n_fixed} free; weights moved "
          f"{moved:.3e}; torch log-probabilities deviate {dev:.2e} (relative max); pooler output {pool_dev:.2e} (max abs)")
    assert dev < 1e-12 and moved > 1e-2 and pool_dev < 1e-12
    tensors = {"input_ids": ids.to(torch.int64), "token_type_ids": types.to(torch.int64), "attention_mask": mask}
    tensors.update({"orig/" + k: v for k, v in w0.items()})
    tensors.update({"fixed/" + k: v for k, v in w1.items()})
    tensors.update({"logprobs/orig": lp0, "logprobs/fixed": lp1})
    meta = {"config": json.dumps(config(c)), "gauge_json": gauge_text, "torch": torch.__version__,
            "logprobs_max_rel_deviation": repr(dev), "pooler_max_abs_deviation": repr(pool_dev),
            "weights_moved_rel": repr(moved), "fixed_count": str(n_fixed), "analytic_removable": str(expect),
            "parameters": str(total)}
    save_safetensors(os.path.join(OUT_DIR, f"gauge_fixed_bert_{name}.safetensors"), tensors, meta)


def main():
    mt = sys.argv[1:] or ["dotnet", "run", "-c", "Release", "--project", "src/MiniTransformer.Cli", "--"]
    gen = torch.Generator().manual_seed(4321)
    for name, c in CASES.items():
        run(name, c, mt, gen)


if __name__ == "__main__":
    main()
