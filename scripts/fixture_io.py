"""Shared output helper of the fixture scripts (scripts/gen_*_fixtures.py).

A script imports it as `from fixture_io import save_safetensors`; Python puts the
script's own folder first on sys.path, so this works whether the script is run from
the repository root or from scripts/.
"""
import json
import struct

import torch

# safetensors' dtype names of the torch dtypes the fixtures store.
TAGS = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bool: "BOOL"}


def save_safetensors(path, state):
    """Writes state (name -> tensor) to path in the layout the `safetensors` library writes:
    an 8-byte little-endian header length, a JSON header sorted by alignment (widest dtype
    first) then name, padded with spaces to 8 bytes, then the tensors' bytes in that order."""
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    names = sorted(state, key=lambda k: (-state[k].element_size(), k))
    header, blobs, off = {}, [], 0
    for k in names:
        t = state[k]
        raw = t.numpy().tobytes()
        header[k] = {"dtype": TAGS[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
