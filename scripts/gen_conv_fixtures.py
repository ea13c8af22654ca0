"""Writes test/fixtures/conv.safetensors: PyTorch's outputs and gradients of the
convolution and pooling functions for the option combinations test/test_conv.c
checks agrad against.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_conv_fixtures.py
and commit the file.

Each case is "<function>.<i>" (i = 0, 1, ... without gaps; the test stops at the first
missing one) and holds
    <function>.<i>.opts             int64 options, in the order OPTS below names them
    <function>.<i>.<dt>.<name>      for dt in f64, f32: the inputs (x, w, b when the case
                                    has them, and dy), PyTorch's output y, and the gradients
                                    of sum(y * dy): dx, dw, db; "indices" for max pooling
and a small PyTorch model (float32) under "model.": its state dict with PyTorch's names
("model.0.weight", ...), an input "model.x" and its output "model.y", and the gradient
"model.dx" of sum(y * "model.dy"), which agrad's same model must reproduce after
loading the state dict:
    nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                  nn.Conv2d(8, 6, (3, 2), stride=(2, 1), groups=2, bias=False),
                  nn.AvgPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d((2, 3)))
and a second one under "model2." (same keys) of the transposed convolution, padding and
resampling modules:
    nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 4, 3), nn.ReLU(),
                  nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
                  nn.Upsample(scale_factor=1.5, mode="bilinear"), nn.ReplicationPad2d((1, 0, 2, 1)),
                  nn.ZeroPad2d(1), nn.Upsample(size=(9, 8)), nn.AdaptiveMaxPool2d((3, 4)))
The float64 inputs are drawn once from torch.manual_seed(0); float32 cases use the same
values rounded.  Sizes are odd on purpose (5x7 inputs, 3x2 kernels, remainders under the
stride).
"""
import torch
import torch.nn.functional as F

from fixture_io import save_safetensors

OUT = "test/fixtures/conv.safetensors"

# The options' order in "<function>.<i>.opts".
OPTS = {
    "conv2d": "sh sw ph pw dh dw groups mode bias",  # mode: 0 explicit padding, 1 "same", 2 "valid"
    "conv1d": "s p d groups mode bias",
    "max_pool2d": "kh kw sh sw ph pw dh dw ceil",
    "avg_pool2d": "kh kw sh sw ph pw ceil include_pad",
    "adaptive_avg_pool2d": "oh ow",
    "max_pool1d": "k s p d ceil",
    "avg_pool1d": "k s p ceil include_pad",
    "conv_transpose2d": "sh sw ph pw oph opw dh dw groups bias",
    "conv_transpose1d": "s p op d groups bias",
    "adaptive_max_pool2d": "oh ow",
    "pad": "mode value*4 npad pad[0] ... pad[npad-1]",  # mode: 0 constant, 1 reflect, 2 replicate, 3 circular
    "interpolate": "mode align_corners oh ow sh*1000 sw*1000",  # mode 0 nearest, 1 bilinear; size 0: by scale
    "max_unpool2d": "kh kw sh sw ph pw oh ow",  # oh ow 0: the default size; the indices in "<key>.<dt>.ind"
}


torch.manual_seed(0)
out = {}
count = {}


def case(fn, opts, inputs, call):
    """Stores one case: inputs (name -> float64 tensor), call(inputs in dtype dt) -> y or (y, extra)."""
    i = count.get(fn, 0)
    count[fn] = i + 1
    key = f"{fn}.{i}"
    out[f"{key}.opts"] = torch.tensor(opts, dtype=torch.int64)
    for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        t = {k: v.detach().clone().to(dt).requires_grad_(True) for k, v in inputs.items()}
        r = call(t)
        y, extra = (r if isinstance(r, tuple) else (r, {}))
        dy = torch.randn(y.shape, dtype=torch.float64, generator=gen).to(dt)
        (y * dy).sum().backward()
        for k, v in t.items():
            out[f"{key}.{tag}.{k}"] = v.detach()
            out[f"{key}.{tag}.d{k}"] = v.grad
        out[f"{key}.{tag}.dy"] = dy
        out[f"{key}.{tag}.y"] = y.detach()
        for k, v in extra.items():
            out[f"{key}.{tag}.{k}"] = v


gen = torch.Generator().manual_seed(1)  # the upstream gradients dy (stored with each case)


def randn(*shape):
    return torch.randn(*shape, dtype=torch.float64)


PADDING = {0: None, 1: "same", 2: "valid"}

# ---- conv2d: (x shape, w shape, stride, padding, dilation, groups, mode, bias) ----
CONV2D = [
    ((2, 3, 5, 7), (4, 3, 3, 2), (1, 1), (0, 0), (1, 1), 1, 0, True),
    ((2, 3, 7, 6), (4, 3, 3, 3), (2, 3), (1, 2), (1, 1), 1, 0, True),
    ((1, 4, 9, 8), (6, 2, 3, 2), (2, 1), (2, 1), (2, 3), 2, 0, False),
    ((2, 6, 6, 5), (6, 1, 3, 3), (1, 2), (1, 1), (1, 1), 6, 0, True),     # depthwise
    ((2, 6, 5, 5), (12, 1, 2, 3), (1, 1), (0, 0), (2, 1), 6, 0, True),    # depthwise, multiplier 2
    ((2, 3, 6, 7), (5, 3, 4, 3), (1, 1), (0, 0), (1, 2), 1, 1, True),     # "same", even kernel: odd total
    ((1, 4, 5, 6), (2, 2, 2, 2), (1, 1), (0, 0), (2, 2), 2, 1, False),    # "same" with dilation
    ((2, 3, 5, 7), (4, 3, 3, 3), (3, 2), (0, 0), (1, 1), 1, 2, True),     # "valid"
    ((3, 5, 4), (2, 3, 2, 2), (1, 2), (1, 0), (1, 1), 1, 0, True),        # unbatched [C, H, W]
    ((2, 2, 1, 1), (3, 2, 1, 1), (1, 1), (0, 0), (1, 1), 1, 0, True),     # 1x1
    ((1, 8, 11, 9), (8, 4, 5, 3), (3, 2), (2, 1), (1, 2), 2, 0, True),    # larger, oneDNN from float32
]
for xs, ws, s, p, d, g, mode, bias in CONV2D:
    inputs = {"x": randn(*xs), "w": randn(*ws) * 0.5}
    if bias:
        inputs["b"] = randn(ws[0])
    pad = PADDING[mode] or p
    case("conv2d", [s[0], s[1], p[0], p[1], d[0], d[1], g, mode, int(bias)], inputs,
         lambda t, s=s, pad=pad, d=d, g=g: F.conv2d(t["x"], t["w"], t.get("b"), s, pad, d, g))

# ---- conv1d: (x shape, w shape, stride, padding, dilation, groups, mode, bias) ----
CONV1D = [
    ((2, 3, 11), (4, 3, 3), 2, 1, 1, 1, 0, True),
    ((2, 4, 10), (4, 2, 2), 1, 0, 3, 2, 1, False),   # "same", dilation 3, groups 2
    ((3, 9), (2, 3, 4), 3, 2, 1, 1, 0, True),         # unbatched
]
for xs, ws, s, p, d, g, mode, bias in CONV1D:
    inputs = {"x": randn(*xs), "w": randn(*ws) * 0.5}
    if bias:
        inputs["b"] = randn(ws[0])
    pad = PADDING[mode] or p
    case("conv1d", [s, p, d, g, mode, int(bias)], inputs,
         lambda t, s=s, pad=pad, d=d, g=g: F.conv1d(t["x"], t["w"], t.get("b"), s, pad, d, g))


def distinct(*shape):
    """Values without ties, so every window has one max in both dtypes."""
    n = 1
    for v in shape:
        n *= v
    return (torch.randperm(n).to(torch.float64) * 0.25 - n / 8).reshape(shape)


# ---- max_pool2d: (x shape, kernel, stride, padding, dilation, ceil_mode); stride 0 = kernel ----
MAXPOOL2D = [
    ((2, 3, 7, 6), (2, 2), (0, 0), (0, 0), (1, 1), False),
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), (1, 1), True),
    ((1, 2, 9, 8), (3, 3), (2, 3), (1, 0), (2, 1), False),
    ((1, 2, 8, 9), (2, 3), (2, 2), (1, 1), (1, 2), True),
    ((3, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1), False),   # unbatched, overlapping windows
    ((1, 1, 6, 6), (4, 4), (3, 3), (2, 2), (1, 1), True),  # ceil mode keeps a window starting in the padding
]
for xs, k, s, p, d, ceil in MAXPOOL2D:
    stride = s if s[0] else k
    def call(t, k=k, stride=stride, p=p, d=d, ceil=ceil):
        y, i = F.max_pool2d(t["x"], k, stride, p, d, ceil, return_indices=True)
        return y, {"indices": i}
    case("max_pool2d", [k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], int(ceil)], {"x": distinct(*xs)}, call)

# ---- avg_pool2d: (x shape, kernel, stride, padding, ceil_mode, count_include_pad) ----
AVGPOOL2D = [
    ((2, 3, 7, 6), (2, 2), (0, 0), (0, 0), False, True),
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), True, True),
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), True, False),
    ((1, 2, 9, 8), (3, 3), (2, 3), (1, 0), False, False),
    ((3, 5, 5), (3, 3), (1, 1), (1, 1), False, True),
    ((1, 1, 6, 6), (4, 4), (3, 3), (2, 2), True, True),
    ((1, 1, 6, 6), (4, 4), (3, 3), (2, 2), True, False),
]
for xs, k, s, p, ceil, incl in AVGPOOL2D:
    stride = s if s[0] else k
    case("avg_pool2d", [k[0], k[1], s[0], s[1], p[0], p[1], int(ceil), int(incl)], {"x": randn(*xs)},
         lambda t, k=k, stride=stride, p=p, ceil=ceil, incl=incl: F.avg_pool2d(t["x"], k, stride, p, ceil, incl))

# ---- adaptive_avg_pool2d: (x shape, output size) ----
for xs, o in (((2, 3, 7, 6), (3, 4)), ((2, 3, 5, 5), (5, 5)), ((1, 2, 9, 7), (4, 2)), ((3, 4, 5), (1, 1)),
              ((1, 1, 3, 2), (5, 4))):
    case("adaptive_avg_pool2d", list(o), {"x": randn(*xs)},
         lambda t, o=o: F.adaptive_avg_pool2d(t["x"], o))

# ---- 1-d pooling ----
for xs, k, s, p, d, ceil in (((2, 3, 11), 3, 2, 1, 1, True), ((3, 10), 2, 0, 1, 2, False)):
    def call(t, k=k, s=s, p=p, d=d, ceil=ceil):
        y, i = F.max_pool1d(t["x"], k, s or k, p, d, ceil, return_indices=True)
        return y, {"indices": i}
    case("max_pool1d", [k, s, p, d, int(ceil)], {"x": distinct(*xs)}, call)
for xs, k, s, p, ceil, incl in (((2, 3, 11), 3, 2, 1, True, False), ((3, 10), 4, 3, 2, False, True)):
    case("avg_pool1d", [k, s, p, int(ceil), int(incl)], {"x": randn(*xs)},
         lambda t, k=k, s=s, p=p, ceil=ceil, incl=incl: F.avg_pool1d(t["x"], k, s or k, p, ceil, incl))

# ---- conv_transpose2d: (x shape, w shape, stride, padding, output_padding, dilation, groups, bias) ----
CONV_T2D = [
    ((2, 3, 4, 5), (3, 4, 3, 3), (1, 1), (0, 0), (0, 0), (1, 1), 1, True),
    ((2, 3, 5, 4), (3, 2, 3, 2), (2, 3), (1, 0), (1, 2), (1, 1), 1, True),     # output_padding
    ((1, 4, 3, 5), (4, 3, 2, 3), (2, 1), (2, 1), (0, 1), (1, 2), 2, False),    # groups, dilation, op < dilation
    ((2, 6, 4, 3), (6, 1, 3, 3), (2, 2), (1, 1), (1, 0), (1, 1), 6, True),     # depthwise
    ((3, 4, 5), (3, 2, 2, 3), (3, 2), (0, 2), (2, 1), (1, 1), 1, True),        # unbatched, op above the padding
    ((0, 3, 4, 4), (3, 2, 3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, True),     # empty batch
    ((1, 8, 7, 6), (8, 3, 4, 3), (2, 3), (1, 2), (1, 2), (2, 1), 2, True),     # larger, oneDNN from float32 (op ≤ padding)
]
for xs, ws, s, p, op, d, g, bias in CONV_T2D:
    inputs = {"x": randn(*xs), "w": randn(*ws) * 0.5}
    if bias:
        inputs["b"] = randn(ws[1] * g)
    case("conv_transpose2d", [s[0], s[1], p[0], p[1], op[0], op[1], d[0], d[1], g, int(bias)], inputs,
         lambda t, s=s, p=p, op=op, d=d, g=g: F.conv_transpose2d(t["x"], t["w"], t.get("b"), s, p, op, g, d))

# ---- conv_transpose1d: (x shape, w shape, stride, padding, output_padding, dilation, groups, bias) ----
CONV_T1D = [
    ((2, 3, 7), (3, 4, 3), 2, 1, 1, 1, 1, True),
    ((2, 4, 6), (4, 1, 2), 1, 0, 1, 3, 2, False),   # op < dilation, groups 2
    ((3, 5), (3, 2, 4), 3, 2, 0, 1, 1, True),        # unbatched
]
for xs, ws, s, p, op, d, g, bias in CONV_T1D:
    inputs = {"x": randn(*xs), "w": randn(*ws) * 0.5}
    if bias:
        inputs["b"] = randn(ws[1] * g)
    case("conv_transpose1d", [s, p, op, d, g, int(bias)], inputs,
         lambda t, s=s, p=p, op=op, d=d, g=g: F.conv_transpose1d(t["x"], t["w"], t.get("b"), s, p, op, g, d))

# ---- adaptive_max_pool2d: (x shape, output size) ----
for xs, o in (((2, 3, 7, 6), (3, 4)), ((1, 2, 5, 5), (5, 5)), ((1, 2, 9, 7), (4, 2)), ((3, 4, 5), (1, 1)),
              ((1, 1, 3, 2), (5, 4)), ((0, 2, 4, 4), (2, 3))):
    def call(t, o=o):
        y, i = F.adaptive_max_pool2d(t["x"], o, return_indices=True)
        return y, {"indices": i}
    case("adaptive_max_pool2d", list(o), {"x": distinct(*xs)}, call)

# ---- pad: (x shape, pad list, mode, value) ----
PAD_MODES = ["constant", "reflect", "replicate", "circular"]
PADS = [
    ((2, 3, 4, 5), (1, 2), 0, 0.0),
    ((2, 3, 4, 5), (-1, 2, 3, -2), 0, 1.5),              # a crop and a fill value
    ((2, 3, 4, 5), (1, 1, 2, 0, 1, 2), 0, -0.25),        # three dims
    ((0, 3, 4, 5), (1, 1, 1, 1), 0, 0.0),                # empty batch
    ((2, 3, 4, 5), (2, 1, 3, 0), 1, 0.0),
    ((2, 3, 4, 5), (-1, 2, 1, -1), 1, 0.0),              # reflect with crops
    ((3, 4, 5), (1, 3), 1, 0.0),
    ((1, 2, 3, 4, 5), (1, 1, 2, 0, 1, 2), 1, 0.0),       # reflect of three dims
    ((2, 3, 4, 5), (2, 3, 0, 4), 2, 0.0),
    ((3, 5, 4), (3, 1), 2, 0.0),
    ((2, 3, 4, 5), (2, 3, 1, 4), 3, 0.0),                # circular up to the whole dim
    ((2, 3, 5), (5, 1), 3, 0.0),
]
for xs, pad, mode, value in PADS:
    case("pad", [mode, int(value * 4), len(pad), *pad], {"x": randn(*xs)},
         lambda t, pad=pad, mode=mode, value=value: F.pad(t["x"], pad, PAD_MODES[mode], value) if mode == 0
         else F.pad(t["x"], pad, PAD_MODES[mode]))

# ---- interpolate: (x shape, size or None, scale or None, mode, align_corners) ----
INTERP = [
    ((2, 3, 3, 4), (5, 7), None, 0, False),
    ((2, 3, 3, 4), None, (2.0, 2.0), 0, False),           # the exact doubling path
    ((1, 2, 5, 6), None, (1.7, 0.8), 0, False),
    ((1, 2, 5, 7), (2, 3), None, 0, False),               # downsampling
    ((2, 3, 4, 5), None, (1.7, 2.5), 1, False),
    ((1, 2, 7, 6), (3, 4), None, 1, False),               # downsampling
    ((2, 2, 3, 4), (6, 9), None, 1, True),
    ((1, 2, 3, 4), (1, 5), None, 1, True),                # one output row: align_corners' scale 0
    ((1, 2, 4, 5), None, (1.5, 0.6), 1, True),            # align_corners ignores the scale
    ((0, 3, 4, 4), None, (2.0, 2.0), 1, False),           # empty batch
]
for xs, size, scale, mode, align in INTERP:
    sc = scale or (0, 0)
    case("interpolate", [mode, int(align), *(size or (0, 0)), round(sc[0] * 1000), round(sc[1] * 1000)],
         {"x": randn(*xs)},
         lambda t, size=size, scale=scale, mode=mode, align=align: F.interpolate(
             t["x"], size=size, scale_factor=scale, mode=["nearest", "bilinear"][mode],
             align_corners=align if mode else None))

# ---- max_unpool2d: (shape max pooling read, kernel, stride, padding, output size or None) ----
for src, k, st, p, osize in (((2, 3, 7, 6), (2, 2), (2, 2), (0, 0), (7, 6)), ((1, 2, 5, 5), (3, 3), (2, 2), (1, 1), None),
                             ((3, 4, 4), (2, 2), (2, 2), (0, 0), None), ((1, 2, 6, 5), (3, 2), (2, 1), (1, 0), None)):
    _, ind = F.max_pool2d(distinct(*src), k, st, p, return_indices=True)
    def call(t, k=k, st=st, p=p, osize=osize, ind=ind):
        return F.max_unpool2d(t["x"], ind, k, st, p, osize), {"ind": ind}
    case("max_unpool2d", [*k, *st, *p, *(osize or (0, 0))], {"x": randn(*ind.shape)}, call)

# ---- a model: PyTorch's default initialisation, its state dict loaded by agrad ----
torch.manual_seed(2)
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                            torch.nn.Conv2d(8, 6, (3, 2), stride=(2, 1), groups=2, bias=False),
                            torch.nn.AvgPool2d(2, ceil_mode=True), torch.nn.AdaptiveAvgPool2d((2, 3)))
for k, v in model.state_dict().items():
    out[f"model.{k}"] = v
mx = torch.randn(2, 3, 13, 11, requires_grad=True)
my = model(mx)
mdy = torch.randn(my.shape)
(my * mdy).sum().backward()
out["model.x"], out["model.y"], out["model.dy"], out["model.dx"] = mx.detach(), my.detach(), mdy, mx.grad

# ---- a second model, of the transposed convolution, padding and resampling modules, under "model2." ----
torch.manual_seed(3)
model2 = torch.nn.Sequential(torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                             torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
                             torch.nn.Upsample(scale_factor=1.5, mode="bilinear"), torch.nn.ReplicationPad2d((1, 0, 2, 1)),
                             torch.nn.ZeroPad2d(1), torch.nn.Upsample(size=(9, 8)), torch.nn.AdaptiveMaxPool2d((3, 4)))
for k, v in model2.state_dict().items():
    out[f"model2.{k}"] = v
mx = torch.randn(2, 3, 5, 6, requires_grad=True)
my = model2(mx)
mdy = torch.randn(my.shape)
(my * mdy).sum().backward()
out["model2.x"], out["model2.y"], out["model2.dy"], out["model2.dx"] = mx.detach(), my.detach(), mdy, mx.grad

save_safetensors(OUT, out)
print(f"wrote {OUT}: {len(out)} tensors, " + ", ".join(f"{k} {v}" for k, v in count.items()))
