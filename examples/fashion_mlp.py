"""fashion_mlp.py - the PyTorch twin of fashion_mlp.c: Fashion-MNIST with
Flatten, Linear(784, H), ReLU, Linear(H, 10), cross-entropy on the logits,
shuffled batches of 1024.  Same flags (but --init, --scheduler, --curves) and
the same last line: test_acc=... test_acc_std=... train_s=...

Runs in PyTorch's fastest configuration on a 2-core machine (see
/work/shared/notes/pytorch-baseline.md): OPENBLAS_NUM_THREADS=2 and one torch
thread (--threads).  Batches are gathered by index from tensors, as the C
program's loader does, rather than sample by sample through a DataLoader.  As
torchvision keeps MNIST, the images stay torch.uint8 and each batch (and the
test set, 1024 images at a time) is converted to float32 when it is used.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")  # before numpy / torch load OpenBLAS

import argparse
import gzip
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--optimizer", default="adam",
               choices=["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"])
p.add_argument("--lr", type=float, default=None, help="default: 0.01 for sgd/momentum/nesterov/adagrad, else 0.001")
p.add_argument("--norm", default="pm1", choices=["01", "pm1", "zscore"])
p.add_argument("--hidden", type=int, default=256)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch", type=int, default=1024)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--runs", type=int, default=1)
p.add_argument("--data", default="datasets/fashion-mnist")
p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
args = p.parse_args()
torch.set_num_threads(args.threads)


def load_idx(name):
    with gzip.open(os.path.join(args.data, name)) as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", ndim, 4).astype(int)
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy())


xtr, ytr = load_idx("train-images-idx3-ubyte.gz"), load_idx("train-labels-idx1-ubyte.gz").long()  # images: uint8
xte, yte = load_idx("t10k-images-idx3-ubyte.gz"), load_idx("t10k-labels-idx1-ubyte.gz").long()
lo = -1.0 if args.norm == "pm1" else 0.0
if args.norm == "zscore":  # mean and std of the training bytes, in float64, from their histogram (no float copy)
    counts, v = torch.bincount(xtr.flatten(), minlength=256).double(), torch.arange(256, dtype=torch.float64)
    mean = (counts * v).sum() / counts.sum()
    std = ((counts * (v - mean) ** 2).sum() / counts.sum()).sqrt()
    mean, std = mean.float(), std.float()


def inputs(x):
    """A batch of pixels 0..255 (uint8) as float32 inputs in [0, 1], [-1, 1], or z-scores."""
    x = x.float()  # a new tensor: the rest in place
    return x.sub_(mean).div_(std) if args.norm == "zscore" else x.div_(255).mul_(1 - lo).add_(lo)


def make_optimizer(params):
    name = args.optimizer
    lr = args.lr if args.lr is not None else (0.01 if name in ("sgd", "momentum", "nesterov", "adagrad") else 0.001)
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr, momentum=0.0 if name == "sgd" else 0.9, nesterov=name == "nesterov")
    return {"adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW}[name](params, lr)


def one_run(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    opt = make_optimizer(model.parameters())
    g = torch.Generator().manual_seed(seed)
    train_s = 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            x, y = inputs(xtr[idx]), ytr[idx]
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        train_s += time.perf_counter() - t0
        model.eval()
        test_loss, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(xte), 1024):
                logits, y = model(inputs(xte[i:i + 1024])), yte[i:i + 1024]
                test_loss += F.cross_entropy(logits, y, reduction="sum").item() / len(xte)
                correct += (logits.argmax(1) == y).sum().item()
        test_acc = correct / len(xte)
        print(f"epoch {epoch}/{args.epochs}  loss {total / seen:.4f}  test_loss={test_loss:.4f} test_acc={test_acc:.4f}")
    print(f"seed={seed} test_acc={test_acc:.4f} train_s={train_s:.2f}")
    return test_acc, test_loss, total / seen, train_s


results = [one_run(args.seed + r) for r in range(args.runs)]
acc = [r[0] for r in results]
mean = [statistics.mean(col) for col in zip(*results)]
print(f"test_acc={mean[0]:.4f} test_acc_std={statistics.stdev(acc) if len(acc) > 1 else 0.0:.4f} runs={args.runs} "
      f"test_loss={mean[1]:.4f} train_loss={mean[2]:.4f} train_s={mean[3]:.2f}")
