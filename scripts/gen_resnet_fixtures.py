"""Writes test/fixtures/resnet.safetensors: the small ResNet of examples/resnet.h (the
model of `fashion_cnn --model resnet`, from examples/resnet.py as fashion_cnn.py's) at width 3,
which test/test_resnet.c rebuilds with resnet_new(3, 10), loads and runs.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_resnet_fixtures.py
and commit the file.

Stored (float32; torch.manual_seed(0), PyTorch's default initialisation, then the BatchNorm
weights, biases and running statistics drawn at random so that they matter):
    <name>          the state dict before the forward, PyTorch's names ("3.conv1.weight",
                    "4.shortcut.1.running_var", "0.weight", "8.bias", ...)
    x, dy           an input [4, 1, 12, 12] (12 -> 6 -> 3) and the output's cotangent [4, 10]
    y               the output in training mode (batch statistics)
    dx, grad.<name> the gradients of sum(y * dy) in x and in every parameter
    after.<name>    every BatchNorm buffer after that forward (running statistics moved)
    y_eval          the output in eval mode afterwards (running statistics)
"""
import os
import sys

import torch
import torch.nn as nn

from fixture_io import save_safetensors

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from resnet import resnet  # noqa: E402  (examples/resnet.py, the model of fashion_cnn.py --model resnet)

OUT = "test/fixtures/resnet.safetensors"

torch.manual_seed(0)
model = resnet(3)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 1.5)
out = {k: v.clone() for k, v in model.state_dict().items()}
x = torch.randn(4, 1, 12, 12, requires_grad=True)
dy = torch.randn(4, 10)
model.train()
y = model(x)
(y * dy).sum().backward()
out.update({"x": x, "dy": dy, "y": y, "dx": x.grad})
out.update({"grad." + k: p.grad for k, p in model.named_parameters()})
out.update({"after." + k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k})
model.eval()
with torch.no_grad():
    out["y_eval"] = model(x)
save_safetensors(OUT, out)
print(model)
