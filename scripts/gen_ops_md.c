/*
 * gen_ops_md.c - writes docs/ops.md, the op reference, from the op registry.
 *
 *   gen_ops_md              prints the reference on stdout
 *   gen_ops_md --check F    TAP test: F is exactly what would be printed
 *
 * Everything in the reference comes from the registration rows (ag_op) that
 * ops/registry.c lists and, for the shapes an op is tested on, its test row
 * (test/cases/), except the PyTorch equivalent and the other public
 * functions that record the same node, which the registry does not carry:
 * those are the small table `extra` below (the PyTorch name defaults to
 * torch.<name>).  Regenerate after adding or changing an op:
 *
 *   ninja -C build && ./build/scripts/gen_ops_md > docs/ops.md
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test/cases/op_cases.h"
#include "agrad/agrad.h"
#include "core/internal.h"
#include "ops/registry.h"
#include "test/tap.h"

#define REGENERATE "ninja -C build && ./build/scripts/gen_ops_md > docs/ops.md"

/* What the registry does not say: the public function when it is not ag_<name>,
 * the PyTorch spelling when it is not torch.<name>, and further ag_ functions
 * whose result is this op's node.  `gen_ops_md --check` verifies that every
 * function named here is declared in include/agrad/. */
static const struct extra {
    const char *op, *c, *torch, *also;
} extra[] = {
    {.op = "add_scalar", .torch = "`x + s`"},
    {.op = "sub_scalar", .torch = "`x - s`"},
    {.op = "rsub_scalar", .torch = "`s - x`"},
    {.op = "mul_scalar", .torch = "`x * s`"},
    {.op = "div_scalar", .torch = "`x / s`"},
    {.op = "rdiv_scalar", .torch = "`s / x`"},
    {.op = "pow_scalar", .torch = "`x ** e`"},
    {.op = "rpow_scalar", .torch = "`s ** x`"},
    {.op = "sum", .also = "`ag_sum_dims`, `ag_sum_dim`"},
    {.op = "mean", .also = "`ag_mean_dims`, `ag_mean_dim`"},
    {.op = "var", .also = "`ag_var_dims`"},
    {.op = "std", .also = "`ag_std_dims`"},
    {.op = "logsumexp", .c = "ag_logsumexp_dims"},
    {.op = "max_dim", .torch = "`torch.max(x, dim).values`"},
    {.op = "min_dim", .torch = "`torch.min(x, dim).values`"},
    {.op = "prod_dim", .torch = "`torch.prod(x, dim)`"},
    {.op = "median_dim", .torch = "`torch.median(x, dim)`"},
    {.op = "unique_dim", .torch = "`torch.unique(x, dim=dim)`"},
    {.op = "gather", .also = "`ag_take_along_dim` (expand, then gather)"},
    {.op = "kthvalue", .also = "`ag_mode` (counted, then gather)"},
    {.op = "any", .also = "`ag_any_dim`"},
    {.op = "all", .also = "`ag_all_dim`"},
    {.op = "sort", .torch = "`torch.sort(x, dim, descending, stable=True)`"},
    {.op = "linear", .torch = "`torch.nn.functional.linear`"},
    {.op = "cdist_p", .c = "ag_cdist", .torch = "`torch.cdist(x1, x2, p)` (p ≠ 2, or 2 with 25 rows or fewer)"},
    {.op = "attention_packed", .c = "ag_nn_multihead_attention",
     .torch = "`nn.MultiheadAttention`'s self-attention on its packed projection, no mask or dropout (one op)"},
    {.op = "linear_relu", .torch = "`torch.relu(torch.nn.functional.linear(x, W, b))` (one op)"},
    {.op = "batch_norm_relu", .torch = "`torch.relu(torch.batch_norm(x, w, b, rm, rv, training, momentum, eps))` (one op)"},
    {.op = "batch_norm_relu_dropout", .torch = "`torch.dropout(torch.relu(torch.batch_norm(x, w, b, rm, rv, training, momentum, eps)), p, training)` (one op)"},
    {.op = "clamp_tensor", .torch = "`torch.clamp(x, min, max)` (tensor bounds)"},
    {.op = "matmul", .also = "`ag_bmm`, `ag_outer`, `ag_addmm` and `ag_baddbmm` (with `ag_mul_scalar`, `ag_add`); `ag_einsum`, `ag_tensordot` (with permute, reshape, sum, diagonal)"},
    {.op = "reshape", .torch = "`torch.reshape`, `Tensor.view`", .also = "`ag_view`, `ag_flatten`, `ag_squeeze_all`"},
    {.op = "permute", .also = "`ag_transpose`, `ag_t`, `ag_movedim`, `ag_squeeze` of a dim whose size is not 1"},
    {.op = "slice", .torch = "`x[..., start:end:step]`", .also = "`ag_narrow`, `ag_split`, `ag_chunk` (one view per piece)"},
    {.op = "select", .torch = "`torch.select`, `x[..., i]`"},
    {.op = "expand", .torch = "`Tensor.expand`"},
    {.op = "clone", .also = "`ag_contiguous` (of a non-contiguous tensor)"},
    {.op = "diag_embed", .also = "`ag_diag` of a 1-D tensor"},
    {.op = "diagonal", .also = "`ag_diag` of a 2-D tensor (then cloned)"},
    {.op = "to_dtype", .torch = "`Tensor.to(dtype)`"},
    {.op = "one_hot", .torch = "`torch.nn.functional.one_hot`"},
    {.op = "scatter_value", .torch = "`torch.scatter(x, dim, index, value)`"},
    {.op = "nonzero", .also = "`ag_argwhere`"},
    {.op = "unique", .torch = "`torch.unique(x, sorted=True, return_inverse, return_counts)`"},
    {.op = "repeat", .torch = "`Tensor.repeat`, `torch.tile`", .also = "`ag_tile`"},
    {.op = "repeat_interleave", .also = "`ag_repeat_interleave_tensor`"},
    {.op = "binary_cross_entropy", .torch = "`torch.nn.functional.binary_cross_entropy` (elementwise term)"},
    {.op = "binary_cross_entropy_with_logits", .c = "ag_binary_cross_entropy_with_logits",
     .torch = "`torch.nn.functional.binary_cross_entropy_with_logits` (elementwise term, no pos_weight)"},
    {.op = "binary_cross_entropy_with_logits_pos_weight", .c = "ag_binary_cross_entropy_with_logits",
     .torch = "`torch.nn.functional.binary_cross_entropy_with_logits` (elementwise term, pos_weight)"},
    {.op = "poisson_nll_loss", .c = "ag_poisson_nll_loss",
     .torch = "`torch.nn.functional.poisson_nll_loss` (elementwise term, log_input; full)"},
    {.op = "poisson_nll_loss_rate", .c = "ag_poisson_nll_loss",
     .torch = "`torch.nn.functional.poisson_nll_loss` (elementwise term, log_input=False; full)"},
    {.op = "kl_div", .c = "ag_kl_div", .torch = "`torch.nn.functional.kl_div` (elementwise term, target probabilities)"},
    {.op = "kl_div_log_target", .c = "ag_kl_div", .torch = "`torch.nn.functional.kl_div` (elementwise term, log_target)"},
    {.op = "huber", .c = "ag_huber_loss", .also = "`ag_smooth_l1_loss` (k = β, c = 1/(2β))",
     .torch = "`torch.nn.functional.huber_loss` (elementwise term of input and target, c = 1/2)"},
    {.op = "cross_entropy", .torch = "`torch.nn.functional.cross_entropy` ([N, C], class indices)"},
    {.op = "conv2d", .torch = "`torch.nn.functional.conv2d`", .also = "`ag_conv1d` (over a height of 1)"},
    {.op = "conv2d_weight", .torch = "`torch.nn.grad.conv2d_weight`"},
    {.op = "max_pool2d", .torch = "`torch.nn.functional.max_pool2d`", .also = "`ag_max_pool1d`"},
    {.op = "avg_pool2d", .torch = "`torch.nn.functional.avg_pool2d`", .also = "`ag_avg_pool1d`"},
    {.op = "adaptive_avg_pool2d", .torch = "`torch.nn.functional.adaptive_avg_pool2d`"},
    {.op = "adaptive_max_pool2d", .torch = "`torch.nn.functional.adaptive_max_pool2d`"},
    {.op = "max_unpool2d", .torch = "`torch.nn.functional.max_unpool2d`"},
    {.op = "avg_pool2d_backward", .torch = "`torch.ops.aten.avg_pool2d_backward`"},
    {.op = "adaptive_avg_pool2d_backward", .torch = "`torch.ops.aten._adaptive_avg_pool2d_backward`"},
    {.op = "pad", .torch = "`torch.nn.functional.pad`"},
    {.op = "interpolate", .torch = "`torch.nn.functional.interpolate`"},
    {.op = "conv_transpose2d", .torch = "`torch.nn.functional.conv_transpose2d`",
     .also = "`ag_conv_transpose1d` (over a height of 1)"},
    {.op = "leaky_relu", .torch = "`torch.nn.functional.leaky_relu`"},
    {.op = "elu", .torch = "`torch.nn.functional.elu`"},
    {.op = "softplus", .torch = "`torch.nn.functional.softplus`"},
    {.op = "gelu", .torch = "`torch.nn.functional.gelu`"},
    {.op = "gelu_tanh", .torch = "`torch.nn.functional.gelu(x, approximate='tanh')`"},
    {.op = "silu", .torch = "`torch.nn.functional.silu`"},
    {.op = "mish", .torch = "`torch.nn.functional.mish`"},
    {.op = "hardtanh", .torch = "`torch.nn.functional.hardtanh`, `torch.nn.functional.relu6`", .also = "`ag_relu6`"},
    {.op = "hardsigmoid", .torch = "`torch.nn.functional.hardsigmoid`"},
    {.op = "hardswish", .torch = "`torch.nn.functional.hardswish`"},
    {.op = "softsign", .torch = "`torch.nn.functional.softsign`"},
    {.op = "linalg_solve", .torch = "`torch.linalg.solve`"},
    {.op = "linalg_solve_triangular", .torch = "`torch.linalg.solve_triangular`"},
    {.op = "linalg_inv", .torch = "`torch.linalg.inv`"},
    {.op = "linalg_det", .torch = "`torch.linalg.det`"},
    {.op = "linalg_slogdet", .torch = "`torch.linalg.slogdet`"},
    {.op = "linalg_cholesky", .torch = "`torch.linalg.cholesky`"},
    {.op = "linalg_eigh", .torch = "`torch.linalg.eigh`"},
    {.op = "linalg_eigvalsh", .torch = "`torch.linalg.eigvalsh`"},
    {.op = "linalg_vector_norm", .torch = "`torch.linalg.vector_norm`, `torch.linalg.matrix_norm`", .also = "`ag_linalg_matrix_norm` (built on it, svdvals, max/min)"},
    {.op = "linalg_qr", .torch = "`torch.linalg.qr`"},
    {.op = "linalg_svd", .torch = "`torch.linalg.svd`, `torch.linalg.svdvals`", .also = "`ag_linalg_svdvals`"},
    {.op = "linalg_pinv", .torch = "`torch.linalg.pinv`, `torch.linalg.lstsq(A, B).solution`", .also = "`ag_linalg_lstsq` (pinv(A)·B)"},
    {.op = "binary_step", .torch = "— (not in PyTorch; forward as `torch.heaviside(x, 0)`)"},
};

static const struct extra *extra_of(const char *name) {
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        if (strcmp(extra[i].op, name) == 0) return &extra[i];
    return NULL;
}

/* s with '|' escaped, for a table cell. */
static void cell(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n && s[i]; i++) {
        if (s[i] == '|') fputc('\\', f);
        fputc(s[i], f);
    }
}

/* `s` as a code span in a cell. */
static void code_cell(FILE *f, const char *s, size_t n) {
    fputc('`', f);
    cell(f, s, n);
    fputc('`', f);
}

static void saves_cell(FILE *f, unsigned saves) {
    static const char *const names[] = {"in0", "in1", "in2", "out"};
    int k = 0;
    for (int b = 0; b < 4; b++)
        if (saves >> b & 1) fprintf(f, "%s%s", k++ ? ", " : "", names[b]);
    if (!k) fputs("—", f);
}

static void cases_cell(FILE *f, const ag_op *op) {
    const ag_op_test *row = ag_test_case_for(op);
    if (!op->backward || !row || row->cases[0].n == 0) {
        fputs("—", f);
        return;
    }
    for (int c = 0; c < 4 && row->cases[c].n > 0; c++) {
        if (c) fputs("; ", f);
        for (int i = 0; i < row->cases[c].n; i++) {
            char s[AG_SHAPE_STR];
            fprintf(f, "%s%s", i ? " × " : "", ag__shape_str(s, row->cases[c].shape[i].ndim, row->cases[c].shape[i].dim));
        }
    }
}

/* The tangent of input v written with a dot (ẋ for x), or NULL for a name
 * outside the elementwise families' inputs. */
static const char *dotted(char v) {
    switch (v) {
    case 'x': return "ẋ";
    case 'a': return "ȧ";
    case 'b': return "ḃ";
    case 'c': return "ċ";
    case 't': return "ṫ";
    case 'p': return "ṗ";
    default: return NULL;
    }
}

static bool ident_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

/* An elementwise row's tangent from its adjoint "dv = E(dy),  dw = F(dy), ...": each
 * adjoint is dy times the local derivative, so the tangent is ẏ = E(v̇) + F(ẇ) + ...
 * (dy replaced by each input's tangent; zero terms dropped; a term with spaces in
 * parentheses when there are several).  Writes it into buf; false if the adjoint is
 * not of that form. */
static bool derived_tangent(const ag_op *op, char *buf, size_t n) {
    const char *sep = strstr(op->math, ";  ");
    for (const char *next = sep; next; next = strstr(sep + 1, ";  ")) sep = next;
    if (!sep) return false;
    char term[3][512];
    bool spaced[3];
    int terms = 0;
    for (const char *p = sep + 3; *p;) {
        const char *dot = p[0] == 'd' && p[1] && p[2] == ' ' && p[3] == '=' && p[4] == ' ' ? dotted(p[1]) : NULL;
        if (!dot || terms == 3) return false;
        p += 5;
        const char *end = strstr(p, ",  ");
        size_t elen = end ? (size_t)(end - p) : strlen(p), t = 0;
        bool uses_dy = false;
        spaced[terms] = false;
        for (size_t i = 0; i < elen && t + 8 < sizeof term[0]; i++) {
            if (p[i] == 'd' && i + 1 < elen && p[i + 1] == 'y' && (i == 0 || !ident_char(p[i - 1])) &&
                (i + 2 >= elen || !ident_char(p[i + 2]))) {
                t += (size_t)snprintf(term[terms] + t, sizeof term[0] - t, "%s", dot);
                i++;
                uses_dy = true;
            } else {
                spaced[terms] |= p[i] == ' ';
                term[terms][t++] = p[i];
            }
        }
        term[terms][t] = '\0';
        if (uses_dy) terms++;
        else if (strcmp(term[terms], "0") != 0) return false; /* not linear in dy */
        p += elen + (end ? 3 : 0);
    }
    size_t len = (size_t)snprintf(buf, n, "ẏ = %s", terms ? "" : "0");
    for (int k = 0; k < terms && len < n; k++) {
        const char *s = term[k];
        const char *fmt = terms > 1 && spaced[k] ? "%s(%s)" : "%s%s";
        const char *join = k == 0 ? "" : " + ";
        if (k > 0 && s[0] == '-' && !spaced[k]) join = " - ", s++;
        len += (size_t)snprintf(buf + len, n - len, fmt, join, s);
    }
    return len < n;
}

/* The public function that records op's node. */
static void c_name(const ag_op *op, char *buf, size_t n) {
    const struct extra *x = extra_of(op->name);
    if (x && x->c) snprintf(buf, n, "%s", x->c);
    else snprintf(buf, n, "ag_%s", op->name);
}

static void row(FILE *f, const ag_op *op) {
    const struct extra *x = extra_of(op->name);
    char fn[128];
    c_name(op, fn, sizeof fn);
    fprintf(f, "| %s | `%s`", op->name, fn);
    if (x && x->also) fprintf(f, ", %s", x->also);
    fputs(" | ", f);
    if (x && x->torch) fputs(x->torch, f);
    else fprintf(f, "`torch.%s`", op->name);
    fprintf(f, " | %s | ", op->grad_fn ? op->grad_fn : "—");
    /* The adjoint follows the last ";  " (a forward may take two statements). */
    const char *sep = strstr(op->math, ";  ");
    for (const char *next = sep; next; next = strstr(sep + 1, ";  ")) sep = next;
    if (sep) {
        code_cell(f, op->math, (size_t)(sep - op->math));
        fputs(" | ", f);
        code_cell(f, sep + 3, strlen(sep + 3));
    } else {
        code_cell(f, op->math, strlen(op->math));
        fputs(" | ", f);
    }
    fprintf(f, " | %s | ", op->backward ? "yes" : "no");
    /* beyond first order: the adjoint in differentiable ops (create_graph) and the tangent rule */
    if (op->backward) {
        fprintf(f, "%s | ", op->backward_graph ? "yes" : "not yet");
        char derived[1024];
        if (!op->jvp) fputs("not yet", f);
        else if (op->tangent) code_cell(f, op->tangent, strlen(op->tangent));
        else if (derived_tangent(op, derived, sizeof derived)) code_cell(f, derived, strlen(derived));
        else fputs("(no tangent string)", f);
        fputs(" | ", f);
    } else fputs("— | — | ", f);
    saves_cell(f, op->saves);
    fputs(" | ", f);
    cases_cell(f, op);
    fputs(" |\n", f);
}

/* The families in registry order, each with its number of ops. */
static int families(const char **name, int *count, int max) {
    int nf = 0;
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        const char *fam = ag__op_family(op);
        if (nf == 0 || strcmp(name[nf - 1], fam) != 0) {
            if (nf == max) break;
            name[nf] = fam;
            count[nf++] = 0;
        }
        count[nf - 1]++;
    }
    return nf;
}

static void generate(FILE *f) {
    const char *fam[64];
    int count[64], total = 0, differentiable = 0;
    int nf = families(fam, count, 64);
    const ag_op *op;
    for (int i = 0; (op = ag__op_at(i)); i++) {
        total++;
        differentiable += op->backward != NULL;
    }
    fputs("# Op reference\n\n"
          "<!-- Generated by scripts/gen_ops_md.c from the op registry; do not edit by hand.\n"
          "     Regenerate with: " REGENERATE " -->\n\n", f);
    fprintf(f, "%d ops in %d families, %d of them differentiable.  Each row is one registration\n"
               "(`ag_op`) in `ops/<family>.c`; its test row in `test/cases/<family>.c` drives\n"
               "`test/test_ops_gradcheck.c`.\n\n",
            total, nf, differentiable);
    fputs("How to read the table:\n\n"
          "- **C function**: the public function that records this node (declared in\n"
          "  `include/agrad/ops.h` or `include/agrad/tensor.h`); the functions listed after it\n"
          "  record the same node.\n"
          "- **grad_fn**: what `ag_grad_fn_name` returns for the output, PyTorch's name for the same node\n"
          "  (— for ops that record nothing).\n"
          "- **forward** / **adjoint**: `y` is the output, `dy` the incoming gradient dL/dy, `dx`, `da`, `db`\n"
          "  what the adjoint adds to each input's gradient.  A gradient computed over a broadcast shape\n"
          "  is summed back to the input's shape.  Unary rows are the C expressions of their X-macro row\n"
          "  in `ops/unary.c`, evaluated in the tensor's dtype: `a` and `b` are the op's scalar\n"
          "  parameters (the `s` or `e` of the `*_scalar` ops, the bounds of `clamp` and `hardtanh`,\n"
          "  the options of the activations); `SGN`, `SIGMOID`, `TWO_OVER_SQRT_PI`, `SOFTPLUS`, `PHI`,\n"
          "  `PDF`, `GELU_U`, `GELU_DU`, `MISH_T`, `SELU_SCALE` and `SELU_NEG` are macros of that file;\n"
          "  `EXPM1_V`, `LOG1P_V`, `EXP_NEG` (x <= 0), `SIGMOID_V`, `SOFTPLUS_V`, `SINH_V`, `COSH_V`,\n"
          "  `ATAN_V`, `ASIN_V`, `ACOS_V`, `ASINH_V`, `ACOSH_V`, `ATANH_V`, `TANH_V`, `ERF_V`, `ERFC_V`,\n"
          "  `LOG2_V`, `LOG10_V`, `EXP2_V`, `TAN_V`, `SIN_V`, `COS_V`, `EXP_NEG_SQ`, `MISH_V`,\n"
          "  `MISH_D` and (binary) `ATAN2_V` are expm1,\n"
          "  log1p, exp, `SIGMOID`, `SOFTPLUS`, sinh, cosh, atan, asin, acos, asinh, acosh, atanh, tanh,\n"
          "  erf, erfc, log2, log10, exp2, tan, sin, cos, exp(-x * x),\n"
          "  `x * MISH_T(x)`, mish's derivative `MISH_T(x) + x * SIGMOID(x) * (1 - MISH_T(x) * MISH_T(x))`\n"
          "  and atan2: libm's in float64, in float32 polynomials that vectorise (ops/vmathf.h,\n"
          "  ops/vexpf.h), worst errors over a dense sweep of float32 (every 97th bit pattern): expm1\n"
          "  1.7 ulps, log1p 0.8, exp 1.0, sigmoid 2.3, softplus 1.6, sinh 1.9, cosh 1.4, atan 2.0,\n"
          "  asin 2.4, acos 1.1, asinh 1.6, acosh 2.2, atanh 2.0, tanh 1.5, erf 1.2, erfc 4.1, mish 4.6, log2\n"
          "  1.8, log10 1.9, atan2 2.1, exp2 1.2 and tan 0.8 (every 7th), sin 0.52 and cos 0.52\n"
          "  (every 4099th)\n"
          "  (libm's 0.5; test/test_vmathf.c checks the bounds); `EXPM1_LE20` is `EXPM1_V` for an\n"
          "  argument at most 20 (elu's and selu's x <= 0; float32 vexpm1f's bits without its e^x branch)\n"
          "  (the activations are described in [nn-activations.md](nn-activations.md)); `PI`, `LN2`,\n"
          "  `LN10` and `HALF_SQRT_PI` constants; `LOGIT_Z(x)` logit's input clamped to [a, 1 - a]\n"
          "  (as it is when a < 0); `c` nan_to_num's third parameter; `lgamma`, `digamma`, `polygamma`,\n"
          "  `trigamma` and `erfinv` the functions of `ops/special.c` in float64 (and polygamma in\n"
          "  float32), in float32 polynomials that vectorise (ops/vmathf.h: lgamma within 8 ulps, absolute\n"
          "  for x < 0; digamma 4.4, absolute near its zeros; trigamma 6.1; erfinv 3.5), `EXP_SQ(y)`\n"
          "  exp(y * y).  Binary and ternary rows\n"
          "  likewise (`ops/binary.c`, `ops/ternary.c`: inputs `a`, `b`, `c`); `MAX(a, b)` is\n"
          "  `a < b ? b : a`, `REM_FLOOR` and `DIV_FLOOR` Python's `%` and `//`; `HYPOT` is hypot (in\n"
          "  float32 glibc's hypotf computed in double: its bits), `LOG1P_EXP(x)` log1p(exp(x)) and\n"
          "  `DIV_1P_EXP(u, x)` u / (1 + exp(x)), in float32 through the polynomials (within 4 ulps of\n"
          "  max(|a|, |b|, ln 2) and 8 ulps: test/test_elementwise.c).  `EXP_V`, `LOG_V`, `POW_V` and\n"
          "  `RPOW_V` (unary and binary rows) are exp, log and pow: libm's in float64, in float32\n"
          "  vexpf (any x), vlogf (within 1 ulp) and vpowf (0.5 ulps), loops that vectorise.  `SINC_V(x)`\n"
          "  and `SINC_D(x, dy)` are sinc and its adjoint, `x == 0 ? 1 : sin(PI * x) / (PI * x)` and\n"
          "  `x == 0 ? 0 : dy * (PI * x * cos(PI * x) - sin(PI * x)) / (x * x * PI)`: in float64 libm's\n"
          "  on the rounded `PI * x` (the adjoint 0 where `x * x * PI` is 0), in float32 vsincf and\n"
          "  vsinc_gradf (ops/vmathf.h), loops that vectorise: x reduced exactly modulo 1/2, sin and cos\n"
          "  of π times the rest by polynomials in double, so sinc is within 0.501 ulps of the exact\n"
          "  value at every x (+0 at the integers) and the adjoint within 0.501 ulps of the larger of its\n"
          "  two terms (of itself for |x| <= 1/4; session 22).\n", f);
    fputs("- **differentiable**: `no` means the op has no adjoint (`backward` is NULL) and records\n"
          "  nothing: no gradient flows through it.\n"
          "- **2nd order**: whether the row has a `backward_graph` (its adjoint in differentiable ops:\n"
          "  create_graph records it, so it can be differentiated again); elementwise rows get it from\n"
          "  their `D(...)` column of local derivatives (docs/design.md#adding-an-op, docs/higher-order.md).\n"
          "- **tangent**: the forward-mode tangent rule (`jvp`, docs/forward-mode.md) in maths.  A dot\n"
          "  marks a tangent: `ẋ` is the tangent of the input `x` (`ȧ`, `ḃ`, `Ȧ`, `ṡrc`, ... likewise),\n"
          "  `ẏ` the tangent of the output, and an input without one counts as 0.  Other rows write the\n"
          "  rule as the row's `tangent` string; elementwise rows (unary, binary, ternary,\n"
          "  binary_cross_entropy) derive it from their adjoint, each adjoint being `dy` times a local\n"
          "  derivative: `dy` replaced by each input's tangent, the terms summed (ẏ = ẋ·∂y/∂x, or\n"
          "  ȧ·∂y/∂a + ḃ·∂y/∂b).  `not yet`: on the pending list of `test_ops_gradgradcheck` or\n"
          "  `test_ops_jvp`; create_graph or forward mode through the op fails with an error naming it.\n"
          "- **adjoint reads**: the tensors the adjoint reads (`AG_SAVES_*`): inputs `in0`, `in1`, `in2`\n"
          "  and the output `out`.  Changing one of them in place between the forward and `ag_backward`\n"
          "  makes backward fail with `AG_ERR_GRAPH` (version check).\n"
          "- **tested on**: the input shapes on which `test_ops_gradcheck` checks a differentiable op\n"
          "  in float64 (contiguous and non-contiguous) and compares its float32 forward with float64\n"
          "  (the shapes of its test row); — when it does not (no adjoint).\n\n", f);
    fputs("Families, in registry order:\n\n", f);
    for (int k = 0; k < nf; k++)
        fprintf(f, "- [%s](#%s) (%d)\n", fam[k], fam[k], count[k]);
    for (int k = 0; k < nf; k++) {
        fprintf(f, "\n## %s\n\n`ops/%s.c`, table `ag__%s_ops`.\n\n", fam[k], fam[k], fam[k]);
        fputs("| op | C function | PyTorch | grad_fn | forward | adjoint | differentiable | 2nd order | tangent | "
              "adjoint reads | tested on |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n", f);
        for (int i = 0; (op = ag__op_at(i)); i++)
            if (strcmp(ag__op_family(op), fam[k]) == 0) row(f, op);
    }
}

/* The whole file at path in a malloc'ed string, or NULL. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *g = realloc(s, cap *= 2);
            if (!g) free(s);
            s = g;
        }
    }
    fclose(f);
    if (s) s[len] = '\0';
    return s;
}

/* Reports the first line where the committed file and the generated text differ. */
static void first_difference(const char *have, const char *want) {
    int line = 1;
    const char *h = have, *w = want;
    while (*h && *h == *w) {
        if (*h == '\n') line++;
        h++, w++;
    }
    while (h > have && h[-1] != '\n') h--;
    while (w > want && w[-1] != '\n') w--;
    diag("first difference at line %d:", line);
    diag("  committed: %.*s", (int)strcspn(h, "\n"), h);
    diag("  generated: %.*s", (int)strcspn(w, "\n"), w);
}

/* True if headers declare the function fn ("*fn(" or " fn("). */
static bool declared(const char *headers, const char *fn) {
    char ptr[160], plain[160];
    snprintf(ptr, sizeof ptr, "*%s(", fn);
    snprintf(plain, sizeof plain, " %s(", fn);
    return headers && (strstr(headers, ptr) || strstr(headers, plain));
}

/* The text of the public headers that declare ops, found from the path of docs/ops.md. */
static char *public_headers(const char *docs_path) {
    static const char *const names[] = {"ops.h", "linalg.h", "tensor.h", "nn.h", "loss.h"};
    char root[4096], path[4200];
    snprintf(root, sizeof root, "%s", docs_path);
    char *cut = strstr(root, "docs/ops.md");
    if (!cut) return NULL;
    *cut = '\0';
    char *all = calloc(1, 1);
    for (size_t i = 0; all && i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%sinclude/agrad/%s", root, names[i]);
        char *text = slurp(path);
        char *grown = text ? realloc(all, strlen(all) + strlen(text) + 1) : NULL;
        if (grown) strcat(grown, text);
        else free(all);
        all = grown;
        free(text);
    }
    return all;
}

/* Checks that op's function and every `ag_...` of its extra row are declared. */
static void check_names(const ag_op *op, const char *headers) {
    char fn[128];
    c_name(op, fn, sizeof fn);
    bool found = declared(headers, fn);
    const struct extra *x = extra_of(op->name);
    for (const char *p = x && x->also ? strstr(x->also, "`ag_") : NULL; p; p = strstr(p + 1, "`ag_")) {
        char also[128];
        snprintf(also, sizeof also, "%.*s", (int)strcspn(p + 1, "`"), p + 1);
        if (!declared(headers, also)) {
            diag("%s is not declared in the public headers", also);
            found = false;
        }
    }
    ok(found, "op %s: %s and the functions listed with it are public", op->name, fn);
}

static int check(const char *path) {
    const ag_op *op, *other;
    char *headers = public_headers(path);
    ok(headers != NULL, "the public headers are readable next to %s", path);
    for (int i = 0; (op = ag__op_at(i)); i++) {
        bool unique = true;
        for (int j = 0; (other = ag__op_at(j)); j++) unique &= j == i || strcmp(other->name, op->name) != 0;
        bool grad_fn = op->backward ? op->grad_fn && *op->grad_fn : !op->grad_fn;
        ok(unique && grad_fn && op->math && strstr(op->math, ";  ") && ag__op_family(op),
           "op %s: unique name, a grad_fn if and only if differentiable, a math line \"y = ...;  ...\"", op->name);
        check_names(op, headers);
        char derived[1024];
        bool tangent = op->jvp ? op->tangent || (op->partial && derived_tangent(op, derived, sizeof derived))
                               : !op->tangent;
        ok(tangent, "op %s: a tangent rule has its formula (the row's tangent string, or derived from "
                    "an elementwise row's adjoint), and only a tangent rule has one", op->name);
    }
    free(headers);
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    if (mem) {
        generate(mem);
        fclose(mem);
    }
    char *have = slurp(path);
    bool fresh = have && buf && strcmp(have, buf) == 0;
    ok(fresh, "%s is what scripts/gen_ops_md.c generates from the registry", path);
    if (!have) diag("cannot read %s", path);
    else if (!fresh && buf) first_difference(have, buf);
    if (!fresh) diag("docs/ops.md is stale; regenerate it from the source root with:  " REGENERATE);
    free(have);
    free(buf);
    ok(ag_live_tensors() == 0, "no tensor is alive (%ld)", ag_live_tensors());
    return tap_done();
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--check") == 0) return check(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--check docs/ops.md]\n", argv[0]);
        return 2;
    }
    generate(stdout);
    return ferror(stdout) ? 1 : 0;
}
