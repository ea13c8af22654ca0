"""Writes test/fixtures/inplace.txt: PyTorch's gradients of small programs that use
in-place ops inside a graph, on non-leaves and through views (mul_, add_, sub_, div_,
relu_, clamp_, masked_fill_, copy_, fill_, zero_, index assignment y[i:j] = w), in
float64.  test/test_inplace_fixtures.c replays each program in agrad and compares.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_inplace_fixtures.py

Format: '#' lines are comments; each program is

    prog <name>
    leaf <reg> <ndim> <dims...> <values...>     float64, requires grad
    const <reg> <ndim> <dims...> <values...>    float64, no grad
    mask <reg> <ndim> <dims...> <0/1 values...> bool
    <instruction>                               one per line, in order (below)
    loss <reg> <weights reg>                    L = sum(reg * weights)
    grad <reg> <ndim> <dims...> <values...>     dL/d(leaf) after L.backward()
    error <PyTorch's message>                   instead of grads: backward failed
    end

Instructions (registers are names; `dst src ...` makes dst, an in-place op changes
its first register and makes nothing):
    clone dst src | zeros dst <ndim> <dims...> | mul_scalar dst src s | add dst a b | mul dst a b
    slice dst src dim start end step | narrow dst src dim start length | select dst src dim index
    transpose dst src d0 d1 | view dst src <ndim> <dims...> | expand dst src <ndim> <dims...>
    mul_ t o | add_ t o alpha | sub_ t o | div_ t o | mul_scalar_ t s | add_scalar_ t s
    relu_ t | clamp_ t lo hi | masked_fill_ t mask value | copy_ t o | fill_ t v | zero_ t
Values are written with repr(), so they are the exact doubles PyTorch computed.
Inputs are odd multiples of 1/16, so no value sits on relu's or clamp's kink.
"""
import os

import torch

torch.manual_seed(20261205)
f64 = torch.float64
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "inplace.txt")


def values(*shape):
    """Odd multiples of 1/16 in [-2, 2]: never 0, never a clamp bound below."""
    return ((torch.randint(-16, 16, shape) * 2 + 1).to(f64) / 16)


# Each program: its tensors (kind, name, shape) and its instructions.
PROGRAMS = [
    ("mul_ on a non-leaf", [("leaf", "a", (2, 3)), ("leaf", "b", (3,)), ("const", "w", (2, 3))],
     ["mul_scalar y a 1.5", "mul_ y b", "add_ y a -0.5"], "y"),
    ("clamp_ then relu_", [("leaf", "a", (2, 3)), ("const", "w", (2, 3))],
     ["mul_scalar y a 2", "clamp_ y -0.9 1.1", "relu_ y", "mul z y y"], "z"),
    ("relu_ saves its result: a later write fails backward", [("leaf", "a", (2, 3)), ("const", "w", (2, 3))],
     ["mul_scalar y a 2", "relu_ y", "clamp_ y -0.9 1.1"], "y"),
    ("a saved base written through a view fails backward", [("leaf", "a", (4,)), ("const", "w", (4,))],
     ["mul_scalar y a 1", "mul z y y", "narrow v y 0 1 2", "mul_scalar_ v 2"], "z"),
    ("masked_fill_ on a non-leaf", [("leaf", "a", (2, 3)), ("mask", "m", (2, 3)), ("const", "w", (2, 3))],
     ["mul y a a", "masked_fill_ y m 0.25", "div_ y a"], "y"),
    ("copy_ into a buffer", [("leaf", "a", (2, 3)), ("leaf", "b", (3,)), ("const", "w", (2, 3))],
     ["zeros buf 2 2 3", "copy_ buf b", "mul_ buf a", "sub_ buf a"], "buf"),
    ("consumers before and after", [("leaf", "a", (4,)), ("const", "w", (4,))],
     ["mul_scalar y a 3", "add z y y", "mul_scalar_ y -2", "mul q y z", "add r q y"], "r"),
    ("index assignment y[1:3] = 2b", [("leaf", "a", (4, 3)), ("leaf", "b", (2, 3)), ("const", "w", (4, 3))],
     ["clone y a", "slice v y 0 1 3 1", "mul_scalar b2 b 2", "copy_ v b2", "mul z y a"], "z"),
    ("y[1:3].mul_(2)", [("leaf", "a", (5,)), ("const", "w", (5,))],
     ["clone y a", "slice v y 0 1 3 1", "mul_scalar_ v 2"], "y"),
    ("a slice with a step, mul_ by a tensor", [("leaf", "a", (4, 3)), ("leaf", "b", (3,)), ("const", "w", (4, 3))],
     ["mul_scalar y a 1.5", "slice v y 0 0 4 2", "mul_ v b", "mul z y y"], "z"),
    ("add_ through a transpose", [("leaf", "a", (3, 2)), ("leaf", "b", (3,)), ("const", "w", (3, 2))],
     ["mul_scalar y a 1", "transpose t y 0 1", "add_ t b 0.5", "mul z y a"], "z"),
    ("relu_ of a row (select)", [("leaf", "a", (3, 4)), ("const", "w", (3, 4))],
     ["add y a a", "select r y 0 1", "relu_ r", "mul z y y"], "z"),
    ("clamp_ of a narrow of a transpose", [("leaf", "a", (4, 3)), ("const", "w", (3, 4))],
     ["mul_scalar y a 1.5", "transpose t y 0 1", "narrow v t 1 1 2", "clamp_ v -0.9 1.1", "mul z t t"], "z"),
    ("write through one view, read through another", [("leaf", "a", (4, 3)), ("leaf", "b", (3,)),
                                                      ("const", "w", (3, 3))],
     ["mul_scalar y a 1.5", "narrow p y 0 0 3", "narrow q y 0 1 3", "mul_ p b", "mul z q q"], "z"),
    ("a write to the base, read through an older view", [("leaf", "a", (5,)), ("const", "w", (2,))],
     ["clone y a", "narrow v y 0 1 2", "mul_scalar_ y 2", "mul z v v"], "z"),
    ("a buffer filled through views", [("leaf", "a", (4,)), ("const", "w", (3,))],
     ["zeros buf 1 5", "narrow lo buf 0 0 3", "narrow hi buf 0 2 3", "narrow ah a 0 0 3", "copy_ lo ah",
      "mul z hi hi"], "z"),
    ("masked_fill_ through a view", [("leaf", "a", (4, 3)), ("mask", "m", (2, 3)), ("const", "w", (4, 3))],
     ["mul_scalar y a -1", "narrow v y 0 1 2", "masked_fill_ v m 0.5", "mul z y a"], "z"),
    ("div_ of a flat view", [("leaf", "a", (2, 3)), ("leaf", "b", (4,)), ("const", "w", (2, 3))],
     ["mul y a a", "view f y 1 6", "narrow g f 0 1 4", "div_ g b", "add z y a"], "z"),
    ("a row of an expanded view", [("leaf", "a", (3,)), ("leaf", "b", (3,)), ("const", "w", (4, 3))],
     ["mul_scalar y a 1", "view y2 y 2 1 3", "expand e y2 2 4 3", "select r e 0 2", "mul_ r b", "mul z e e"], "z"),
    ("copy_ of an expression of the view", [("leaf", "a", (5,)), ("const", "w", (5,))],
     ["mul_scalar y a 1", "narrow v y 0 1 2", "mul_scalar v2 v 2", "copy_ v v2", "mul z y y"], "z"),
    ("fill_ and zero_ of views", [("leaf", "a", (3, 4)), ("const", "w", (3, 4))],
     ["mul y a a", "select c y 1 0", "fill_ c 0.5", "narrow r y 0 2 1", "zero_ r", "mul z y a"], "z"),
    ("sub_ of a broadcast operand through a column view", [("leaf", "a", (3, 3)), ("leaf", "b", (1,)),
                                                            ("const", "w", (3, 3))],
     ["mul_scalar y a 2", "select c y 1 2", "sub_ c b", "mul z y y"], "z"),
]


def run(prog):
    name, tensors, code, out = prog
    reg, leaves = {}, []
    for kind, n, shape in tensors:
        if kind == "mask":
            reg[n] = torch.rand(shape) < 0.5
        else:
            reg[n] = values(*shape).requires_grad_(kind == "leaf")
            if kind == "leaf":
                leaves.append(n)
    inputs = {n: reg[n].detach().clone() for _, n, _ in tensors}
    for line in code:
        f = line.split()
        op, args = f[0], f[1:]
        r = lambda i: reg[args[i]]
        num = lambda i: float(args[i])
        ints = lambda i: [int(v) for v in args[i:]]
        if op == "clone": reg[args[0]] = r(1).clone()
        elif op == "zeros": reg[args[0]] = torch.zeros(ints(2), dtype=f64)
        elif op == "mul_scalar": reg[args[0]] = r(1) * num(2)
        elif op == "add": reg[args[0]] = r(1) + r(2)
        elif op == "mul": reg[args[0]] = r(1) * r(2)
        elif op == "slice":
            d, s, e, st = ints(2)
            reg[args[0]] = r(1)[(slice(None),) * d + (slice(s, e, st),)]
        elif op == "narrow": reg[args[0]] = r(1).narrow(*ints(2))
        elif op == "select": reg[args[0]] = r(1).select(*ints(2))
        elif op == "transpose": reg[args[0]] = r(1).transpose(*ints(2))
        elif op == "view": reg[args[0]] = r(1).view(ints(3))
        elif op == "expand": reg[args[0]] = r(1).expand(ints(3))
        elif op == "mul_": r(0).mul_(r(1))
        elif op == "add_": r(0).add_(r(1), alpha=num(2))
        elif op == "sub_": r(0).sub_(r(1))
        elif op == "div_": r(0).div_(r(1))
        elif op == "mul_scalar_": r(0).mul_(num(1))
        elif op == "add_scalar_": r(0).add_(num(1))
        elif op == "relu_": r(0).relu_()
        elif op == "clamp_": r(0).clamp_(num(1), num(2))
        elif op == "masked_fill_": r(0).masked_fill_(r(1), num(2))
        elif op == "copy_": r(0).copy_(r(1))
        elif op == "fill_": r(0).fill_(num(1))
        elif op == "zero_": r(0).zero_()
        else: raise ValueError(op)
    loss = (reg[out] * reg["w"]).sum()
    try:
        loss.backward()
    except RuntimeError as e:  # a saved tensor modified in place: agrad must refuse too
        return name, tensors, code, out, inputs, str(e).split(":")[0]
    return name, tensors, code, out, inputs, {n: reg[n].grad for n in leaves}


def tensor_line(kind, name, t):
    vals = t.to(torch.int64).flatten().tolist() if t.dtype == torch.bool else t.flatten().tolist()
    return " ".join([kind, name, str(t.dim())] + [str(s) for s in t.shape] + [repr(v) for v in vals])


def main():
    lines = ["# Generated by scripts/gen_inplace_fixtures.py (PyTorch %s); do not edit." % torch.__version__]
    for prog in PROGRAMS:
        name, tensors, code, out, inputs, grads = run(prog)
        lines.append("prog " + name)
        for kind, n, _ in tensors:
            lines.append(tensor_line(kind, n, inputs[n]))
        lines += code
        lines.append("loss %s w" % out)
        if isinstance(grads, str):
            lines.append("error " + grads)
            grads = {}
        for n, g in grads.items():
            lines.append(tensor_line("grad", n, g if g is not None else torch.zeros_like(inputs[n])))
        lines.append("end")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d programs to %s" % (len(PROGRAMS), OUT))


if __name__ == "__main__":
    main()
