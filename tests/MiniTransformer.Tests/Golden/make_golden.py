#!/usr/bin/env python3
"""Generate golden reference files for MiniTransformer's GPT-2 tests with PyTorch.

Run from the repository root:
    /usr/bin/python3 tests/MiniTransformer.Tests/Golden/make_golden.py

The model is assembled from torch's own building blocks (nn.Embedding,
F.layer_norm, nn.MultiheadAttention, nn.Linear, F.gelu(approximate="tanh"),
F.cross_entropy) rather than a hand transcription of the GPT-2 equations, so
the files are an independent reference. All computation is float64.

Outputs (next to this script):
  gpt2_tied.safetensors    forward/backward of a tied-embedding GPT-2
  gpt2_untied.safetensors  same with a separate lm_head.weight
  gpt2_adamw.safetensors   10 AdamW steps (nanoGPT-style param groups) on the tied model
"""

import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
DT = torch.float64
torch.set_default_dtype(DT)

# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------
V, NPOS, D, NH, NL, NI, EPS = 53, 11, 24, 3, 2, 40, 1e-5
B, T = 2, 7
SEED = 1234
IGNORED = [(0, 6), (1, 0), (1, 4)]  # (b, t) target entries set to -100

ADAMW = dict(lr=1e-2, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.1,
             weight_decay_rule="0.1 for parameters with ndim >= 2, 0.0 for ndim < 2",
             steps=10, grad_clip=None, lr_schedule=None, amsgrad=False)


def hf_config(tied):
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": V,
        "n_positions": NPOS,
        "n_ctx": NPOS,
        "n_embd": D,
        "n_layer": NL,
        "n_head": NH,
        "n_inner": NI,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": EPS,
        "tie_word_embeddings": tied,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "torch_dtype": "float64",
    }


# ----------------------------------------------------------------------------
# minimal safetensors writer / reader
# ----------------------------------------------------------------------------
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}
_TORCH_OF = {v: k for k, v in _DTYPES.items()}


def _le_bytes(t):
    t = t.detach().contiguous().cpu()
    if sys.byteorder != "little":
        raise RuntimeError("big-endian host not supported")
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata):
    """tensors: ordered dict name -> tensor; metadata: dict str -> str."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        b = _le_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out = {}
    expect = 0
    for name, info in header.items():
        b, e = info["data_offsets"]
        assert b == expect, f"{name}: non-contiguous data ({b} != {expect})"
        expect = e
        dt = _TORCH_OF[info["dtype"]]
        buf = bytearray(data[b:e])
        t = torch.frombuffer(buf, dtype=dt) if e > b else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"]).clone()
    assert expect == len(data), "trailing bytes after last tensor"
    return meta, out


# ----------------------------------------------------------------------------
# model: torch modules, parameters addressed by Hugging Face GPT-2 names
# ----------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1_w = nn.Parameter(torch.empty(D))
        self.ln_1_b = nn.Parameter(torch.empty(D))
        self.attn = nn.MultiheadAttention(D, NH, dropout=0.0, bias=True,
                                          batch_first=True, dtype=DT)
        self.ln_2_w = nn.Parameter(torch.empty(D))
        self.ln_2_b = nn.Parameter(torch.empty(D))
        self.c_fc = nn.Linear(D, NI, dtype=DT)
        self.c_proj = nn.Linear(NI, D, dtype=DT)

    def attn_out(self, h):
        Tn = h.shape[1]
        mask = torch.triu(torch.ones(Tn, Tn, dtype=torch.bool), diagonal=1)  # True = masked
        y, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        return y

    def forward(self, x):
        x = x + self.attn_out(F.layer_norm(x, (D,), self.ln_1_w, self.ln_1_b, EPS))
        h = F.layer_norm(x, (D,), self.ln_2_w, self.ln_2_b, EPS)
        x = x + self.c_proj(F.gelu(self.c_fc(h), approximate="tanh"))
        return x


class GPT2(nn.Module):
    def __init__(self, tied):
        super().__init__()
        self.tied = tied
        self.wte = nn.Embedding(V, D, dtype=DT)
        self.wpe = nn.Embedding(NPOS, D, dtype=DT)
        self.h = nn.ModuleList([Block() for _ in range(NL)])
        self.ln_f_w = nn.Parameter(torch.empty(D))
        self.ln_f_b = nn.Parameter(torch.empty(D))
        self.lm_head = None if tied else nn.Parameter(torch.empty(V, D))

    def hf_map(self):
        """HF name -> (torch parameter, transposed?). transposed=True means the
        HF tensor is the transpose of the torch parameter (Conv1D [in, out])."""
        m = {"wte.weight": (self.wte.weight, False), "wpe.weight": (self.wpe.weight, False)}
        for i, blk in enumerate(self.h):
            p = f"h.{i}."
            m[p + "ln_1.weight"] = (blk.ln_1_w, False)
            m[p + "ln_1.bias"] = (blk.ln_1_b, False)
            m[p + "attn.c_attn.weight"] = (blk.attn.in_proj_weight, True)
            m[p + "attn.c_attn.bias"] = (blk.attn.in_proj_bias, False)
            m[p + "attn.c_proj.weight"] = (blk.attn.out_proj.weight, True)
            m[p + "attn.c_proj.bias"] = (blk.attn.out_proj.bias, False)
            m[p + "ln_2.weight"] = (blk.ln_2_w, False)
            m[p + "ln_2.bias"] = (blk.ln_2_b, False)
            m[p + "mlp.c_fc.weight"] = (blk.c_fc.weight, True)
            m[p + "mlp.c_fc.bias"] = (blk.c_fc.bias, False)
            m[p + "mlp.c_proj.weight"] = (blk.c_proj.weight, True)
            m[p + "mlp.c_proj.bias"] = (blk.c_proj.bias, False)
        m["ln_f.weight"] = (self.ln_f_w, False)
        m["ln_f.bias"] = (self.ln_f_b, False)
        if not self.tied:
            m["lm_head.weight"] = (self.lm_head, False)
        return m

    def load_hf(self, sd):
        m = self.hf_map()
        assert set(m) == set(sd), set(m) ^ set(sd)
        with torch.no_grad():
            for name, (p, tr) in m.items():
                src = sd[name].t() if tr else sd[name]
                assert p.shape == src.shape, (name, p.shape, src.shape)
                p.copy_(src)

    def hf_params(self):
        return {n: (p.detach().t() if tr else p.detach()).clone().contiguous()
                for n, (p, tr) in self.hf_map().items()}

    def hf_grads(self):
        out = {}
        for n, (p, tr) in self.hf_map().items():
            assert p.grad is not None, n
            g = p.grad.detach()
            out[n] = (g.t() if tr else g).clone().contiguous()
        return out

    def embed(self, ids):
        pos = torch.arange(ids.shape[1])
        return self.wte(ids) + self.wpe(pos)[None]

    def forward(self, ids):
        x = self.embed(ids)
        for blk in self.h:
            x = blk(x)
        hs = F.layer_norm(x, (D,), self.ln_f_w, self.ln_f_b, EPS)
        w = self.wte.weight if self.tied else self.lm_head
        logits = hs @ w.t()
        return logits, hs


def make_hf_weights(gen):
    def n(*shape, std=1.0):
        return torch.randn(*shape, generator=gen, dtype=DT) * std

    sd = {"wte.weight": n(V, D, std=0.2), "wpe.weight": n(NPOS, D, std=0.2)}
    for i in range(NL):
        p = f"h.{i}."
        sd[p + "ln_1.weight"] = 1 + n(D, std=0.1)
        sd[p + "ln_1.bias"] = n(D, std=0.1)
        sd[p + "attn.c_attn.weight"] = n(D, 3 * D, std=0.2)
        sd[p + "attn.c_attn.bias"] = n(3 * D, std=0.1)
        sd[p + "attn.c_proj.weight"] = n(D, D, std=0.2)
        sd[p + "attn.c_proj.bias"] = n(D, std=0.1)
        sd[p + "ln_2.weight"] = 1 + n(D, std=0.1)
        sd[p + "ln_2.bias"] = n(D, std=0.1)
        sd[p + "mlp.c_fc.weight"] = n(D, NI, std=0.2)
        sd[p + "mlp.c_fc.bias"] = n(NI, std=0.1)
        sd[p + "mlp.c_proj.weight"] = n(NI, D, std=0.2)
        sd[p + "mlp.c_proj.bias"] = n(D, std=0.1)
    sd["ln_f.weight"] = 1 + n(D, std=0.1)
    sd["ln_f.bias"] = n(D, std=0.1)
    return sd


def loss_fn(logits, targets):
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)


# ----------------------------------------------------------------------------
# sanity checks
# ----------------------------------------------------------------------------
def check_attention_mapping(model, sd, ids):
    """Hand-written causal attention from the HF tensors vs nn.MultiheadAttention."""
    with torch.no_grad():
        x = model.embed(ids)
        h = F.layer_norm(x, (D,), sd["h.0.ln_1.weight"], sd["h.0.ln_1.bias"], EPS)
        qkv = h @ sd["h.0.attn.c_attn.weight"] + sd["h.0.attn.c_attn.bias"]  # [B,T,3D]
        q, k, v = qkv.split(D, dim=-1)
        hd = D // NH

        def heads(z):
            return z.reshape(B, T, NH, hd).transpose(1, 2)  # [B,H,T,hd]

        q, k, v = heads(q), heads(k), heads(v)
        s = (q @ k.transpose(-1, -2)) / (hd ** 0.5)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        s = s.masked_fill(~causal, float("-inf"))
        s = s - s.max(dim=-1, keepdim=True).values
        p = s.exp()
        p = p / p.sum(dim=-1, keepdim=True)
        y = (p @ v).transpose(1, 2).reshape(B, T, D)
        y = y @ sd["h.0.attn.c_proj.weight"] + sd["h.0.attn.c_proj.bias"]
        y_ref = model.h[0].attn_out(h)
        err = (y - y_ref).abs().max().item()
        assert err < 1e-12, f"attention mapping mismatch: {err}"
        return err


def check_loss(logits, targets, loss):
    with torch.no_grad():
        lg = logits.reshape(-1, V)
        tg = targets.reshape(-1)
        keep = tg != -100
        lse = torch.logsumexp(lg[keep], dim=-1)
        picked = lg[keep].gather(1, tg[keep][:, None])[:, 0]
        manual = (lse - picked).mean()
        err = abs(manual.item() - loss.item())
        assert err < 1e-12, f"loss mismatch: {manual.item()} vs {loss.item()}"
        return err


def check_grads_fd(tied, sd, ids, targets, grads, h=1e-6):
    """Central finite differences on one entry of every HF tensor, perturbed in
    the HF layout, so a wrong transpose in the gradient mapping is caught."""
    gen = torch.Generator().manual_seed(99)
    worst = 0.0
    for name in grads:
        idx = tuple(int(torch.randint(0, s, (1,), generator=gen)) for s in sd[name].shape)
        vals = []
        for sign in (1.0, -1.0):
            p = {k: v.clone() for k, v in sd.items()}
            p[name][idx] += sign * h
            m = GPT2(tied)
            m.load_hf(p)
            with torch.no_grad():
                vals.append(loss_fn(m(ids)[0], targets).item())
        fd = (vals[0] - vals[1]) / (2 * h)
        g = grads[name][idx].item()
        err = abs(fd - g) / max(1.0, abs(g))
        assert err < 1e-6, f"finite-difference mismatch for {name}{idx}: {fd} vs {g}"
        worst = max(worst, err)
    return worst


def check_roundtrip(path, tensors, metadata):
    meta, back = load_safetensors(path)
    assert meta == {k: str(v) for k, v in metadata.items()}, "metadata mismatch"
    assert list(back) == list(tensors), "tensor names/order mismatch"
    for k, t in tensors.items():
        b = back[k]
        assert b.dtype == t.dtype and tuple(b.shape) == tuple(t.shape), k
        assert torch.equal(b, t.detach().cpu()), f"{k}: values differ after round trip"
    size = os.path.getsize(path)
    assert size < 200 * 1024, f"{path} too large: {size}"
    return size


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------
def main():
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    base = make_hf_weights(gen)
    lm_head = torch.randn(V, D, generator=gen, dtype=DT) * 0.2
    ids = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    for b, t in IGNORED:
        targets[b, t] = -100

    report = {"torch": torch.__version__}

    # ---- 1. forward / backward, tied and untied ----
    for tied in (True, False):
        sd = dict(base)
        if not tied:
            sd["lm_head.weight"] = lm_head
        model = GPT2(tied)
        model.load_hf(sd)
        # mapping sanity: parameters read back in HF layout equal the source
        for k, v in model.hf_params().items():
            assert torch.equal(v, sd[k]), k
        attn_err = check_attention_mapping(model, sd, ids)

        model.zero_grad(set_to_none=True)
        logits, hs = model(ids)
        loss = loss_fn(logits, targets)
        loss_err = check_loss(logits, targets, loss)
        loss.backward()
        grads = model.hf_grads()
        for k, g in grads.items():
            assert g.abs().max().item() > 0, f"zero gradient for {k}"
        fd_err = check_grads_fd(tied, sd, ids, targets, grads)

        cfg = hf_config(tied)
        meta = {"config": json.dumps(cfg), "generator": "make_golden.py",
                "torch_version": torch.__version__, "seed": str(SEED)}
        tensors = {}
        for k in model.hf_map():
            tensors[k] = sd[k].contiguous()
        tensors["input_ids"] = ids
        tensors["targets"] = targets
        tensors["logits"] = logits.detach().contiguous()
        tensors["hidden_states"] = hs.detach().contiguous()
        tensors["loss"] = loss.detach().reshape(())
        for k, g in grads.items():
            tensors["grad/" + k] = g
        name = "gpt2_tied.safetensors" if tied else "gpt2_untied.safetensors"
        path = os.path.join(OUT_DIR, name)
        save_safetensors(path, tensors, meta)
        size = check_roundtrip(path, tensors, meta)
        report[name] = dict(size=size, loss=loss.item(), attn_check_err=attn_err,
                            loss_check_err=loss_err, fd_grad_err=fd_err, n_tensors=len(tensors))

    # ---- 2. AdamW, tied ----
    model = GPT2(True)
    model.load_hf(base)
    hf = model.hf_map()
    decay = [p for n, (p, _) in hf.items() if p.dim() >= 2]
    no_decay = [p for n, (p, _) in hf.items() if p.dim() < 2]
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"], amsgrad=False)
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        logits, _ = model(ids)
        loss = loss_fn(logits, targets)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    assert abs(losses[0] - report["gpt2_tied.safetensors"]["loss"]) < 1e-12
    final = model.hf_params()

    meta = {"config": json.dumps(hf_config(True)), "adamw": json.dumps(ADAMW),
            "generator": "make_golden.py", "torch_version": torch.__version__,
            "seed": str(SEED)}
    tensors = {k: base[k].contiguous() for k in hf}
    tensors["input_ids"] = ids
    tensors["targets"] = targets
    tensors["losses"] = torch.tensor(losses, dtype=DT)
    for k, v in final.items():
        tensors["final/" + k] = v
    path = os.path.join(OUT_DIR, "gpt2_adamw.safetensors")
    save_safetensors(path, tensors, meta)
    size = check_roundtrip(path, tensors, meta)
    report["gpt2_adamw.safetensors"] = dict(size=size, losses=losses, n_tensors=len(tensors))

    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
