"""Writes test/fixtures/rnn.safetensors: PyTorch's outputs, final states and gradients
of nn.RNN (tanh and relu), nn.LSTM, nn.GRU and their cells, which test/test_rnn.c checks
agrad against.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_rnn_fixtures.py
and commit the file.

Each case "case.<i>" (i = 0, 1, ... without gaps; the test stops at the first missing one) holds
    case.<i>.opts        int64: mode (0 RNN tanh, 1 RNN relu, 2 LSTM, 3 GRU), cell (0 layer, 1 cell),
                         num_layers, bidirectional, batch_first, has_lengths, has_h0, batched,
                         input_size, hidden_size, bias
    case.<i>.lengths     int64 [B] when has_lengths: the layer then runs on
                         pack_padded_sequence(x, lengths, enforce_sorted=False), and its output is
                         pad_packed_sequence(..., total_length=T)
    case.<i>.<dt>.<name> for dt in f64, f32: the inputs x, h0 (and c0 for an LSTM) when has_h0,
                         the parameters p.<name> (PyTorch's names), the cotangents dy, dh (and dc),
                         PyTorch's output y and final states hn (and cn; for a cell: its h' and c'),
                         and the gradients of sum(y·dy) + sum(hn·dh) + sum(cn·dc): dx, dh0, dc0 and
                         g.<name> for every parameter.
The float64 values are drawn once from torch.manual_seed(0); the float32 case uses the same
values rounded.
"""
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fixture_io import save_safetensors

OUT = "test/fixtures/rnn.safetensors"


torch.manual_seed(0)
out = {}
ncase = 0
IN, H, T, B = 4, 3, 5, 3


def make(mode, cell, layers, bidir, bf, bias):
    if cell:
        if mode < 2:
            return nn.RNNCell(IN, H, bias=bool(bias), nonlinearity="relu" if mode == 1 else "tanh")
        return (nn.LSTMCell if mode == 2 else nn.GRUCell)(IN, H, bias=bool(bias))
    kw = dict(num_layers=layers, bias=bool(bias), batch_first=bool(bf), bidirectional=bool(bidir))
    if mode < 2:
        return nn.RNN(IN, H, nonlinearity="relu" if mode == 1 else "tanh", **kw)
    return (nn.LSTM if mode == 2 else nn.GRU)(IN, H, **kw)


def case(mode, cell=0, layers=1, bidir=0, bf=0, lengths=None, h0=0, batched=1, bias=1):
    global ncase
    key = f"case.{ncase}"
    ncase += 1
    lstm = mode == 2
    out[f"{key}.opts"] = torch.tensor([mode, cell, layers, bidir, bf, int(lengths is not None), h0, batched, IN, H, bias], dtype=torch.int64)
    if lengths is not None:
        out[f"{key}.lengths"] = torch.tensor(lengths, dtype=torch.int64)
    m64 = make(mode, cell, layers, bidir, bf, bias).double()
    with torch.no_grad():  # wider than the default init, so that relu and the gates see both signs
        for p in m64.parameters():
            p.uniform_(-0.8, 0.8)
    nstate = layers * (2 if bidir else 1)
    if cell:
        xs = (B, IN) if batched else (IN,)
        hs = (B, H) if batched else (H,)
    else:
        xs = ((B, T, IN) if bf else (T, B, IN)) if batched else (T, IN)
        hs = (nstate, B, H) if batched else (nstate, H)
    x64 = torch.randn(xs, dtype=torch.float64)
    h64 = torch.randn(hs, dtype=torch.float64) if h0 else None
    c64 = torch.randn(hs, dtype=torch.float64) if h0 and lstm else None
    for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        m = make(mode, cell, layers, bidir, bf, bias).to(dt)
        m.load_state_dict({k: v.to(dt) for k, v in m64.state_dict().items()})
        x = x64.to(dt).detach().clone().requires_grad_(True)
        h = h64.to(dt).detach().clone().requires_grad_(True) if h0 else None
        c = c64.to(dt).detach().clone().requires_grad_(True) if h0 and lstm else None
        state = (h if not lstm else ((h, c) if h0 else None))
        if cell:
            r = m(x, state)
            y, hn, cn = (r[0], r[0], r[1]) if lstm else (r, r, None)
        else:
            inp = x
            if lengths is not None:
                inp = pack_padded_sequence(x, torch.tensor(lengths), batch_first=bool(bf), enforce_sorted=False)
            y, st = m(inp, state)
            if lengths is not None:
                y, _ = pad_packed_sequence(y, batch_first=bool(bf), total_length=T)
            hn, cn = st if lstm else (st, None)
        dy = torch.randn(y.shape, dtype=torch.float64).to(dt)
        dh = torch.randn(hn.shape, dtype=torch.float64).to(dt)
        dc = torch.randn(cn.shape, dtype=torch.float64).to(dt) if lstm else None
        if cell:  # a cell has one output per state: y is h'
            loss = (hn * dh).sum() + ((cn * dc).sum() if lstm else 0)
        else:
            loss = (y * dy).sum() + (hn * dh).sum() + ((cn * dc).sum() if lstm else 0)
        loss.backward()
        p = f"{key}.{tag}"
        out[f"{p}.x"], out[f"{p}.dx"] = x.detach(), x.grad
        if h0:
            out[f"{p}.h0"], out[f"{p}.dh0"] = h.detach(), h.grad
            if lstm:
                out[f"{p}.c0"], out[f"{p}.dc0"] = c.detach(), c.grad
        if not cell:
            out[f"{p}.y"], out[f"{p}.dy"] = y.detach(), dy
        out[f"{p}.hn"], out[f"{p}.dh"] = hn.detach(), dh
        if lstm:
            out[f"{p}.cn"], out[f"{p}.dc"] = cn.detach(), dc
        for name, par in m.named_parameters():
            out[f"{p}.p.{name}"], out[f"{p}.g.{name}"] = par.detach(), par.grad


for mode in range(4):
    case(mode)
    case(mode, layers=2, bidir=1, bf=1, lengths=[5, 2, 4], h0=1)
    case(mode, bidir=1, lengths=[3, 1, 4])
    case(mode, layers=2, bf=1, h0=1)
    case(mode, layers=2, bidir=1, h0=1, bias=0)
    case(mode, bf=1, lengths=[1, 5, 3], h0=1)
    case(mode, layers=2, bidir=1, batched=0, h0=1)
    case(mode, cell=1)
    case(mode, cell=1, h0=1)
    case(mode, cell=1, h0=1, batched=0, bias=0)
save_safetensors(OUT, out)
print(f"wrote {OUT}: {ncase} cases, {len(out)} tensors")
