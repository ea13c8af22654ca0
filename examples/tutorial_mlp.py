# tutorial_mlp.py - the PyTorch program that examples/tutorial_mlp.c mirrors
# line for line (docs/tutorial.md shows them side by side).
import torch
import torch.nn.functional as F


def param(*shape, fan_in):
    k = 1 / fan_in ** 0.5
    return torch.empty(*shape).uniform_(-k, k).requires_grad_()


def model(p, x):
    h = torch.tanh(F.linear(x, p[0], p[1]))
    return torch.sigmoid(F.linear(h, p[2], p[3]))


def bce(p, y):
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def loss_fn(params, x, y):
    return bce(model(params, x), y)


torch.manual_seed(0)
x = torch.tensor([[0., 0], [0, 1], [1, 0], [1, 1]])
y = torch.tensor([[0.], [1], [1], [0]])
params = [param(8, 2, fan_in=2), param(8, fan_in=2), param(1, 8, fan_in=8), param(1, fan_in=8)]

p64 = [p.detach().double().requires_grad_() for p in params]
x64, y64 = x.double(), y.double()
torch.autograd.gradcheck(lambda *p: loss_fn(p, x64, y64), p64)
print("gradcheck passed")

lr = 0.5
for step in range(1, 1001):
    loss = loss_fn(params, x, y)
    loss.backward()
    if step % 250 == 0:
        print(f"step {step:4d}  loss {loss.item():.4f}")
    with torch.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-lr)
            p.grad = None

with torch.no_grad():
    p = model(params, x)
correct = 0
for i in range(4):
    print(f"xor({x[i, 0]:g}, {x[i, 1]:g}) = {p[i, 0]:.3f}")
    correct += (p[i, 0] > 0.5) == (y[i, 0] > 0.5)
print(f"{correct}/4 correct")
