"""Writes test/fixtures/autograd.txt: PyTorch's values and gradients, in float64, of
small programs that open the tape: torch.autograd.Function subclasses (a stable
log-sum-exp with a second differentiable output, a non-differentiable argmax output
and an input needing no grad; a straight-through estimator; a mark_dirty function on
a non-leaf and on a view), tensor hooks that scale and replace gradients and the
order they fire in, and module forward-pre / forward / full-backward hooks on
Linear-Tanh-Linear with fixed weights.  test/test_autograd_fixtures.c replays the
same programs in agrad and compares to 1e-12.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_autograd_fixtures.py

Format: '#' lines are comments; every other line is one record, by key:
    t <key> <ndim> <dims...> <values...>    a float64 tensor (inputs and results)
    seq <key> <tokens...>                   the order in which hooks fired
Values are written with repr(), so they are the exact doubles PyTorch computed.
PyTorch 1.13 has no register_post_accumulate_grad_hook: for those the leaves'
complete .grad values are recorded (t grad.*), which agrad's hooks must see.
"""
import os

import torch

torch.manual_seed(20261205)
f64 = torch.float64
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "autograd.txt")
lines = ["# written by scripts/gen_autograd_fixtures.py (PyTorch %s); do not edit" % torch.__version__]


def values(*shape):
    """Odd multiples of 1/16 in [-2, 2] (never on round's .5 ties once scaled by 3)."""
    return (torch.randint(-16, 16, shape) * 2 + 1).to(f64) / 16


def put(key, t):
    t = t.detach().to(f64).contiguous()
    fields = ["t", key, str(t.dim())] + [str(d) for d in t.shape] + [repr(float(v)) for v in t.reshape(-1).tolist()]
    lines.append(" ".join(fields))


def seq(key, tokens):
    lines.append("seq %s %s" % (key, " ".join(tokens)))


# ---- (a) torch.autograd.Function ------------------------------------------------------
class ScaledLSE(torch.autograd.Function):
    """(logsumexp(x / t, 1), softmax(x / t, 1), argmax(x, 1)); t needs no grad."""

    @staticmethod
    def forward(ctx, x, t):
        z = x / t
        m = z.max(1, keepdim=True).values
        lse = (m + (z - m).exp().sum(1, keepdim=True).log()).squeeze(1)
        p = (z - lse[:, None]).exp()
        ctx.save_for_backward(p, t)
        idx = x.argmax(1).to(f64)
        ctx.mark_non_differentiable(idx)
        return lse, p, idx

    @staticmethod
    def backward(ctx, g_lse, g_p, g_idx):
        p, t = ctx.saved_tensors
        dz = g_lse[:, None] * p + p * (g_p - (g_p * p).sum(1, keepdim=True))
        return dz / t, None


x = values(3, 4).requires_grad_()
t = (torch.arange(3, dtype=f64) * 0.5 + 0.75)[:, None]
w_lse, w_p = values(3), values(3, 4)
lse, p, idx = ScaledLSE.apply(x, t)
assert not idx.requires_grad and idx.grad_fn is None
(lse * w_lse).sum().add((p * w_p).sum()).backward()
for k, v in [("lse.x", x), ("lse.t", t), ("lse.w_lse", w_lse), ("lse.w_p", w_p), ("lse.out_lse", lse),
             ("lse.out_p", p), ("lse.out_idx", idx), ("lse.grad_x", x.grad)]:
    put(k, v)


class STE(torch.autograd.Function):
    """round(x) forward, identity backward."""

    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def backward(ctx, g):
        return g


a = values(2, 3).requires_grad_()
w = values(2, 3)
y = STE.apply(a * 3)
(y * a * w).sum().backward()
for k, v in [("ste.a", a), ("ste.w", w), ("ste.out", y), ("ste.grad_a", a.grad)]:
    put(k, v)


class MulInto(torch.autograd.Function):
    """x *= w in place (mark_dirty)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x.clone(), w)
        ctx.mark_dirty(x)
        return x.mul_(w)

    @staticmethod
    def backward(ctx, g):
        x0, w = ctx.saved_tensors
        return g * w, g * x0


a, b, c = values(2, 3).requires_grad_(), values(2, 3).requires_grad_(), values(2, 3)
y = a * 1.5
r = MulInto.apply(y, b)
assert r is y and y.grad_fn.name() == "MulIntoBackward", y.grad_fn.name()
(y * y * c).sum().backward()
for k, v in [("dirty.a", a), ("dirty.b", b), ("dirty.c", c), ("dirty.out", y), ("dirty.grad_a", a.grad),
             ("dirty.grad_b", b.grad)]:
    put(k, v)

a, b, c = values(3, 4).requires_grad_(), values(4).requires_grad_(), values(3, 4)
base = a * 2
MulInto.apply(base[1], b)
assert type(base.grad_fn).__name__ == "CopySlices"
(base * base * c).sum().backward()
for k, v in [("dirtyview.a", a), ("dirtyview.b", b), ("dirtyview.c", c), ("dirtyview.out", base),
             ("dirtyview.grad_a", a.grad), ("dirtyview.grad_b", b.grad)]:
    put(k, v)

# ---- (b) tensor hooks ------------------------------------------------------------------
order = []
x = values(4).requires_grad_()
w = values(4)
y = x * 2
z = y * y
y.register_hook(lambda g: (order.append("y"), g * 3)[1])      # scale
z.register_hook(lambda g: (order.append("z"), g * 0 + 1)[1])  # replace by ones
x.register_hook(lambda g: (order.append("x1"), None)[1])
x.register_hook(lambda g: (order.append("x2"), g * 0.5)[1])   # the leaf's .grad gets the halved one
(z * w + x).sum().backward()
seq("hooks.order", order)
for k, v in [("hooks.x", x), ("hooks.w", w), ("hooks.grad_x", x.grad)]:
    put(k, v)

# two leaves: their complete .grad (what a post-accumulate-grad hook sees)
a, b, w = values(3).requires_grad_(), values(3).requires_grad_(), values(3)
h = a * b
((h * a).sum() + (h * w * b).sum()).backward()
for k, v in [("post.a", a), ("post.b", b), ("post.w", w), ("post.grad_a", a.grad), ("post.grad_b", b.grad)]:
    put(k, v)

# ---- (b) module hooks on Linear-Tanh-Linear ------------------------------------------------
model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).to(f64)
with torch.no_grad():
    for name, prm in model.named_parameters():
        prm.copy_(values(*prm.shape) * 0.5)
        put("mlp." + name, prm)
X = values(5, 3).requires_grad_()
W = values(5, 2)
events = []
for i, m in enumerate(model):
    m.register_forward_pre_hook(lambda mod, inp, i=i: events.append(("pre%d" % i, inp[0].norm().item())))
    m.register_forward_hook(lambda mod, inp, out, i=i: events.append(("fwd%d" % i, out.norm().item())))
    m.register_full_backward_hook(lambda mod, gi, go, i=i: events.append(
        ("bwd%d" % i, gi[0].norm().item(), go[0].norm().item())))
out = model(X)
(out * W).sum().backward()
put("mlp.X", X)
put("mlp.W", W)
put("mlp.out", out)
put("mlp.grad_X", X.grad)
seq("mlp.order", [e[0] for e in events])
put("mlp.norms", torch.tensor([v for e in events for v in e[1:]], dtype=f64))
for name, prm in model.named_parameters():
    put("mlp.grad_" + name, prm.grad)

os.makedirs(os.path.dirname(OUT), exist_ok=True)
with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
print("wrote", OUT, len(lines) - 1, "records")
