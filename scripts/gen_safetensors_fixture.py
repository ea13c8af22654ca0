"""Writes test/fixtures/torch_state.safetensors: a small Linear model's state dict
from PyTorch, laid out exactly as the `safetensors` library writes it (header
sorted by dtype alignment then name, padded with spaces to 8 bytes).

Regenerate with Debian's PyTorch:  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_safetensors_fixture.py
The expected values are printed and mirrored in test/test_state.c.
"""
import json
import struct

import torch

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
model.train()
model(torch.randn(4, 3))  # move the running statistics away from their defaults
state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}

names = sorted(state, key=lambda k: (-state[k].element_size(), k))
tags = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bool: "BOOL"}
header, blobs, off = {}, [], 0
for k in names:
    t = state[k]
    raw = t.numpy().tobytes()
    header[k] = {"dtype": tags[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
text = json.dumps(header, separators=(",", ":")).encode()
text += b" " * (-len(text) % 8)
with open("test/fixtures/torch_state.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
for k in names:
    print(k, state[k].dtype, list(state[k].shape), state[k].flatten().tolist())
