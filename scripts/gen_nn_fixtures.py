"""Writes the PyTorch reference values that test/test_nn_layers.c checks agrad against.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_nn_fixtures.py
and commit the two files it writes:
    test/fixtures/nn_layers.safetensors  inputs, parameters, upstream gradients dy, and PyTorch's
                                         outputs, input/parameter gradients and running statistics
    test/fixtures/bn_state.safetensors   a BatchNorm1d(3) state dict after two training steps,
                                         exactly as module.state_dict() names it
    test/fixtures/nn_parametrize.safetensors  nn.init.dirac_, and nn.utils.weight_norm (dims 0, 1,
                                         None; a Conv2d) and spectral_norm (1 and 3 power iterations;
                                         a Conv2d; a ConvTranspose2d, dim 1): the initial u and v, outputs of 3 training
                                         forwards, the gradients after the last, an eval forward
Every case is computed twice, in float64 and in float32 (from the float64 inputs rounded to
float32), and stored as "<case>.<f64|f32>.<name>".  Gradients are those of sum(y * dy) for a
fixed random dy (a plain sum would make BatchNorm's dx vanish).  The inputs are drawn once
from torch.manual_seed(0); agrad reads them from the file, so no generator has to agree.
"""
import math

import torch
import torch.nn as nn

from fixture_io import save_safetensors

OUT = "test/fixtures/nn_layers.safetensors"
STATE_OUT = "test/fixtures/bn_state.safetensors"


torch.manual_seed(0)
base = {}  # float64 inputs shared by both dtypes


def draw(name, *shape, scale=1.0, shift=0.0):
    base[name] = torch.randn(*shape, dtype=torch.float64) * scale + shift
    return base[name]


out = {}


def put(case, dt, name, t):
    out[f"{case}.{'f64' if dt == torch.float64 else 'f32'}.{name}"] = t.detach().clone()


def step(case, dt, module, xname, dyname, tag):
    """One forward/backward of module on base[xname]: stores x, dy, y, dx and the parameter gradients."""
    x = base[xname].detach().clone().to(dt).requires_grad_(True)
    dy = base[dyname].to(dt)
    module.zero_grad(set_to_none=True)
    y = module(x)
    (y * dy).sum().backward()
    put(case, dt, f"x_{tag}", x)
    put(case, dt, f"dy_{tag}", dy)
    put(case, dt, f"y_{tag}", y)
    put(case, dt, f"dx_{tag}", x.grad)
    for pname, p in module.named_parameters():
        put(case, dt, f"d{pname}_{tag}", p.grad)


def set_params(case, dt, module, **values):
    with torch.no_grad():
        for pname, v in values.items():
            getattr(module, pname).copy_(v)
            put(case, dt, pname, getattr(module, pname))


# ---- BatchNorm1d: two training steps (running statistics after each), then eval ----------------------
draw("bn2d.x_a", 6, 4, scale=2.0, shift=0.5)
draw("bn2d.x_b", 6, 4, scale=1.5, shift=-1.0)
draw("bn2d.x_c", 5, 4)
draw("bn3d.x_a", 4, 3, 5, scale=2.0, shift=0.5)
draw("bn3d.x_b", 4, 3, 5, scale=0.5, shift=1.0)
draw("bn3d.x_c", 2, 3, 5)
for pre in ("bn2d", "bn3d"):
    for tag in "abc":
        draw(f"{pre}.dy_{tag}", *base[f"{pre}.x_{tag}"].shape)
draw("bn.w4", 4, scale=0.5, shift=1.0)
draw("bn.b4", 4)
draw("bn.w3", 3, scale=0.5, shift=1.0)
draw("bn.b3", 3)
for dt in (torch.float64, torch.float32):
    for case, c in (("bn2d", 4), ("bn3d", 3)):
        m = nn.BatchNorm1d(c).to(dt)
        set_params(case, dt, m, weight=base[f"bn.w{c}"].to(dt), bias=base[f"bn.b{c}"].to(dt))
        m.train()
        for tag in "ab":
            step(case, dt, m, f"{case}.x_{tag}", f"{case}.dy_{tag}", tag)
            put(case, dt, f"running_mean_{tag}", m.running_mean)
            put(case, dt, f"running_var_{tag}", m.running_var)
        put(case, dt, "num_batches_tracked", m.num_batches_tracked)
        m.eval()
        step(case, dt, m, f"{case}.x_c", f"{case}.dy_c", "c")
        if case == "bn3d" and dt == torch.float32:
            save_safetensors(STATE_OUT, m.state_dict())

    # momentum=None: cumulative average of the two batches
    m = nn.BatchNorm1d(4, momentum=None).to(dt)
    for tag in "ab":
        with torch.no_grad():
            m(base[f"bn2d.x_{tag}"].to(dt))
    put("bn_cma", dt, "running_mean", m.running_mean)
    put("bn_cma", dt, "running_var", m.running_var)

    # affine=False in training; track_running_stats=False in eval (batch statistics)
    m = nn.BatchNorm1d(3, affine=False).to(dt)
    step("bn_noaffine", dt, m, "bn3d.x_a", "bn3d.dy_a", "a")
    m = nn.BatchNorm1d(4, track_running_stats=False).to(dt).eval()
    set_params("bn_notrack", dt, m, weight=base["bn.w4"].to(dt), bias=base["bn.b4"].to(dt))
    step("bn_notrack", dt, m, "bn2d.x_a", "bn2d.dy_a", "a")

# ---- LayerNorm ----------------------------------------------------------------------------------------------
draw("ln.x", 2, 3, 4, scale=1.5, shift=0.3)
draw("ln.dy", 2, 3, 4)
draw("ln.w4", 4, scale=0.5, shift=1.0)
draw("ln.b4", 4)
draw("ln.w34", 3, 4, scale=0.5, shift=1.0)
draw("ln.b34", 3, 4)
draw("ln.x5", 3, 5, scale=3.0)
draw("ln.dy5", 3, 5)
for dt in (torch.float64, torch.float32):
    m = nn.LayerNorm(4).to(dt)
    set_params("ln4", dt, m, weight=base["ln.w4"].to(dt), bias=base["ln.b4"].to(dt))
    step("ln4", dt, m, "ln.x", "ln.dy", "a")
    m = nn.LayerNorm((3, 4)).to(dt)
    set_params("ln34", dt, m, weight=base["ln.w34"].to(dt), bias=base["ln.b34"].to(dt))
    step("ln34", dt, m, "ln.x", "ln.dy", "a")
    m = nn.LayerNorm(5, eps=1e-3, elementwise_affine=False).to(dt)
    step("ln_noaffine", dt, m, "ln.x5", "ln.dy5", "a")

# ---- PReLU (one exact zero in each input: dx = w·dy and dw gets nothing there) ----------------------------
draw("prelu.x1", 4, 3)
base["prelu.x1"][1, 2] = 0.0
draw("prelu.dy1", 4, 3)
draw("prelu.x3", 2, 3, 5)
base["prelu.x3"][0, 1, 2] = 0.0
draw("prelu.dy3", 2, 3, 5)
draw("prelu.w3", 3, scale=0.2, shift=0.25)
for dt in (torch.float64, torch.float32):
    m = nn.PReLU().to(dt)
    put("prelu1", dt, "weight", m.weight)
    step("prelu1", dt, m, "prelu.x1", "prelu.dy1", "a")
    m = nn.PReLU(3).to(dt)
    set_params("prelu3", dt, m, weight=base["prelu.w3"].to(dt))
    step("prelu3", dt, m, "prelu.x3", "prelu.dy3", "a")

# ---- Dropout: the deterministic cases -------------------------------------------------------------------------
draw("drop.x", 4, 5)
draw("drop.dy", 4, 5)
for dt in (torch.float64, torch.float32):
    step("drop_p0", dt, nn.Dropout(0.0).train(), "drop.x", "drop.dy", "a")
    step("drop_eval", dt, nn.Dropout(0.5).eval(), "drop.x", "drop.dy", "a")
    step("drop_p1", dt, nn.Dropout(1.0).train(), "drop.x", "drop.dy", "a")

# ---- nn.init: calculate_gain, and the Q of orthogonal_'s sign-corrected QR -------------------------------------
gains = [nn.init.calculate_gain(n) for n in ("linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh",
                                            "relu", "leaky_relu", "selu")]
gains.append(nn.init.calculate_gain("leaky_relu", 0.2))
gains.append(nn.init.calculate_gain("leaky_relu", math.sqrt(5)))
out["init.gains"] = torch.tensor(gains, dtype=torch.float64)
for name, shape in (("qr53", (5, 3)), ("qr44", (4, 4))):
    a = draw(name, *shape)
    q, r = torch.linalg.qr(a)
    q = q * torch.diag(r, 0).sign()  # as nn.init.orthogonal_
    out[f"init.{name}.a"] = a.clone()
    out[f"init.{name}.q"] = q

# ---- BatchNorm2d over [N, C, H, W]: two training steps, then eval; momentum=None; affine=False (drawn last, so
# the cases above keep their values) ------------------------------------------------------------------------------
draw("bn4d.x_a", 3, 4, 5, 3, scale=2.0, shift=0.5)
draw("bn4d.x_b", 2, 4, 3, 6, scale=0.5, shift=-1.0)
draw("bn4d.x_c", 1, 4, 2, 2)
for tag in "abc":
    draw(f"bn4d.dy_{tag}", *base[f"bn4d.x_{tag}"].shape)
for dt in (torch.float64, torch.float32):
    m = nn.BatchNorm2d(4).to(dt)
    set_params("bn4d", dt, m, weight=base["bn.w4"].to(dt), bias=base["bn.b4"].to(dt))
    m.train()
    for tag in "ab":
        step("bn4d", dt, m, f"bn4d.x_{tag}", f"bn4d.dy_{tag}", tag)
        put("bn4d", dt, f"running_mean_{tag}", m.running_mean)
        put("bn4d", dt, f"running_var_{tag}", m.running_var)
    put("bn4d", dt, "num_batches_tracked", m.num_batches_tracked)
    m.eval()
    step("bn4d", dt, m, "bn4d.x_c", "bn4d.dy_c", "c")
    m = nn.BatchNorm2d(4, momentum=None, affine=False).to(dt)
    for tag in "ab":
        step("bn4d_cma", dt, m, f"bn4d.x_{tag}", f"bn4d.dy_{tag}", tag)
    put("bn4d_cma", dt, "running_mean", m.running_mean)
    put("bn4d_cma", dt, "running_var", m.running_var)

# ---- GroupNorm over [N, C, *]: 2 groups of 3 channels on [3, 6, 4, 5], and 1 group (no affine) on [4, 6, 7] ------
draw("gn.x", 3, 6, 4, 5, scale=2.0, shift=0.7)
draw("gn.dy", 3, 6, 4, 5)
draw("gn.w", 6, scale=0.5, shift=1.0)
draw("gn.b", 6)
draw("gn3.x", 4, 6, 7, scale=0.5, shift=-2.0)
draw("gn3.dy", 4, 6, 7)
for dt in (torch.float64, torch.float32):
    m = nn.GroupNorm(2, 6).to(dt)
    set_params("gn", dt, m, weight=base["gn.w"].to(dt), bias=base["gn.b"].to(dt))
    step("gn", dt, m, "gn.x", "gn.dy", "a")
    step("gn_noaffine", dt, nn.GroupNorm(1, 6, eps=1e-3, affine=False).to(dt), "gn3.x", "gn3.dy", "a")

# ---- InstanceNorm2d: affine with running statistics (two training steps, eval), and the default --------------------
draw("in.x_a", 3, 4, 5, 6, scale=2.0, shift=0.5)
draw("in.x_b", 2, 4, 3, 7, scale=0.5, shift=-1.0)
draw("in.x_c", 2, 4, 2, 3)
draw("in.x_u", 4, 3, 5)
for tag in "abcu":
    draw(f"in.dy_{tag}", *base[f"in.x_{tag}"].shape)
for dt in (torch.float64, torch.float32):
    m = nn.InstanceNorm2d(4, affine=True, track_running_stats=True).to(dt)
    set_params("in", dt, m, weight=base["bn.w4"].to(dt), bias=base["bn.b4"].to(dt))
    for tag in "ab":
        step("in", dt, m, f"in.x_{tag}", f"in.dy_{tag}", tag)
        put("in", dt, f"running_mean_{tag}", m.running_mean)
        put("in", dt, f"running_var_{tag}", m.running_var)
    put("in", dt, "num_batches_tracked", m.num_batches_tracked)
    m.eval()
    step("in", dt, m, "in.x_c", "in.dy_c", "c")
    m = nn.InstanceNorm2d(4).to(dt)
    step("in_plain", dt, m, "in.x_a", "in.dy_a", "a")
    step("in_plain", dt, m, "in.x_u", "in.dy_u", "u")  # one unbatched sample [C, H, W]

save_safetensors(OUT, out)
print(f"wrote {len(out)} tensors to {OUT} and a BatchNorm1d state dict to {STATE_OUT}")

# ---- nn.init.dirac_, nn.utils.weight_norm and spectral_norm (float64; a file of their own) ------------------------
par = {}
gp = torch.Generator().manual_seed(7)
for name, shape, groups in (("d3", (4, 6, 3), 1), ("d4g2", (6, 4, 3, 3), 2), ("d5", (2, 3, 3, 2, 3), 1),
                            ("d4g3", (6, 1, 2, 2), 3)):
    par[f"dirac.{name}"] = nn.init.dirac_(torch.empty(*shape, dtype=torch.float64), groups)
W = torch.randn(3, 4, generator=gp, dtype=torch.float64)
Wc = torch.randn(4, 2, 3, 3, generator=gp, dtype=torch.float64)
par["lin.weight"], par["lin.bias"] = W, torch.randn(3, generator=gp, dtype=torch.float64)
par["conv.weight"], par["conv.bias"] = Wc, torch.randn(4, generator=gp, dtype=torch.float64)
par["lin.x"], par["lin.dy"] = (torch.randn(5, 4, generator=gp, dtype=torch.float64),
                               torch.randn(5, 3, generator=gp, dtype=torch.float64))
par["conv.x"], par["conv.dy"] = (torch.randn(2, 2, 5, 5, generator=gp, dtype=torch.float64),
                                 torch.randn(2, 4, 3, 3, generator=gp, dtype=torch.float64))
# ConvTranspose2d(2, 3, 3): weight [in 2, out 3, 3, 3]; spectral_norm's default dim is 1 for it
par["convt.weight"], par["convt.bias"] = (torch.randn(2, 3, 3, 3, generator=gp, dtype=torch.float64),
                                          torch.randn(3, generator=gp, dtype=torch.float64))
par["convt.x"], par["convt.dy"] = (torch.randn(2, 2, 4, 4, generator=gp, dtype=torch.float64),
                                   torch.randn(2, 3, 6, 6, generator=gp, dtype=torch.float64))


def layer(kind):
    m = nn.Linear(4, 3) if kind == "lin" else nn.Conv2d(2, 4, 3) if kind == "conv" else nn.ConvTranspose2d(2, 3, 3)
    m = m.double()
    with torch.no_grad():
        m.weight.copy_(par[f"{kind}.weight"])
        m.bias.copy_(par[f"{kind}.bias"])
    return m


def run(tag, kind, m, names, steps):
    """steps forwards of x (training mode), the gradients of sum(y·dy) after the last; then one in eval mode."""
    x = par[f"{kind}.x"].clone().requires_grad_(True)
    for k in range(steps):
        m.zero_grad()
        y = m(x)
        par[f"{tag}.y{k}"] = y.detach().clone()
        for b in ("weight_u", "weight_v"):
            if hasattr(m, b) and isinstance(getattr(m, b), torch.Tensor) and b in dict(m.named_buffers()):
                par[f"{tag}.{b}{k}"] = getattr(m, b).detach().clone()
    (y * par[f"{kind}.dy"]).sum().backward()
    par[f"{tag}.weight"] = m.weight.detach().clone()
    for n in names:
        par[f"{tag}.grad.{n}"] = dict(m.named_parameters())[n].grad.clone()
    m.eval()
    par[f"{tag}.y_eval"] = m(x).detach().clone()


for dim, tag in ((0, "wn0"), (1, "wn1"), (None, "wnall")):
    m = nn.utils.weight_norm(layer("lin"), dim=dim)
    par[f"{tag}.weight_g"] = m.weight_g.detach().clone()
    run(tag, "lin", m, ("bias", "weight_g", "weight_v"), 1)
m = nn.utils.weight_norm(layer("conv"), dim=0)
par["wnconv.weight_g"] = m.weight_g.detach().clone()
run("wnconv", "conv", m, ("bias", "weight_g", "weight_v"), 1)
for n_iter, kind, tag in ((1, "lin", "sn1"), (3, "lin", "sn3"), (1, "conv", "snconv"), (2, "convt", "snconvt")):
    m = nn.utils.spectral_norm(layer(kind), n_power_iterations=n_iter)
    par[f"{tag}.u0"], par[f"{tag}.v0"] = m.weight_u.detach().clone(), m.weight_v.detach().clone()
    run(tag, kind, m, ("bias", "weight_orig"), 3)
PAR_OUT = "test/fixtures/nn_parametrize.safetensors"
save_safetensors(PAR_OUT, par)
print(f"wrote {len(par)} tensors to {PAR_OUT}")
