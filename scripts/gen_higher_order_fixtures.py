"""Writes test/fixtures/higher_order.txt: PyTorch's second derivatives, in float64,
of small programs that agrad differentiates twice with create_graph
(test/test_higher_order.c replays them and compares to 1e-10):
  (a) the Hessian of an MLP loss, Linear(3, 4)-tanh-Linear(4, 2)-softplus, then
      the mean of (out - target)^2, with respect to the first layer's weight, row by
      row (torch.autograd.grad of each gradient entry, create_graph=True);
  (b) a Hessian-vector product of the same loss with respect to all four parameters
      along fixed directions (grad of <grad L, v>);
  (c) a gradient penalty ||d D(x)/dx||^2 of a critic D = Linear(3, 4)-tanh-Linear(4, 1)
      summed over a batch, and its gradient with respect to D's parameters (the last
      bias is unused: allow_unused).

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_higher_order_fixtures.py

Format: '#' lines are comments; every other line is one float64 tensor,
    t <key> <ndim> <dims...> <values...>
with values written by repr(), the exact doubles PyTorch computed.
"""
import os

import torch
import torch.nn.functional as F

torch.manual_seed(20261205)
f64 = torch.float64
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "higher_order.txt")
lines = ["# written by scripts/gen_higher_order_fixtures.py (PyTorch %s); do not edit" % torch.__version__]


def values(*shape):
    """Odd multiples of 1/16 in [-1, 1]."""
    return (torch.randint(-8, 8, shape) * 2 + 1).to(f64) / 16


def put(key, t):
    t = t.detach().to(f64).contiguous()
    fields = ["t", key, str(t.dim())] + [str(d) for d in t.shape] + [repr(float(v)) for v in t.reshape(-1).tolist()]
    lines.append(" ".join(fields))


# ---- (a), (b) the MLP loss ---------------------------------------------------------------
x, target = values(5, 3), values(5, 2)
w1, b1, w2, b2 = values(4, 3), values(4), values(2, 4), values(2)
for k, t in dict(x=x, target=target, w1=w1, b1=b1, w2=w2, b2=b2).items():
    put("mlp." + k, t)
params = [p.clone().requires_grad_() for p in (w1, b1, w2, b2)]


def mlp_loss(w1, b1, w2, b2):
    h = torch.tanh(F.linear(x, w1, b1))
    out = F.softplus(F.linear(h, w2, b2))
    return ((out - target) ** 2).mean()


loss = mlp_loss(*params)
put("mlp.loss", loss)
g = torch.autograd.grad(loss, params, create_graph=True)
put("mlp.grad_w1", g[0])
rows = [torch.autograd.grad(g[0].reshape(-1)[i], params[0], retain_graph=True)[0].reshape(-1)
        for i in range(g[0].numel())]
put("mlp.hessian_w1", torch.stack(rows))
vs = [values(*p.shape) for p in params]
for i, v in enumerate(vs):
    put("mlp.v%d" % i, v)
hvp = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, vs)), params)
for i, h in enumerate(hvp):
    put("mlp.hvp%d" % i, h)

# ---- (c) a gradient penalty --------------------------------------------------------------
xs = values(6, 3).requires_grad_()
dw1, db1, dw2, db2 = values(4, 3), values(4), values(1, 4), values(1)
for k, t in dict(x=xs, w1=dw1, b1=db1, w2=dw2, b2=db2).items():
    put("gp." + k, t)
dparams = [p.clone().requires_grad_() for p in (dw1, db1, dw2, db2)]
d = F.linear(torch.tanh(F.linear(xs, dparams[0], dparams[1])), dparams[2], dparams[3]).sum()
(gx,) = torch.autograd.grad(d, xs, create_graph=True)
penalty = (gx ** 2).sum()
put("gp.grad_x", gx)
put("gp.penalty", penalty)
gps = torch.autograd.grad(penalty, dparams, allow_unused=True)
assert gps[3] is None  # the last bias does not change d D / dx: agrad's allow_unused gives NULL too
for i, gp in enumerate(gps[:3]):
    put("gp.grad_param%d" % i, gp)

with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
