"""Writes test/fixtures/linalg.txt: PyTorch's values and input gradients of the
torch.linalg functions agrad implements (agrad/linalg.h), on fixed batched
inputs in float64 and float32: odd sizes, 1x1 matrices, empty batches,
broadcast batch dims, vector right-hand sides, a singular matrix for det.
test/test_linalg.c reads the file and compares agrad with it.

Regenerate with Debian's PyTorch (1.13):  apt-get install python3-torch
    /usr/bin/python3 scripts/gen_linalg_fixtures.py

Format: '#' lines are comments; each case is

    case <name> <function> <f64|f32> <option>
                                      function: the agrad name without ag_; option:
                                      upper 0/1 (cholesky, cholesky_solve), L/U (eigh,
                                      eigvalsh), hermitian 0/1 (matrix_rank), n
                                      (matrix_power), dim (cross, vecdot), ord:dims:keepdim
                                      (vector_norm; dims "all" or d,d), ord:keepdim
                                      (matrix_norm), upper:left:unitriangular 0/1 each
                                      (solve_triangular), mode reduced/complete/r (qr;
                                      - is reduced), full_matrices 0/1 (svd), - otherwise
    tensor in<k> <ndim> <dims...> <values...>     the inputs, as passed
    tensor out<k> <ndim> <dims...> <values...>    the outputs (eigh: λ and V∘V, which
                                                  the eigenvectors' signs leave alone)
    tensor seed<k> ...                            the weight of out<k> in the loss
    tensor grad<k> ...                            d(Σ_k Σ seed<k>·out<k>)/d(in<k>)
                                                  (zeros where PyTorch has no derivative:
                                                  qr's mode r, complete Q of a tall matrix)
    end

Values are written with repr() of the double (float32 values converted exactly).
"""
import os

import torch

torch.manual_seed(15)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "test", "fixtures", "linalg.txt")


def rand(*shape):
    return torch.rand(*shape, dtype=torch.float64) * 4 - 2


def invertible(*shape):
    n = shape[-1]
    return rand(*shape) + 2 * n * torch.eye(n, dtype=torch.float64)


def spd(*shape):
    a = rand(*shape)
    return a @ a.mT + shape[-1] * torch.eye(shape[-1], dtype=torch.float64)


def symmetric(*shape):
    a = rand(*shape)
    return a + a.mT


def outputs(fn, opt, ins):
    if fn == "linalg_solve":
        return [torch.linalg.solve(ins[0], ins[1])]
    if fn == "linalg_solve_triangular":  # opt: upper:left:unitriangular, each 0/1
        upper, left, unit = (x == "1" for x in opt.split(":"))
        return [torch.linalg.solve_triangular(ins[0], ins[1], upper=upper, left=left, unitriangular=unit)]
    if fn == "linalg_inv":
        return [torch.linalg.inv(ins[0])]
    if fn == "linalg_det":
        return [torch.linalg.det(ins[0])]
    if fn == "linalg_slogdet":
        s, l = torch.linalg.slogdet(ins[0])
        return [s, l]
    if fn == "linalg_cholesky":
        return [torch.linalg.cholesky(ins[0], upper=opt == "1")]
    if fn == "cholesky_solve":
        return [torch.cholesky_solve(ins[0], ins[1], upper=opt == "1")]
    if fn == "linalg_eigh":
        l, v = torch.linalg.eigh(ins[0], UPLO=opt)
        return [l, v * v]
    if fn == "linalg_eigvalsh":
        return [torch.linalg.eigvalsh(ins[0], UPLO=opt)]
    if fn == "linalg_qr":
        mode = "reduced" if opt == "-" else opt
        q, r = torch.linalg.qr(ins[0], mode=mode)
        m, n = ins[0].shape[-2:]
        if mode == "r" or (mode == "complete" and m > n):  # PyTorch's backward refuses these
            return [q.detach(), r.detach()]
        return [q, r]
    if fn == "linalg_svd":  # full_matrices only where |m - n| <= 1: the extra vectors are then unique up to sign
        u, sv, vh = torch.linalg.svd(ins[0], full_matrices=opt == "1")
        return [sv, u * u, vh * vh]
    if fn == "linalg_svdvals":
        return [torch.linalg.svdvals(ins[0])]
    if fn == "linalg_pinv":
        return [torch.linalg.pinv(ins[0])]
    if fn == "linalg_lstsq":
        return [torch.linalg.lstsq(ins[0], ins[1]).solution]
    if fn == "linalg_matrix_rank":
        return [torch.linalg.matrix_rank(ins[0], hermitian=opt == "1")]
    if fn == "linalg_matrix_power":
        return [torch.linalg.matrix_power(ins[0], int(opt))]
    if fn == "linalg_cross":
        return [torch.linalg.cross(ins[0], ins[1], dim=int(opt))]
    if fn == "linalg_vecdot":
        return [torch.linalg.vecdot(ins[0], ins[1], dim=int(opt))]
    if fn == "linalg_vector_norm":  # opt: ord:dims:keepdim, dims "all" or comma-separated
        o, dims, keep = opt.split(":")
        dim = None if dims == "all" else [int(d) for d in dims.split(",")]
        return [torch.linalg.vector_norm(ins[0], float(o), dim=dim, keepdim=keep == "1")]
    if fn == "linalg_matrix_norm":  # opt: ord:keepdim
        o, keep = opt.split(":")
        o = o if o in ("fro", "nuc") else float(o)
        return [torch.linalg.matrix_norm(ins[0], o, keepdim=keep == "1")]
    raise ValueError(fn)


def fmt(name, t):
    t = t.detach().to(torch.float64).contiguous()
    dims = " ".join(str(d) for d in t.shape)
    vals = " ".join(repr(float(v)) for v in t.reshape(-1).tolist())
    return f"tensor {name} {t.dim()} {dims} {vals}".rstrip() + "\n"


def case(lines, name, fn, dtype, opt, ins64):
    dt = torch.float64 if dtype == "f64" else torch.float32
    ins = [x.to(dt).requires_grad_(True) for x in ins64]
    outs = outputs(fn, opt, ins)
    seeds = [torch.rand(o.shape, dtype=torch.float64).to(o.dtype if o.is_floating_point() else dt) * 2 - 1
             for o in outs]
    terms = [(s * o).sum() for s, o in zip(seeds, outs) if o.requires_grad]
    grads = torch.autograd.grad(sum(terms), ins, allow_unused=True) if terms else [None] * len(ins)
    lines.append(f"case {name} {fn} {dtype} {opt}\n")
    for k, x in enumerate(ins):
        lines.append(fmt(f"in{k}", x))
    for k, (o, s) in enumerate(zip(outs, seeds)):
        lines.append(fmt(f"out{k}", o))
        lines.append(fmt(f"seed{k}", s))
    for k, (x, g) in enumerate(zip(ins, grads)):
        lines.append(fmt(f"grad{k}", g if g is not None else torch.zeros_like(x)))
    lines.append("end\n")


def main():
    lines = []
    for dtype in ("f64", "f32"):
        c = lambda name, fn, opt, *ins: case(lines, f"{name}/{dtype}", fn, dtype, opt, list(ins))
        c("solve_batch", "linalg_solve", "-", invertible(2, 3, 3), rand(2, 3, 2))
        c("solve_broadcast", "linalg_solve", "-", invertible(2, 1, 5, 5), rand(3, 5, 1))
        c("solve_vector", "linalg_solve", "-", invertible(4, 4), rand(4))
        c("solve_1x1", "linalg_solve", "-", invertible(1, 1), rand(1, 3))
        c("solve_empty_batch", "linalg_solve", "-", invertible(0, 3, 3), rand(0, 3, 2))
        c("inv_batch", "linalg_inv", "-", invertible(3, 5, 5))
        c("inv_1x1", "linalg_inv", "-", invertible(1, 1))
        c("inv_empty_batch", "linalg_inv", "-", invertible(0, 2, 2))
        c("det_batch", "linalg_det", "-", invertible(2, 3, 3))
        c("det_odd", "linalg_det", "-", rand(7, 7))
        c("det_1x1", "linalg_det", "-", rand(1, 1))
        c("det_empty_batch", "linalg_det", "-", rand(0, 4, 4))
        c("slogdet_batch", "linalg_slogdet", "-", rand(3, 4, 4))
        c("slogdet_1x1", "linalg_slogdet", "-", rand(2, 1, 1))
        c("cholesky_lower", "linalg_cholesky", "0", spd(2, 5, 5))
        c("cholesky_upper", "linalg_cholesky", "1", spd(3, 3))
        c("cholesky_1x1", "linalg_cholesky", "0", spd(1, 1))
        c("cholesky_empty_batch", "linalg_cholesky", "0", spd(0, 3, 3))
        c("cholesky_solve_lower", "cholesky_solve", "0", rand(2, 4, 3), torch.linalg.cholesky(spd(4, 4)))
        c("cholesky_solve_upper", "cholesky_solve", "1", rand(3, 2), torch.linalg.cholesky(spd(2, 3, 3), upper=True))
        c("eigh_lower", "linalg_eigh", "L", symmetric(2, 5, 5))
        c("eigh_upper", "linalg_eigh", "U", rand(3, 3))
        c("eigh_1x1", "linalg_eigh", "L", symmetric(1, 1))
        c("eigvalsh_lower", "linalg_eigvalsh", "L", symmetric(3, 4, 4))
        c("eigvalsh_upper", "linalg_eigvalsh", "U", rand(2, 5, 5))
        c("eigvalsh_empty_batch", "linalg_eigvalsh", "L", symmetric(0, 2, 2))
        c("qr_tall", "linalg_qr", "-", rand(2, 5, 3))
        c("qr_wide", "linalg_qr", "-", rand(3, 4))
        c("qr_1x1", "linalg_qr", "-", rand(1, 1))
        c("qr_empty_batch", "linalg_qr", "-", rand(0, 3, 2))
        c("svd_tall", "linalg_svd", "-", rand(2, 5, 3))
        c("svd_wide", "linalg_svd", "-", rand(3, 6))
        c("svd_square", "linalg_svd", "-", rand(4, 4))
        c("svd_empty_batch", "linalg_svd", "-", rand(0, 2, 3))
        c("svdvals_batch", "linalg_svdvals", "-", rand(3, 4, 3))
        c("pinv_tall", "linalg_pinv", "-", rand(2, 5, 3))
        c("pinv_wide", "linalg_pinv", "-", rand(3, 5))
        c("pinv_rank_deficient", "linalg_pinv", "-", rand(4, 2) @ rand(2, 3))
        c("lstsq_tall", "linalg_lstsq", "-", rand(2, 6, 3), rand(2, 6, 2))
        c("lstsq_broadcast", "linalg_lstsq", "-", rand(1, 5, 4), rand(3, 5, 1))
        c("matrix_rank", "linalg_matrix_rank", "0",
          torch.stack([rand(4, 2) @ rand(2, 5), rand(4, 5), torch.zeros(4, 5, dtype=torch.float64)]))
        c("matrix_power_3", "linalg_matrix_power", "3", rand(2, 3, 3) / 2)
        c("matrix_power_-2", "linalg_matrix_power", "-2", invertible(4, 4))
        c("matrix_power_0", "linalg_matrix_power", "0", rand(2, 3, 3))
        c("matrix_power_1", "linalg_matrix_power", "1", rand(3, 3))
        c("cross_last", "linalg_cross", "-1", rand(4, 3), rand(4, 3))
        c("cross_broadcast_dim0", "linalg_cross", "0", rand(3, 1, 2), rand(3, 4, 1))
        c("vecdot_last", "linalg_vecdot", "-1", rand(2, 5), rand(2, 5))
        c("vecdot_broadcast", "linalg_vecdot", "0", rand(4, 1), rand(4, 3))
        c("vector_norm_2_all", "linalg_vector_norm", "2:all:0", rand(3, 4))
        c("vector_norm_3_dims", "linalg_vector_norm", "3:0,2:1", rand(2, 3, 4))
        c("vector_norm_1_zeros", "linalg_vector_norm", "1:-1:0", torch.tensor([[0.0, 1.5, -2.0], [0.0, 0.0, 0.0]]))
        c("vector_norm_2_zero_row", "linalg_vector_norm", "2:1:0", torch.tensor([[0.0, 0.0], [3.0, -4.0]]))
        c("vector_norm_inf_ties", "linalg_vector_norm", "inf:all:0", torch.tensor([1.0, -3.0, 3.0, 2.0]))
        c("vector_norm_-inf", "linalg_vector_norm", "-inf:-1:1", rand(2, 5))
        c("vector_norm_0", "linalg_vector_norm", "0:all:0", torch.tensor([0.0, 1.0, -2.0, 0.0]))
        c("vector_norm_0.5", "linalg_vector_norm", "0.5:0:0", rand(4, 3))
        c("vector_norm_-1.5", "linalg_vector_norm", "-1.5:-1:0", rand(3, 4))
        c("vector_norm_1.5_with_zero", "linalg_vector_norm", "1.5:all:0", torch.tensor([0.0, 2.0, -1.0]))
        c("vector_norm_empty", "linalg_vector_norm", "2:-1:0", rand(3, 0))
        c("matrix_norm_fro", "linalg_matrix_norm", "fro:0", rand(2, 3, 4))
        c("matrix_norm_nuc", "linalg_matrix_norm", "nuc:1", rand(3, 4))
        c("matrix_norm_2", "linalg_matrix_norm", "2:0", rand(2, 4, 3))
        c("matrix_norm_-2", "linalg_matrix_norm", "-2:0", rand(3, 3))
        c("matrix_norm_1", "linalg_matrix_norm", "1:0", rand(2, 3, 4))
        c("matrix_norm_-1", "linalg_matrix_norm", "-1:1", rand(3, 4))
        c("matrix_norm_inf", "linalg_matrix_norm", "inf:0", rand(4, 3))
        c("matrix_norm_-inf", "linalg_matrix_norm", "-inf:0", rand(2, 2, 5))
        c("matrix_rank_hermitian", "linalg_matrix_rank", "1", symmetric(2, 3, 3))
    # det of a singular matrix (rank 2): PyTorch's gradient is the cofactor matrix
    u = rand(3, 2)
    case(lines, "det_singular/f64", "linalg_det", "f64", "-", [u @ rand(2, 3)])
    # later cases (after all the others, whose random inputs stay as they were)
    for dtype in ("f64", "f32"):
        c = lambda name, fn, opt, *ins: case(lines, f"{name}/{dtype}", fn, dtype, opt, list(ins))
        c("qr_complete_tall", "linalg_qr", "complete", rand(2, 5, 3))
        c("qr_complete_wide", "linalg_qr", "complete", rand(3, 4))
        c("qr_r", "linalg_qr", "r", rand(2, 4, 3))
        c("svd_full_tall", "linalg_svd", "1", rand(2, 4, 3))
        c("svd_full_wide", "linalg_svd", "1", rand(3, 4))
        c("svd_full_square", "linalg_svd", "1", rand(3, 3))
        c("vector_norm_0.5_with_zero", "linalg_vector_norm", "0.5:all:0", torch.tensor([0.0, 2.0, -1.0]))
        c("vector_norm_-1.5_with_zero", "linalg_vector_norm", "-1.5:all:0", torch.tensor([0.0, 2.0, -1.0]))
        # A full matrix: the op reads one triangle (the other holds values it must ignore)
        c("solve_triangular_lower", "linalg_solve_triangular", "0:1:0", invertible(2, 4, 4), rand(2, 4, 3))
        c("solve_triangular_upper_broadcast", "linalg_solve_triangular", "1:1:0", invertible(3, 3), rand(2, 3, 1))
        c("solve_triangular_unit", "linalg_solve_triangular", "0:1:1", invertible(2, 1, 3, 3), rand(3, 3, 2))
        c("solve_triangular_right", "linalg_solve_triangular", "1:0:0", invertible(4, 4), rand(2, 4))
        c("solve_triangular_right_unit_lower", "linalg_solve_triangular", "0:0:1", rand(3, 3), rand(5, 3))
        c("solve_triangular_1x1", "linalg_solve_triangular", "1:1:0", invertible(1, 1), rand(1, 2))
        c("solve_triangular_empty_batch", "linalg_solve_triangular", "0:1:0", invertible(0, 2, 2), rand(0, 2, 3))
    head = ("# torch.linalg fixtures: PyTorch %s.  Regenerate with\n"
            "#     /usr/bin/python3 scripts/gen_linalg_fixtures.py\n"
            "# Format: see the script's docstring.  %d cases.\n") % (torch.__version__,
                                                                      sum(1 for l in lines if l.startswith("case")))
    with open(OUT, "w") as f:
        f.write(head)
        f.writelines(lines)


if __name__ == "__main__":
    main()
