"""Writes test/fixtures/torch_state.safetensors: a small Linear model's state dict
from PyTorch, laid out exactly as the `safetensors` library writes it (header
sorted by dtype alignment then name, padded with spaces to 8 bytes).

Regenerate with Debian's PyTorch:  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_safetensors_fixture.py
The expected values are printed and mirrored in test/test_state.c.
"""
import torch

from fixture_io import save_safetensors

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
model.train()
model(torch.randn(4, 3))  # move the running statistics away from their defaults
state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}

save_safetensors("test/fixtures/torch_state.safetensors", state)
names = sorted(state, key=lambda k: (-state[k].element_size(), k))
for k in names:
    print(k, state[k].dtype, list(state[k].shape), state[k].flatten().tolist())
