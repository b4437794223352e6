#!/usr/bin/env python3
"""Independent check of `mt gauge apply`: PyTorch runs the original model and the one mt transformed.

Run from the repository root (needs python3-torch and a built mt):
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_gauge_golden.py [MT_COMMAND...]
MT_COMMAND defaults to `dotnet run -c Release --project src/MiniTransformer.Cli --`.

For a tied and an untied GPT-2 at a generic point (random weights, biases and gains), the script
  1. writes the original as a Hugging Face directory (config.json + F64 model.safetensors),
  2. runs `mt gauge apply --model ORIG --out GAUGED --kinds ... --seed 5 --dtype f64`,
  3. reads both directories and runs them with its own GPT-2 (F.layer_norm, F.multi_head_attention_forward,
     F.gelu(approximate="tanh")), float64,
  4. writes gauge_tied.safetensors / gauge_untied.safetensors here: orig/NAME, gauged/NAME, input_ids, the logits and
     log-probabilities of both, and in the metadata the max deviation and the weight change it saw.
The test GaugeGoldenTests reads them: same log-probabilities in torch, weights that differ, our engine agreeing
with torch on the transformed model, and `mt gauge apply` still producing exactly these weights.
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

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
DT = torch.float64
V, NPOS, D, NH, NL, NI, EPS = 29, 8, 6, 3, 2, 10, 1e-5
SEED = 5
KINDS_TIED = "qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift"
KINDS_UNTIED = KINDS_TIED + ",residual"


def config(tied):
    return {"model_type": "gpt2", "vocab_size": V, "n_positions": NPOS, "n_ctx": NPOS, "n_embd": D,
            "n_layer": NL, "n_head": NH, "n_inner": NI, "activation_function": "gelu_new",
            "layer_norm_epsilon": EPS, "tie_word_embeddings": tied}


def generic_weights(tied, gen):
    def n(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=DT) * std
    w = {"wte.weight": n(V, D, std=0.5), "wpe.weight": n(NPOS, D, std=0.5)}
    for i in range(NL):
        p = f"h.{i}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"] = 1 + n(D, std=0.2)
            w[p + ln + ".bias"] = n(D, std=0.2)
        w[p + "attn.c_attn.weight"] = n(D, 3 * D, std=0.5)
        w[p + "attn.c_attn.bias"] = n(3 * D, std=0.2)
        w[p + "attn.c_proj.weight"] = n(D, D, std=0.5)
        w[p + "attn.c_proj.bias"] = n(D, std=0.2)
        w[p + "mlp.c_fc.weight"] = n(D, NI, std=0.5)
        w[p + "mlp.c_fc.bias"] = n(NI, std=0.2)
        w[p + "mlp.c_proj.weight"] = n(NI, D, std=0.5)
        w[p + "mlp.c_proj.bias"] = n(D, std=0.2)
    w["ln_f.weight"] = 1 + n(D, std=0.2)
    w["ln_f.bias"] = n(D, std=0.2)
    if not tied:
        w["lm_head.weight"] = n(V, D, std=0.5)
    return w


def forward(w, ids, tied):
    """GPT-2 from torch's functional pieces; Conv1D weights are [in, out] (y = x @ W + b)."""
    Tn = ids.shape[1]
    x = w["wte.weight"][ids] + w["wpe.weight"][:Tn]
    mask = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), diagonal=1)
    for i in range(NL):
        p = f"h.{i}."
        h = F.layer_norm(x, (D,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], EPS)
        hq = h.transpose(0, 1)  # [T, B, D] for the functional MHA
        y, _ = F.multi_head_attention_forward(
            hq, hq, hq, D, NH,
            in_proj_weight=w[p + "attn.c_attn.weight"].t().contiguous(), in_proj_bias=w[p + "attn.c_attn.bias"],
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=w[p + "attn.c_proj.weight"].t().contiguous(), out_proj_bias=w[p + "attn.c_proj.bias"],
            training=False, need_weights=False, attn_mask=mask)
        x = x + y.transpose(0, 1)
        h = F.layer_norm(x, (D,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], EPS)
        m = F.gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    h = F.layer_norm(x, (D,), w["ln_f.weight"], w["ln_f.bias"], EPS)
    return h @ (w["wte.weight"] if tied else w["lm_head.weight"]).t()


def write_model(dirpath, w, tied):
    os.makedirs(dirpath, exist_ok=True)
    cfg = json.dumps(config(tied), indent=2)
    save_safetensors(os.path.join(dirpath, "model.safetensors"), w, {"config": cfg, "format": "pt"})
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        f.write(cfg + "\n")


def run(tied, mt, gen):
    name = "tied" if tied else "untied"
    kinds = KINDS_TIED if tied else KINDS_UNTIED
    w0 = generic_weights(tied, gen)
    with tempfile.TemporaryDirectory() as tmp:
        orig, gauged = os.path.join(tmp, "orig"), os.path.join(tmp, "gauged")
        write_model(orig, w0, tied)
        cmd = mt + ["gauge", "apply", "--model", orig, "--out", gauged, "--kinds", kinds, "--seed", str(SEED), "--dtype", "f64"]
        print("$", " ".join(cmd[len(mt):]))
        subprocess.run(cmd, check=True)
        meta, w1 = load_safetensors(os.path.join(gauged, "model.safetensors"))
        with open(os.path.join(gauged, "config.json")) as f:
            assert json.load(f)["tie_word_embeddings"] == tied
    assert set(w1) == set(w0), sorted(set(w1) ^ set(w0))
    ids = torch.randint(0, V, (3, NPOS), generator=gen)
    with torch.no_grad():
        l0, l1 = forward(w0, ids, tied), forward(w1, ids, tied)
    lp0, lp1 = F.log_softmax(l0, -1), F.log_softmax(l1, -1)
    dev = ((lp1 - lp0).abs().max() / lp0.abs().max()).item()
    raw = ((l1 - l0).abs().max() / l0.abs().max()).item()
    moved = {k: ((w1[k] - w0[k]).norm() / w0[k].norm()).item() for k in w0}
    total = (sum((w1[k] - w0[k]).norm() ** 2 for k in w0) ** 0.5 / sum(w0[k].norm() ** 2 for k in w0) ** 0.5).item()
    print(f"{name}: kinds {kinds}; weights moved {total:.3e} (relative, {sum(v > 1e-3 for v in moved.values())} of {len(moved)} tensors by > 1e-3); "
          f"torch log-probabilities deviate {dev:.2e} (relative max); raw logits {raw:.2e} (per-row shifts allowed)")
    assert dev < 1e-12 and total > 1e-2
    tensors = {"input_ids": ids.to(torch.int64)}
    tensors.update({"orig/" + k: v for k, v in w0.items()})
    tensors.update({"gauged/" + k: v for k, v in w1.items()})
    tensors.update({"logits/orig": l0, "logits/gauged": l1, "logprobs/orig": lp0, "logprobs/gauged": lp1})
    meta = {"config": json.dumps(config(tied)), "kinds": kinds, "seed": str(SEED), "torch": torch.__version__,
            "logprobs_max_rel_deviation": repr(dev), "weights_moved_rel": repr(total)}
    save_safetensors(os.path.join(OUT_DIR, f"gauge_{name}.safetensors"), tensors, meta)


def main():
    mt = sys.argv[1:] or ["dotnet", "run", "-c", "Release", "--project", "src/MiniTransformer.Cli", "--"]
    gen = torch.Generator().manual_seed(1234)
    run(True, mt, gen)
    run(False, mt, gen)


if __name__ == "__main__":
    main()
