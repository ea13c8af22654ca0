"""fashion_cnn.py - the PyTorch twin of fashion_cnn.c: Fashion-MNIST with a
small CNN, two blocks of Conv2d 3x3 (padding 1), BatchNorm2d, ReLU and
MaxPool2d(2) (W then 2W channels, 28x28 -> 14x14 -> 7x7), then Flatten,
Dropout and Linear(2W*7*7, 10); cross-entropy on the logits, Adam with its
learning rate annealed to 0 along a cosine over all the steps (stepped every
batch), shuffled batches, PyTorch's default initialisation, inputs scaled to z-scores with the
mean and standard deviation of the training bytes.  Same flags (but --curves,
--plot, --features, --progress) and the same last line (--model resnet: the
small ResNet of examples/resnet.h, from examples/resnet.py):
test_acc=... train_s=... epoch_s=...

Runs with two torch (OpenMP, oneDNN) threads and one OpenBLAS thread by
default (--threads; OPENBLAS_NUM_THREADS from the environment): its
convolutions go through oneDNN, OpenBLAS only serves the linear head; see
bench/fashion_cnn_time.sh for choosing the faster configuration.  Batches are gathered by index from
tensors, as the C program's loader does.  As torchvision keeps MNIST, the
images stay torch.uint8 and each batch is converted to float32 when it is used.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy / torch load OpenBLAS

import argparse
import gzip
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from resnet import resnet  # examples/resnet.py, the model of --model resnet

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--model", default="cnn", choices=["cnn", "resnet"],
               help="cnn: two conv blocks; resnet: stem conv, three BasicBlocks, average pool")
p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
p.add_argument("--scheduler", default="cosine", choices=["none", "cosine"])
p.add_argument("--width", type=int, default=32, help="channels of the first block (the second has twice as many)")
p.add_argument("--dropout", type=float, default=0.25, help="dropout probability before the linear head")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--train-limit", type=int, default=0, help="train on the first N images only (0: all)")
p.add_argument("--data", default="datasets/fashion-mnist")
p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
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
if args.train_limit > 0:
    xtr, ytr = xtr[:args.train_limit], ytr[:args.train_limit]
# mean and std of the training bytes, in float64, from their histogram (no float copy)
counts, v = torch.bincount(xtr.flatten(), minlength=256).double(), torch.arange(256, dtype=torch.float64)
mean = (counts * v).sum() / counts.sum()
std = ((counts * (v - mean) ** 2).sum() / counts.sum()).sqrt()
mean, std = mean.float(), std.float()


def inputs(x):
    """A batch of pixels 0..255 (uint8) [B, 28, 28] as float32 z-scores [B, 1, 28, 28]."""
    return x.float().sub_(mean).div_(std).unsqueeze(1)


def block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


def evaluate(model, cm):
    """Test loss and accuracy in eval mode, batches of 256 (as fashion_cnn.c); adds to the confusion matrix cm."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(xte), 256):
            logits, y = model(inputs(xte[i:i + 256])), yte[i:i + 256]
            loss += F.cross_entropy(logits, y, reduction="sum").item() / len(xte)
            correct += (logits.argmax(1) == y).sum().item()
            cm.index_put_((y, logits.argmax(1)), torch.ones_like(y), accumulate=True)
    model.train()
    return loss, correct / len(xte)


torch.manual_seed(args.seed)
w = args.width
if args.model == "resnet":
    model = resnet(w)
else:
    model = nn.Sequential(*block(1, w), *block(w, 2 * w), nn.Flatten(), nn.Dropout(args.dropout),
                          nn.Linear(2 * w * 7 * 7, 10))
opt = torch.optim.Adam(model.parameters(), args.lr)
steps = (len(xtr) + args.batch - 1) // args.batch
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps) if args.scheduler == "cosine" else None
g = torch.Generator().manual_seed(args.seed)
train_s, test_loss, test_acc = 0.0, float("nan"), float("nan")
for epoch in range(1, args.epochs + 1):
    t0 = time.perf_counter()
    total, seen = 0.0, 0
    perm = torch.randperm(len(xtr), generator=g)
    for i in range(0, len(xtr), args.batch):
        idx = perm[i:i + args.batch]
        x, y = inputs(xtr[idx]), ytr[idx]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if sched:
            sched.step()
        total, seen = total + loss.item() * len(idx), seen + len(idx)
    train_s += time.perf_counter() - t0
    cm = torch.zeros(10, 10, dtype=torch.long)  # of the last epoch's evaluation
    test_loss, test_acc = evaluate(model, cm)
    print(f"epoch {epoch}/{args.epochs}  loss {total / seen:.4f}  test_loss={test_loss:.4f} test_acc={test_acc:.4f}",
          flush=True)

print("confusion matrix (rows: true class, columns: predicted):")
for i in range(10):
    print("  " + " ".join(f"{int(c):4d}" for c in cm[i]))
print(f"test_acc={test_acc:.4f} test_loss={test_loss:.4f} train_loss={total / seen:.4f} epochs={args.epochs} "
      f"train_s={train_s:.2f} epoch_s={train_s / args.epochs:.2f}")
