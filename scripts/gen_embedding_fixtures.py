"""Writes test/fixtures/embedding.safetensors: PyTorch's F.embedding outputs and weight
gradients, and an nn.Embedding's state dict, which test/test_embedding.c checks agrad against.

Regenerate (Debian's PyTorch 1.13: apt-get install python3-torch) from the repository root:
    /usr/bin/python3 scripts/gen_embedding_fixtures.py
and commit the file.

Each case "embedding.<i>" (i = 0, 1, ... without gaps) holds
    embedding.<i>.padding_idx   int64 [1]: the padding_idx argument, -999 for None
    embedding.<i>.indices       int64 indices (repeats, and the padding row when there is one)
    embedding.<i>.<dt>.<name>   for dt in f64, f32: the weight w, dy, y = F.embedding(indices, w,
                                padding_idx) and dw, the gradient of sum(y * dy) in w
and "module.": an nn.Embedding(7, 3, padding_idx=-2) made under torch.manual_seed(3), its
state dict ("module.weight"), an input "module.indices" and its output "module.y".
"""

import torch
import torch.nn.functional as F

from fixture_io import save_safetensors

OUT = "test/fixtures/embedding.safetensors"


torch.manual_seed(0)
out = {}
# (weight shape, indices, padding_idx or None)
CASES = [
    ((10, 4), [[1, 2, 4, 5], [4, 3, 2, 9]], 2),                 # the padding row picked twice, 4 picked twice
    ((10, 4), [[0, 9, 9], [1, 1, 0]], None),                      # no padding: repeated rows accumulate
    ((6, 5), [[[5, 0], [3, 5]], [[2, 2], [5, 1]]], -1),           # padding_idx counted from the end (row 5)
    ((7, 3), 4, None),                                            # 0-d indices: one row
    ((3, 2), [], 0),                                              # no indices: an empty result, zero gradient
]
for i, (ws, idx, pad) in enumerate(CASES):
    indices = torch.tensor(idx, dtype=torch.int64)
    w64 = torch.randn(ws, dtype=torch.float64)
    dy64 = torch.randn(indices.shape + (ws[1],), dtype=torch.float64)
    out[f"embedding.{i}.padding_idx"] = torch.tensor([-999 if pad is None else pad], dtype=torch.int64)
    out[f"embedding.{i}.indices"] = indices
    for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        w = w64.detach().clone().to(dt).requires_grad_(True)
        dy = dy64.to(dt)
        y = F.embedding(indices, w, padding_idx=pad)
        (y * dy).sum().backward()
        for name, v in (("w", w), ("dy", dy), ("y", y), ("dw", w.grad)):
            out[f"embedding.{i}.{tag}.{name}"] = v

torch.manual_seed(3)
m = torch.nn.Embedding(7, 3, padding_idx=-2)
assert str(m) == "Embedding(7, 3, padding_idx=5)"
for k, v in m.state_dict().items():
    out[f"module.{k}"] = v
mi = torch.tensor([[6, 5, 0], [1, 5, 3]], dtype=torch.int64)
out["module.indices"], out["module.y"] = mi, m(mi)

save_safetensors(OUT, out)
print(f"wrote {OUT}: {len(out)} tensors, {len(CASES)} cases")
