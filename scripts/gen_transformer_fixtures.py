"""Writes test/fixtures/transformer.safetensors: PyTorch's outputs, attention weights and
gradients of nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder,
which test/test_transformer.c checks agrad against.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_transformer_fixtures.py
and commit the file.

Each case "case.<i>" (i = 0, 1, ... without gaps; the test stops at the first missing one) holds
    case.<i>.opts        int64: kind (0 MultiheadAttention, 1 TransformerEncoderLayer,
                         2 TransformerEncoder of 2 layers with a final LayerNorm), E (embed_dim or
                         d_model), H (heads), kdim, vdim (0: E), bias, batch_first, batched, L, S, B,
                         kpm (0 none, 1 bool, 2 float), mask (0 none, 1 bool [L, S], 2 float [L, S],
                         3 bool [B·H, L, S], 4 float [B·H, L, S], 5 is_causal: PyTorch gets the float
                         causal mask), need_weights, average_attn_weights, self (key and value are the
                         query tensor; always for the layers), feedforward, gelu, norm_first,
                         add_bias_kv, add_zero_attn (MultiheadAttention)
    case.<i>.kpm, .mask  the bool masks (float ones are stored per dtype as <dt>.kpm, <dt>.mask)
    case.<i>.<dt>.<name> for dt in f64, f32: the inputs q (and k, v unless self), the parameters
                         p.<name> (PyTorch's names), the cotangents dy (and dw), PyTorch's output y
                         (and weights w), and the gradients of sum(y·dy) (+ sum(w·dw)): dq, dk, dv and
                         g.<name> for every parameter.
Dropout is 0 (the test checks dropout by statistics and seeded reproducibility).  The float64
values are drawn once from torch.manual_seed(0); the float32 case uses the same values rounded.
"""
import torch
import torch.nn as nn

from fixture_io import save_safetensors

OUT = "test/fixtures/transformer.safetensors"


torch.manual_seed(0)
out = {}
ncase = 0


def make(kind, E, H, kdim, vdim, bias, bf, ff, gelu, norm_first, bias_kv=0, zero_attn=0):
    if kind == 0:
        return nn.MultiheadAttention(E, H, dropout=0.0, bias=bool(bias), add_bias_kv=bool(bias_kv),
                                     add_zero_attn=bool(zero_attn), kdim=kdim or None, vdim=vdim or None,
                                     batch_first=bool(bf))
    layer = nn.TransformerEncoderLayer(E, H, ff, dropout=0.0, activation="gelu" if gelu else "relu",
                                       batch_first=bool(bf), norm_first=bool(norm_first))
    if kind == 1:
        return layer
    return nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(E), enable_nested_tensor=False)


def case(kind=0, E=6, H=3, kdim=0, vdim=0, bias=1, bf=0, batched=1, L=5, S=5, B=2, kpm=0, mask=0, need=1, avg=1,
         self_=0, ff=10, gelu=0, norm_first=0, bias_kv=0, zero_attn=0):
    global ncase
    key = f"case.{ncase}"
    ncase += 1
    if kind:  # a layer attends to itself
        self_ = 1
    if self_:
        S, kdim, vdim = L, 0, 0
    out[f"{key}.opts"] = torch.tensor([kind, E, H, kdim, vdim, bias, bf, batched, L, S, B, kpm, mask, need, avg, self_,
                                       ff, gelu, norm_first, bias_kv, zero_attn], dtype=torch.int64)
    m64 = make(kind, E, H, kdim, vdim, bias, bf, ff, gelu, norm_first, bias_kv, zero_attn).double()
    with torch.no_grad():  # nonzero biases and LayerNorm affines, so that every term shows
        for p in m64.parameters():
            p.uniform_(-0.8, 0.8)
    Bq = B if batched else 1

    def shape(T, F):
        if not batched:
            return (T, F)
        return (B, T, F) if bf else (T, B, F)

    q64 = torch.randn(shape(L, E), dtype=torch.float64)
    k64 = torch.randn(shape(S, kdim or E), dtype=torch.float64)
    v64 = torch.randn(shape(S, vdim or E), dtype=torch.float64)
    # masks that leave every query at least one key (key 0 is never masked)
    kpm_b = torch.rand((Bq, S)) < 0.4
    kpm_b[:, 0] = False
    kpm_f64 = torch.where(kpm_b, torch.tensor(-1e9, dtype=torch.float64), torch.randn((Bq, S), dtype=torch.float64))
    if not batched:
        kpm_b, kpm_f64 = kpm_b[0], kpm_f64[0]
    mshape = (L, S) if mask in (1, 2) else (Bq * H, L, S)
    mask_b = torch.rand(mshape) < 0.4
    mask_b[..., 0] = False
    mask_f64 = torch.randn(mshape, dtype=torch.float64).masked_fill(mask_b, float("-inf"))
    if kpm == 1:
        out[f"{key}.kpm"] = kpm_b
    if mask in (1, 3):
        out[f"{key}.mask"] = mask_b
    for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        m = make(kind, E, H, kdim, vdim, bias, bf, ff, gelu, norm_first, bias_kv, zero_attn).to(dt)
        m.load_state_dict({k: v.to(dt) for k, v in m64.state_dict().items()})
        q = q64.to(dt).detach().clone().requires_grad_(True)
        k = q if self_ else k64.to(dt).detach().clone().requires_grad_(True)
        v = q if self_ else v64.to(dt).detach().clone().requires_grad_(True)
        kp = {0: None, 1: kpm_b, 2: kpm_f64.to(dt)}[kpm]
        mk = None
        if mask in (1, 3):
            mk = mask_b
        elif mask in (2, 4):
            mk = mask_f64.to(dt)
        elif mask == 5:
            mk = nn.Transformer.generate_square_subsequent_mask(L).to(dt)
        p = f"{key}.{tag}"
        if kpm == 2:
            out[f"{p}.kpm"] = kp
        if mask in (2, 4):
            out[f"{p}.mask"] = mk
        w = None
        if kind == 0:
            y, w = m(q, k, v, key_padding_mask=kp, need_weights=bool(need), attn_mask=mk, average_attn_weights=bool(avg))
        elif kind == 1:
            y = m(q, src_mask=mk, src_key_padding_mask=kp)
        else:
            y = m(q, mask=mk, src_key_padding_mask=kp)
        dy = torch.randn(y.shape, dtype=torch.float64).to(dt)
        loss = (y * dy).sum()
        if w is not None:
            dw = torch.randn(w.shape, dtype=torch.float64).to(dt)
            loss = loss + (w * dw).sum()
            out[f"{p}.w"], out[f"{p}.dw"] = w.detach(), dw
        loss.backward()
        out[f"{p}.q"], out[f"{p}.dq"] = q.detach(), q.grad
        if not self_:
            out[f"{p}.k"], out[f"{p}.dk"] = k.detach(), k.grad
            out[f"{p}.v"], out[f"{p}.dv"] = v.detach(), v.grad
        out[f"{p}.y"], out[f"{p}.dy"] = y.detach(), dy
        for name, par in m.named_parameters():
            out[f"{p}.p.{name}"], out[f"{p}.g.{name}"] = par.detach(), par.grad


# MultiheadAttention
case()
case(bf=1, S=4)
case(batched=0, S=4)
case(L=1, S=1)
case(L=1, S=5, bf=1)
case(kdim=4, vdim=5, S=4)
case(kdim=4, vdim=5, bf=1, bias=0, kpm=1)
case(self_=1)
case(self_=1, need=0)
case(avg=0, kpm=1)
case(kpm=2, S=4)
case(mask=1, S=4)
case(mask=2, bf=1)
case(mask=3, kpm=1, S=4)
case(mask=4, bf=1, kpm=1)
case(mask=2, kpm=1, need=0)
case(mask=1, batched=0, kpm=1, S=3)
case(E=4, H=1, mask=1, kpm=1, need=0, bf=1)
# TransformerEncoderLayer
case(kind=1)
case(kind=1, bf=1, norm_first=1)
case(kind=1, gelu=1, mask=2, kpm=1)
case(kind=1, norm_first=1, gelu=1, mask=5, bf=1)
case(kind=1, mask=1, batched=0)
case(kind=1, L=1, kpm=1)
case(kind=1, mask=3, kpm=1, norm_first=1)
# TransformerEncoder (2 layers and a final LayerNorm)
case(kind=2)
case(kind=2, bf=1, norm_first=1, gelu=1, mask=5, kpm=1)
# add_bias_kv and add_zero_attn of MultiheadAttention (last, so that the cases above keep
# their random values)
case(bias_kv=1)
case(zero_attn=1, kpm=1, mask=1, S=4)
case(bias_kv=1, zero_attn=1, mask=4, kpm=1, bf=1)
case(bias_kv=1, kpm=2, S=4, bf=1)
case(bias_kv=1, batched=0, mask=2, kpm=1, S=3)
case(bias_kv=1, zero_attn=1, need=0, kdim=4, vdim=5, S=4)
case(zero_attn=1, avg=0, mask=3, S=4, H=2, E=4)
save_safetensors(OUT, out)
print(f"wrote {OUT}: {ncase} cases, {len(out)} tensors")
