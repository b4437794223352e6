#!/usr/bin/env python3
"""Independent check of `mt gauge apply` on BERT: PyTorch runs the original model and the one mt transformed.

Run from the repository root (needs python3-torch and a built mt):
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_gauge_golden_bert.py [MT_COMMAND...]
MT_COMMAND defaults to `dotnet run -c Release --project src/MiniTransformer.Cli --`.

For a tied BERT with a pooler (odd sizes: d=6 in 3 heads, 2 layers, 3 token types) and an untied one, at a generic
point (random weights, biases and LayerNorm gains), the script
  1. writes the original as a Hugging Face directory (config.json + F64 model.safetensors, query/key/value separate,
     Linear weights [out, in]),
  2. runs `mt gauge apply --model ORIG --out GAUGED --kinds ... --seed 5 --dtype f64` with every BERT kind (postln too),
  3. reads both directories and runs them with its own post-LN BERT written here from torch's functional pieces
     (F.embedding, F.layer_norm, F.multi_head_attention_forward with key_padding_mask, F.gelu (erf), F.linear), float64,
     on inputs with token types and padding,
  4. writes gauge_bert_tied.safetensors / gauge_bert_untied.safetensors here: orig/NAME, gauged/NAME (Hugging Face
     names), input_ids, token_type_ids, attention_mask, the logits and log-probabilities of both, and in the metadata the
     config, kinds, seed, the max deviation and the weight change it saw.
GaugeGoldenTests reads them: same log-probabilities in torch, weights that differ, our engine agreeing with torch on
the transformed model, and `mt gauge apply` still producing exactly these weights.
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
SEED = 5
KINDS = "qk,kbias,ov,vbias,lngain,lnbias,lnmean,writer1,embshift,postln"
CASES = {
    # name: (V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied)
    "tied": (29, 8, 6, 3, 2, 10, 3, 1e-12, True, True),
    "untied": (13, 5, 4, 2, 1, 7, 2, 1e-12, False, False),
}


def config(c):
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    return {"model_type": "bert", "architectures": ["BertForPreTraining" if pooler else "BertForMaskedLM"],
            "vocab_size": V, "hidden_size": D, "num_hidden_layers": NL, "num_attention_heads": NH,
            "intermediate_size": FF, "max_position_embeddings": NPOS, "type_vocab_size": NTYPE, "layer_norm_eps": EPS,
            "hidden_act": "gelu", "position_embedding_type": "absolute", "pad_token_id": 0,
            "tie_word_embeddings": tied}


def generic_weights(c, gen):
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c

    def n(*shape, std):
        return torch.randn(*shape, generator=gen, dtype=DT) * std

    def ln(w, name):
        w[name + ".weight"] = 1 + n(D, std=0.2)
        w[name + ".bias"] = n(D, std=0.2)

    def lin(w, name, out, inp):
        w[name + ".weight"] = n(out, inp, std=0.5)
        w[name + ".bias"] = n(out, std=0.2)

    e = "bert.embeddings."
    w = {e + "word_embeddings.weight": n(V, D, std=0.5), e + "position_embeddings.weight": n(NPOS, D, std=0.5),
         e + "token_type_embeddings.weight": n(NTYPE, D, std=0.5)}
    ln(w, e + "LayerNorm")
    for i in range(NL):
        p = f"bert.encoder.layer.{i}."
        for part in ("query", "key", "value"):
            lin(w, p + "attention.self." + part, D, D)
        lin(w, p + "attention.output.dense", D, D)
        ln(w, p + "attention.output.LayerNorm")
        lin(w, p + "intermediate.dense", FF, D)
        lin(w, p + "output.dense", D, FF)
        ln(w, p + "output.LayerNorm")
    if pooler:
        lin(w, "bert.pooler.dense", D, D)
    lin(w, "cls.predictions.transform.dense", D, D)
    ln(w, "cls.predictions.transform.LayerNorm")
    if not tied:
        w["cls.predictions.decoder.weight"] = n(V, D, std=0.5)
    w["cls.predictions.bias"] = n(V, std=0.2)
    return w


def encode(c, w, ids, types, mask):
    """Post-LN BERT encoder from torch's functional pieces: the last hidden state. Linear weights are [out, in]."""
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    e = "bert.embeddings."
    Tn = ids.shape[1]
    x = F.embedding(ids, w[e + "word_embeddings.weight"]) + w[e + "position_embeddings.weight"][:Tn] \
        + F.embedding(types, w[e + "token_type_embeddings.weight"])
    x = F.layer_norm(x, (D,), w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"], EPS)
    pad = mask == 0
    for i in range(NL):
        p = f"bert.encoder.layer.{i}."
        s = p + "attention.self."
        in_w = torch.cat([w[s + k + ".weight"] for k in ("query", "key", "value")], 0)
        in_b = torch.cat([w[s + k + ".bias"] for k in ("query", "key", "value")], 0)
        xq = x.transpose(0, 1)
        y, _ = F.multi_head_attention_forward(
            xq, xq, xq, D, NH, in_proj_weight=in_w, in_proj_bias=in_b, bias_k=None, bias_v=None, add_zero_attn=False,
            dropout_p=0.0, out_proj_weight=w[p + "attention.output.dense.weight"],
            out_proj_bias=w[p + "attention.output.dense.bias"], training=False, key_padding_mask=pad, need_weights=False)
        h = F.layer_norm(x + y.transpose(0, 1), (D,), w[p + "attention.output.LayerNorm.weight"],
                         w[p + "attention.output.LayerNorm.bias"], EPS)
        m = F.linear(F.gelu(F.linear(h, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"])),
                     w[p + "output.dense.weight"], w[p + "output.dense.bias"])
        x = F.layer_norm(h + m, (D,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], EPS)
    return x


def forward(c, w, ids, types, mask):
    """Post-LN BERT + MLM head (y = x @ W.T + b): the MLM logits."""
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    e = "bert.embeddings."
    x = encode(c, w, ids, types, mask)
    t = F.gelu(F.linear(x, w["cls.predictions.transform.dense.weight"], w["cls.predictions.transform.dense.bias"]))
    t = F.layer_norm(t, (D,), w["cls.predictions.transform.LayerNorm.weight"], w["cls.predictions.transform.LayerNorm.bias"], EPS)
    dec = w[e + "word_embeddings.weight"] if tied else w["cls.predictions.decoder.weight"]
    return F.linear(t, dec, w["cls.predictions.bias"])


def write_model(dirpath, w, c):
    os.makedirs(dirpath, exist_ok=True)
    cfg = json.dumps(config(c), indent=2)
    save_safetensors(os.path.join(dirpath, "model.safetensors"), w, {"config": cfg, "format": "pt"})
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        f.write(cfg + "\n")


def run(name, c, mt, gen):
    V, NPOS, D, NH, NL, FF, NTYPE, EPS, pooler, tied = c
    w0 = generic_weights(c, gen)
    with tempfile.TemporaryDirectory() as tmp:
        orig, gauged = os.path.join(tmp, "orig"), os.path.join(tmp, "gauged")
        write_model(orig, w0, c)
        cmd = mt + ["gauge", "apply", "--model", orig, "--out", gauged, "--kinds", KINDS, "--seed", str(SEED), "--dtype", "f64"]
        print("$", " ".join(cmd[len(mt):]))
        subprocess.run(cmd, check=True)
        _, w1 = load_safetensors(os.path.join(gauged, "model.safetensors"))
    assert set(w1) == set(w0), sorted(set(w1) ^ set(w0))
    B = 3
    ids = torch.randint(0, V, (B, NPOS), generator=gen)
    types = torch.randint(0, NTYPE, (B, NPOS), generator=gen)
    mask = torch.ones(B, NPOS, dtype=torch.int64)
    mask[1, -2:] = 0
    mask[2, 1:] = 0
    with torch.no_grad():
        l0, l1 = forward(c, w0, ids, types, mask), forward(c, w1, ids, types, mask)
    lp0, lp1 = F.log_softmax(l0, -1), F.log_softmax(l1, -1)
    dev = ((lp1 - lp0).abs().max() / lp0.abs().max()).item()
    raw = ((l1 - l0).abs().max() / l0.abs().max()).item()
    moved = {k: ((w1[k] - w0[k]).norm() / w0[k].norm()).item() for k in w0}
    total = (sum((w1[k] - w0[k]).norm() ** 2 for k in w0) ** 0.5 / sum(w0[k].norm() ** 2 for k in w0) ** 0.5).item()
    print(f"bert {name}: kinds {KINDS}; weights moved {total:.3e} (relative, {sum(v > 1e-3 for v in moved.values())} of "
          f"{len(moved)} tensors by > 1e-3); torch log-probabilities deviate {dev:.2e} (relative max); raw logits {raw:.2e}")
    assert dev < 1e-12 and total > 1e-2
    tensors = {"input_ids": ids.to(torch.int64), "token_type_ids": types.to(torch.int64), "attention_mask": mask}
    tensors.update({"orig/" + k: v for k, v in w0.items()})
    tensors.update({"gauged/" + k: v for k, v in w1.items()})
    tensors.update({"logits/orig": l0, "logits/gauged": l1, "logprobs/orig": lp0, "logprobs/gauged": lp1})
    meta = {"config": json.dumps(config(c)), "kinds": KINDS, "seed": str(SEED), "torch": torch.__version__,
            "logprobs_max_rel_deviation": repr(dev), "weights_moved_rel": repr(total)}
    save_safetensors(os.path.join(OUT_DIR, f"gauge_bert_{name}.safetensors"), tensors, meta)


def main():
    mt = sys.argv[1:] or ["dotnet", "run", "-c", "Release", "--project", "src/MiniTransformer.Cli", "--"]
    gen = torch.Generator().manual_seed(4321)
    for name, c in CASES.items():
        run(name, c, mt, gen)


if __name__ == "__main__":
    main()
