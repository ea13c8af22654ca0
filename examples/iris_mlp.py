"""iris_mlp.py - the PyTorch twin of iris_mlp.c (docs/tutorial.md, part 2): an
MLP 4 -> hidden -> 3 classifies Iris flowers, with a 70/10/20 split, z-scores
from the training split, Adam on mini-batches of 16 and early stopping on the
validation loss.  Same flags and the same last line as the C program (its own
random numbers, so its own figures).  --save needs the safetensors package,
--plot matplotlib."""
import argparse
import copy
import csv
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset, random_split

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--data", default="datasets/iris.csv")
p.add_argument("--hidden", type=int, default=16)
p.add_argument("--epochs", type=int, default=200)
p.add_argument("--patience", type=int, default=20)
p.add_argument("--lr", type=float, default=0.01)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--save", default="", help="write the trained model's weights to this safetensors file")
p.add_argument("--curves", default="", help="write the per-epoch curves to this CSV file")
p.add_argument("--plot", default="", help="draw the per-epoch curves into this SVG file")
p.add_argument("--checkpoint", default="", help="save a checkpoint to this file after every epoch")
p.add_argument("--resume", default="", help="resume training from this checkpoint file")
args = p.parse_args()
torch.manual_seed(args.seed)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss, acc = F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()
    model.train()
    return loss, acc


# Load the CSV: 4 features, the species name as the label.
with open(args.data) as f:
    rows = list(csv.reader(f))[1:]
names = list(dict.fromkeys(r[-1] for r in rows))
features = torch.tensor([[float(v) for v in r[:-1]] for r in rows])
labels = torch.tensor([names.index(r[-1]) for r in rows])
part = random_split(TensorDataset(features, labels), [0.7, 0.1, 0.2], torch.Generator().manual_seed(args.seed))
(x_train, y_train), (x_val, y_val), (x_test, y_test) = [[t[s.indices] for t in (features, labels)] for s in part]

# Standardise with the training split's statistics only.
mean, std = x_train.mean(0), x_train.std(0, unbiased=False)
x_train, x_val, x_test = (x_train - mean) / std, (x_val - mean) / std, (x_test - mean) / std
loader = DataLoader(TensorDataset(x_train, y_train), batch_size=16, shuffle=True,
                    generator=torch.Generator().manual_seed(args.seed))

# The model and its optimizer.
model = nn.Sequential(nn.Linear(4, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 3))
opt = torch.optim.Adam(model.parameters(), lr=args.lr)
print(model)

# What watches the training: early stopping, curves, checkpoints.
best_loss, best_epoch, best_state, wait = float("inf"), 0, None, 0
curves, first_epoch = [], 1
if args.resume:
    ck = torch.load(args.resume)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"])
    loader.generator.set_state(ck["loader"])
    best_loss, best_epoch, best_state, wait = ck["early_stopping"]
    curves, first_epoch = ck["curves"], ck["epoch"] + 1

# Train: early stopping on the validation loss.
t0 = time.perf_counter()
for epoch in range(first_epoch, args.epochs + 1):
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    train_loss, train_acc = evaluate(model, x_train, y_train)
    val_loss, val_acc = evaluate(model, x_val, y_val)
    improved = val_loss < best_loss
    if improved:
        best_loss, best_epoch, best_state, wait = val_loss, epoch, copy.deepcopy(model.state_dict()), 0
    else:
        wait += 1
    print(f"epoch {epoch}/{args.epochs}  val_loss={val_loss:.4f} val_acc={val_acc:.4f}{' *' if improved else ''}")
    curves.append((train_loss, train_acc, val_loss, val_acc))
    if args.checkpoint:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                    "loader": loader.generator.get_state(), "early_stopping": (best_loss, best_epoch, best_state, wait),
                    "curves": curves, "epoch": epoch}, args.checkpoint + ".tmp")
        os.replace(args.checkpoint + ".tmp", args.checkpoint)
    if wait >= args.patience:
        break
train_s = time.perf_counter() - t0

# Evaluate the best weights on the test split.
model.load_state_dict(best_state)
model.eval()
with torch.no_grad():
    logits = model(x_test)
cm = torch.bincount(y_test * 3 + logits.argmax(1), minlength=9).reshape(3, 3)
tp = cm.diag().double()
precision, recall = tp / cm.sum(0).clamp(min=1), tp / cm.sum(1).clamp(min=1)
f1 = torch.where(tp > 0, 2 * precision * recall / (precision + recall), torch.zeros(3, dtype=torch.double))
print("confusion matrix (rows: true species, columns: predicted):")
for i in range(3):
    print(f"  {names[i]:<10} {cm[i, 0]:3d} {cm[i, 1]:3d} {cm[i, 2]:3d}   precision {precision[i]:.3f} "
          f"recall {recall[i]:.3f} F1 {f1[i]:.3f}")

# Save the weights (agrad loads them with ag_module_load), the curves and their plot.
if args.save:
    from safetensors.torch import save_file
    save_file(model.state_dict(), args.save)
if args.curves:
    with open(args.curves, "w") as f:
        f.write("epoch,train_loss,train_acc,val_loss,val_acc\n")
        f.writelines(f"{e},{','.join(f'{v:.9g}' for v in row)}\n" for e, row in enumerate(curves, 1))
if args.plot:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4))
    for ax, columns in zip(axes, ((0, 2), (1, 3))):
        for c in columns:
            ax.plot(range(1, len(curves) + 1), [row[c] for row in curves], label=("train_loss", "train_acc",
                                                                                     "val_loss", "val_acc")[c])
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle("Iris MLP")
    fig.savefig(args.plot)
test_acc = (logits.argmax(1) == y_test).float().mean().item()
print(f"test_acc={test_acc:.4f} macro_f1={f1.mean():.4f} val_acc={val_acc:.4f} best_epoch={best_epoch} "
      f"epochs={len(curves)} train_s={train_s:.3f}")
