#!/usr/bin/env python3
"""Generate golden reference files for MiniTransformer's BERT tests with PyTorch.

Run from the repository root:
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_golden_bert.py

The encoder is torch's own nn.TransformerEncoderLayer (norm_first=False: post-LN,
activation=F.gelu: the erf form, src_key_padding_mask for the padding), with the
embeddings from nn.Embedding + nn.LayerNorm and the MLM head from nn.Linear, F.gelu,
nn.LayerNorm and the tied word embeddings; Hugging Face BERT tensors are mapped into
those modules (query/key/value -> in_proj_weight rows, attention.output.dense ->
out_proj, ...). So the files are an independent reference, not a transcription of
the engine's equations. All computation is float64.

Outputs (next to this script):
  bert_mlm.safetensors     BertForMaskedLM-like: no pooler, MLM loss
  bert_pooler.safetensors  with the pooler; loss = MLM loss + sum(pooler_probe * pooled_output)
"""

import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import save_safetensors, check_roundtrip  # noqa: E402  (the same tiny safetensors writer)

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
DT = torch.float64
torch.set_default_dtype(DT)

# odd sizes: V=37, d=15 in 3 heads of 5, 2 layers, intermediate 27, 2 token types
V, NPOS, D, NH, NL, FF, NTYPE, EPS = 37, 9, 15, 3, 2, 27, 2, 1e-12
B, T = 3, 6
SEED = 4321
# attention_mask: row 0 full, row 1 two padded positions, row 2 padded down to one token
MASK = [[1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
        [1, 0, 0, 0, 0, 0]]
TYPES = [[0, 0, 0, 1, 1, 1],
         [0, 0, 1, 1, 0, 0],
         [0, 0, 0, 0, 0, 0]]
# scored (b, t): everything else (and every padded position) is -100
SCORED = [(0, 0), (0, 2), (0, 3), (0, 5), (1, 1), (1, 2), (1, 3), (2, 0)]


def hf_config():
    return {
        "model_type": "bert",
        "architectures": ["BertForMaskedLM"],
        "vocab_size": V,
        "hidden_size": D,
        "num_hidden_layers": NL,
        "num_attention_heads": NH,
        "intermediate_size": FF,
        "max_position_embeddings": NPOS,
        "type_vocab_size": NTYPE,
        "layer_norm_eps": EPS,
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": 0,
        "tie_word_embeddings": True,
        "torch_dtype": "float64",
    }


class BertMLM(nn.Module):
    def __init__(self, pooler):
        super().__init__()
        self.word = nn.Embedding(V, D)
        self.pos = nn.Embedding(NPOS, D)
        self.typ = nn.Embedding(NTYPE, D)
        self.emb_ln = nn.LayerNorm(D, eps=EPS)
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(D, NH, dim_feedforward=FF, dropout=0.0, activation=F.gelu,
                                       layer_norm_eps=EPS, batch_first=True, norm_first=False)
            for _ in range(NL)])
        self.pooler = nn.Linear(D, D) if pooler else None
        self.head_dense = nn.Linear(D, D)
        self.head_ln = nn.LayerNorm(D, eps=EPS)
        self.head_bias = nn.Parameter(torch.zeros(V))

    def hf_map(self):
        """HF name -> (torch tensor (a parameter or a row block of one), getter of its grad)."""
        m = {}

        def put(name, p, rows=None):
            m[name] = (p, rows)

        put("bert.embeddings.word_embeddings.weight", self.word.weight)
        put("bert.embeddings.position_embeddings.weight", self.pos.weight)
        put("bert.embeddings.token_type_embeddings.weight", self.typ.weight)
        put("bert.embeddings.LayerNorm.weight", self.emb_ln.weight)
        put("bert.embeddings.LayerNorm.bias", self.emb_ln.bias)
        for i, L in enumerate(self.layers):
            p = f"bert.encoder.layer.{i}."
            for k, part in enumerate(("query", "key", "value")):
                rows = slice(k * D, (k + 1) * D)
                put(p + f"attention.self.{part}.weight", L.self_attn.in_proj_weight, rows)
                put(p + f"attention.self.{part}.bias", L.self_attn.in_proj_bias, rows)
            put(p + "attention.output.dense.weight", L.self_attn.out_proj.weight)
            put(p + "attention.output.dense.bias", L.self_attn.out_proj.bias)
            put(p + "attention.output.LayerNorm.weight", L.norm1.weight)
            put(p + "attention.output.LayerNorm.bias", L.norm1.bias)
            put(p + "intermediate.dense.weight", L.linear1.weight)
            put(p + "intermediate.dense.bias", L.linear1.bias)
            put(p + "output.dense.weight", L.linear2.weight)
            put(p + "output.dense.bias", L.linear2.bias)
            put(p + "output.LayerNorm.weight", L.norm2.weight)
            put(p + "output.LayerNorm.bias", L.norm2.bias)
        if self.pooler is not None:
            put("bert.pooler.dense.weight", self.pooler.weight)
            put("bert.pooler.dense.bias", self.pooler.bias)
        put("cls.predictions.transform.dense.weight", self.head_dense.weight)
        put("cls.predictions.transform.dense.bias", self.head_dense.bias)
        put("cls.predictions.transform.LayerNorm.weight", self.head_ln.weight)
        put("cls.predictions.transform.LayerNorm.bias", self.head_ln.bias)
        put("cls.predictions.bias", self.head_bias)
        return m

    def load_hf(self, sd):
        m = self.hf_map()
        assert set(m) == set(sd), set(m) ^ set(sd)
        with torch.no_grad():
            for name, (p, rows) in m.items():
                dst = p if rows is None else p[rows]
                assert dst.shape == sd[name].shape, (name, dst.shape, sd[name].shape)
                dst.copy_(sd[name])

    def hf_params(self):
        return {n: (p if r is None else p[r]).detach().clone().contiguous() for n, (p, r) in self.hf_map().items()}

    def hf_grads(self):
        out = {}
        for n, (p, r) in self.hf_map().items():
            assert p.grad is not None, n
            out[n] = (p.grad if r is None else p.grad[r]).detach().clone().contiguous()
        return out

    def forward(self, ids, types, mask):
        x = self.word(ids) + self.pos(torch.arange(ids.shape[1]))[None] + self.typ(types)
        x = self.emb_ln(x)
        pad = mask == 0  # True = ignore this key
        for L in self.layers:
            x = L(x, src_key_padding_mask=pad)
        hidden = x
        pooled = torch.tanh(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        t = self.head_ln(F.gelu(self.head_dense(hidden)))
        logits = t @ self.word.weight.t() + self.head_bias
        return logits, hidden, pooled


def make_hf_weights(gen, pooler):
    def n(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=DT) * std

    sd = {
        "bert.embeddings.word_embeddings.weight": n(V, D, std=0.3),
        "bert.embeddings.position_embeddings.weight": n(NPOS, D, std=0.3),
        "bert.embeddings.token_type_embeddings.weight": n(NTYPE, D, std=0.3),
        "bert.embeddings.LayerNorm.weight": 1 + n(D, std=0.1),
        "bert.embeddings.LayerNorm.bias": n(D, std=0.1),
    }
    for i in range(NL):
        p = f"bert.encoder.layer.{i}."
        for part in ("query", "key", "value"):
            sd[p + f"attention.self.{part}.weight"] = n(D, D, std=0.3)
            sd[p + f"attention.self.{part}.bias"] = n(D, std=0.1)
        sd[p + "attention.output.dense.weight"] = n(D, D, std=0.3)
        sd[p + "attention.output.dense.bias"] = n(D, std=0.1)
        sd[p + "attention.output.LayerNorm.weight"] = 1 + n(D, std=0.1)
        sd[p + "attention.output.LayerNorm.bias"] = n(D, std=0.1)
        sd[p + "intermediate.dense.weight"] = n(FF, D, std=0.3)
        sd[p + "intermediate.dense.bias"] = n(FF, std=0.1)
        sd[p + "output.dense.weight"] = n(D, FF, std=0.3)
        sd[p + "output.dense.bias"] = n(D, std=0.1)
        sd[p + "output.LayerNorm.weight"] = 1 + n(D, std=0.1)
        sd[p + "output.LayerNorm.bias"] = n(D, std=0.1)
    if pooler:
        sd["bert.pooler.dense.weight"] = n(D, D, std=0.3)
        sd["bert.pooler.dense.bias"] = n(D, std=0.1)
    sd["cls.predictions.transform.dense.weight"] = n(D, D, std=0.3)
    sd["cls.predictions.transform.dense.bias"] = n(D, std=0.1)
    sd["cls.predictions.transform.LayerNorm.weight"] = 1 + n(D, std=0.1)
    sd["cls.predictions.transform.LayerNorm.bias"] = n(D, std=0.1)
    sd["cls.predictions.bias"] = n(V, std=0.1)
    return sd


def total_loss(logits, pooled, targets, probe):
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    if probe is not None:
        loss = loss + (pooled * probe).sum()
    return loss


# ----------------------------------------------------------------------------
# sanity checks
# ----------------------------------------------------------------------------
def check_layer_mapping(model, sd, ids, types, mask):
    """Layer 0 written out by hand from the HF tensors (post-LN, erf gelu, key padding) vs the torch layer."""
    with torch.no_grad():
        x = model.emb_ln(model.word(ids) + model.pos(torch.arange(T))[None] + model.typ(types))
        p = "bert.encoder.layer.0."
        hd = D // NH

        def lin(z, name):
            return z @ sd[p + name + ".weight"].t() + sd[p + name + ".bias"]

        def heads(z):
            return z.reshape(B, T, NH, hd).transpose(1, 2)

        q, k, v = (heads(lin(x, f"attention.self.{s}")) for s in ("query", "key", "value"))
        s = q @ k.transpose(-1, -2) / hd ** 0.5
        s = s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        a = lin(a.transpose(1, 2).reshape(B, T, D), "attention.output.dense")

        def ln(z, name):
            mu = z.mean(-1, keepdim=True)
            var = ((z - mu) ** 2).mean(-1, keepdim=True)
            return (z - mu) / torch.sqrt(var + EPS) * sd[p + name + ".weight"] + sd[p + name + ".bias"]

        h = ln(x + a, "attention.output.LayerNorm")
        g = lin(h, "intermediate.dense")
        g = 0.5 * g * (1 + torch.erf(g / 2 ** 0.5))
        y = ln(h + lin(g, "output.dense"), "output.LayerNorm")
        y_ref = model.layers[0](x, src_key_padding_mask=mask == 0)
        err = (y - y_ref).abs().max().item()
        assert err < 1e-12, f"layer mapping mismatch: {err}"
        return err


def check_grads_fd(pooler, sd, ids, types, mask, targets, probe, grads, h=1e-6):
    """Central finite differences on one entry of every HF tensor (perturbed in the HF layout)."""
    gen = torch.Generator().manual_seed(99)
    worst = 0.0
    for name in grads:
        idx = tuple(int(torch.randint(0, s, (1,), generator=gen)) for s in sd[name].shape)
        vals = []
        for sign in (1.0, -1.0):
            p = {k: v.clone() for k, v in sd.items()}
            p[name][idx] += sign * h
            m = BertMLM(pooler)
            m.load_hf(p)
            with torch.no_grad():
                lg, _, pl = m(ids, types, mask)
                vals.append(total_loss(lg, pl, targets, probe).item())
        fd = (vals[0] - vals[1]) / (2 * h)
        g = grads[name][idx].item()
        err = abs(fd - g) / max(1.0, abs(g))
        assert err < 1e-6, f"finite-difference mismatch for {name}{idx}: {fd} vs {g}"
        worst = max(worst, err)
    return worst


def main():
    torch.manual_seed(SEED)
    report = {"torch": torch.__version__}
    for pooler in (False, True):
        gen = torch.Generator().manual_seed(SEED + (1 if pooler else 0))
        sd = make_hf_weights(gen, pooler)
        ids = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
        types = torch.tensor(TYPES, dtype=torch.int64)
        mask = torch.tensor(MASK, dtype=torch.int64)
        targets = torch.full((B, T), -100, dtype=torch.int64)
        for b, t in SCORED:
            assert MASK[b][t] == 1
            targets[b, t] = int(torch.randint(0, V, (1,), generator=gen))
        probe = torch.randn(B, D, generator=gen, dtype=DT) * 0.5 if pooler else None

        model = BertMLM(pooler)
        model.train()  # never torch's inference fast path
        model.load_hf(sd)
        for k, v in model.hf_params().items():
            assert torch.equal(v, sd[k]), k
        layer_err = check_layer_mapping(model, sd, ids, types, mask)

        model.zero_grad(set_to_none=True)
        logits, hidden, pooled = model(ids, types, mask)
        loss = total_loss(logits, pooled, targets, probe)
        mlm = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        grads = model.hf_grads()
        fd_err = check_grads_fd(pooler, sd, ids, types, mask, targets, probe, grads)

        meta = {"config": json.dumps(hf_config()), "generator": "make_golden_bert.py",
                "torch_version": torch.__version__, "seed": str(SEED),
                "loss": "mlm_loss" + (" + sum(pooler_probe * pooled_output)" if pooler else "")}
        tensors = {k: sd[k].contiguous() for k in model.hf_map()}
        tensors["input_ids"] = ids
        tensors["token_type_ids"] = types
        tensors["attention_mask"] = mask
        tensors["targets"] = targets
        tensors["logits"] = logits.detach().contiguous()
        tensors["hidden_states"] = hidden.detach().contiguous()
        tensors["mlm_loss"] = mlm.detach().reshape(())
        if pooler:
            tensors["pooler_probe"] = probe
            tensors["pooled_output"] = pooled.detach().contiguous()
        tensors["loss"] = loss.detach().reshape(())
        for k, g in grads.items():
            tensors["grad/" + k] = g
        name = "bert_pooler.safetensors" if pooler else "bert_mlm.safetensors"
        path = os.path.join(OUT_DIR, name)
        save_safetensors(path, tensors, meta)
        size = check_roundtrip(path, tensors, meta)
        report[name] = dict(size=size, loss=loss.item(), mlm_loss=mlm.item(), layer_check_err=layer_err,
                            fd_grad_err=fd_err, n_tensors=len(tensors))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
