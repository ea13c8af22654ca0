"""Writes test/fixtures/containers.safetensors: a PyTorch model built of nn.ModuleList and
nn.ModuleDict, which test/test_nn_module.c rebuilds with ag_nn_module_list / ag_nn_module_dict,
loads strictly and runs.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_container_fixtures.py
and commit the file.

The model (torch.manual_seed(0)):
    blocks = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 4)])
    heads = nn.ModuleDict({"cls": nn.Linear(4, 2), "reg": nn.Linear(4, 1)})
    forward(x): h = x; for b in blocks: h = relu(b(h)); return heads["cls"](h), heads["reg"](h)
Stored: its state dict under PyTorch's names ("blocks.0.weight", "heads.cls.bias", ...), an input
"x" [5, 3], the outputs "cls" and "reg", and "dx", the gradient of sum(cls) + sum(reg) in x.
The script prints print(model), which the test compares with agrad's print.
"""
import torch
import torch.nn as nn

from fixture_io import save_safetensors

OUT = "test/fixtures/containers.safetensors"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 4), nn.Linear(4, 4)])
        self.heads = nn.ModuleDict({"cls": nn.Linear(4, 2), "reg": nn.Linear(4, 1)})

    def forward(self, x):
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.heads["cls"](x), self.heads["reg"](x)


torch.manual_seed(0)
model = Net()
out = dict(model.state_dict())
x = torch.randn(5, 3, requires_grad=True)
cls, reg = model(x)
(cls.sum() + reg.sum()).backward()
out.update({"x": x, "cls": cls, "reg": reg, "dx": x.grad})
save_safetensors(OUT, out)
print(model)
print(f"wrote {OUT}: {len(out)} tensors: " + ", ".join(sorted(model.state_dict())))
