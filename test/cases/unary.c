/*
 * unary.c - the test rows of the unary family (ops/unary.c): each op on a
 * [3, 4], a 0-d, a [2, 3, 2] and an empty [0, 3] input, through its public function with the
 * row's scalar arguments a, b.
 */
#include <math.h>
#include "test/cases/op_cases.h"

#define ANY AG_DOMAIN_ANY
#define POS AG_DOMAIN_POSITIVE
#define UNIT AG_DOMAIN_UNIT
#define PROB AG_DOMAIN_PROBABILITY

/* X(name, domain, a, b, the call of x with a and b) */
#define UNARY_CASES(X)                                          \
    X(neg, ANY, 0, 0, ag_neg(x))                                \
    X(exp, ANY, 0, 0, ag_exp(x))                                \
    X(log, POS, 0, 0, ag_log(x))                                \
    X(log1p, POS, 0, 0, ag_log1p(x))                            \
    X(expm1, ANY, 0, 0, ag_expm1(x))                            \
    X(sqrt, POS, 0, 0, ag_sqrt(x))                              \
    X(rsqrt, POS, 0, 0, ag_rsqrt(x))                            \
    X(square, ANY, 0, 0, ag_square(x))                          \
    X(reciprocal, ANY, 0, 0, ag_reciprocal(x))                  \
    X(abs, ANY, 0, 0, ag_abs(x))                                \
    X(sign, ANY, 0, 0, ag_sign(x))                              \
    X(sin, ANY, 0, 0, ag_sin(x))                                \
    X(cos, ANY, 0, 0, ag_cos(x))                                \
    X(tan, UNIT, 0, 0, ag_tan(x))                               \
    X(tanh, ANY, 0, 0, ag_tanh(x))                              \
    X(sigmoid, ANY, 0, 0, ag_sigmoid(x))                        \
    X(atan, ANY, 0, 0, ag_atan(x))                              \
    X(relu, ANY, 0, 0, ag_relu(x))                              \
    X(erf, ANY, 0, 0, ag_erf(x))                                \
    X(floor, ANY, 0, 0, ag_floor(x))                            \
    X(round, ANY, 0, 0, ag_round(x))                            \
    X(trunc, ANY, 0, 0, ag_trunc(x))                            \
    X(clamp, ANY, -1, 1, ag_clamp(x, a, b))                     \
    X(add_scalar, ANY, 1.5, 0, ag_add_scalar(x, a))             \
    X(sub_scalar, ANY, 1.5, 0, ag_sub_scalar(x, a))             \
    X(rsub_scalar, ANY, 1.5, 0, ag_rsub_scalar(a, x))           \
    X(mul_scalar, ANY, -2.5, 0, ag_mul_scalar(x, a))            \
    X(div_scalar, ANY, -2.5, 0, ag_div_scalar(x, a))            \
    X(rdiv_scalar, ANY, 1.5, 0, ag_rdiv_scalar(a, x))           \
    X(pow_scalar, POS, 2.5, 0, ag_pow_scalar(x, a))             \
    X(rpow_scalar, ANY, 1.7, 0, ag_rpow_scalar(a, x))           \
    X(leaky_relu, ANY, 0.2, 0, ag_leaky_relu(x, a))             \
    X(elu, ANY, 1.5, 0, ag_elu(x, a))                           \
    X(selu, ANY, 0, 0, ag_selu(x))                              \
    X(celu, ANY, 1.5, 0, ag_celu(x, a))                         \
    X(softplus, ANY, 1.5, 20, ag_softplus(x, a, b))             \
    X(gelu, ANY, 0, 0, ag_gelu(x))                              \
    X(gelu_tanh, ANY, 0, 0, ag_gelu_tanh(x))                    \
    X(silu, ANY, 0, 0, ag_silu(x))                              \
    X(mish, ANY, 0, 0, ag_mish(x))                              \
    X(hardtanh, ANY, 0, 2.5, ag_hardtanh(x, a, b))              \
    X(hardsigmoid, ANY, 0, 0, ag_hardsigmoid(x))                \
    X(hardswish, ANY, 0, 0, ag_hardswish(x))                    \
    X(softsign, ANY, 0, 0, ag_softsign(x))                      \
    X(binary_step, ANY, 0, 0, ag_binary_step(x))                \
    X(asin, UNIT, 0, 0, ag_asin(x))                             \
    X(acos, UNIT, 0, 0, ag_acos(x))                             \
    X(sinh, ANY, 0, 0, ag_sinh(x))                              \
    X(cosh, ANY, 0, 0, ag_cosh(x))                              \
    X(asinh, ANY, 0, 0, ag_asinh(x))                            \
    X(acosh, AG_DOMAIN_ABOVE_ONE, 0, 0, ag_acosh(x))            \
    X(atanh, UNIT, 0, 0, ag_atanh(x))                           \
    X(log2, POS, 0, 0, ag_log2(x))                              \
    X(log10, POS, 0, 0, ag_log10(x))                            \
    X(exp2, ANY, 0, 0, ag_exp2(x))                              \
    X(logit, PROB, 0.1, 0, ag_logit(x, a))                      \
    X(erfc, ANY, 0, 0, ag_erfc(x))                              \
    X(sinc, ANY, 0, 0, ag_sinc(x))                              \
    X(ceil, ANY, 0, 0, ag_ceil(x))                              \
    X(frac, ANY, 0, 0, ag_frac(x))                              \
    X(lgamma, POS, 0, 0, ag_lgamma(x))                          \
    X(digamma, POS, 0, 0, ag_digamma(x))                        \
    X(polygamma, POS, 2, 0, ag_polygamma(ag__to_i64(a), x))        \
    X(erfinv, UNIT, 0, 0, ag_erfinv(x))                         \
    X(nan_to_num, ANY, 0, 0, ag_nan_to_num(x, 0, NAN, NAN))

#define DEFINE_CALL(NAME, DOMAIN, A, B, EXPR)                                 \
    static ag_tensor *call_##NAME(ag_tensor *const *in, int n, void *ctx) {   \
        const ag_op_test *row = ctx;                                          \
        ag_tensor *x = in[0];                                                 \
        const double a = row->arg[0], b = row->arg[1];                        \
        (void)n, (void)a, (void)b;                                            \
        return EXPR;                                                          \
    }
UNARY_CASES(DEFINE_CALL)

#define ROW(NAME, DOMAIN, A, B, EXPR)                                                             \
    {.name = #NAME, .call = call_##NAME, .domain = DOMAIN,                                        \
     .cases = {{1, {AG_DIMS(3, 4)}}, {1, {AG_DIMS0}}, {1, {AG_DIMS(2, 3, 2)}}, {1, {AG_DIMS(0, 3)}}},     \
     .arg = {A, B}},
const ag_op_test ag_test_unary_cases[] = {UNARY_CASES(ROW){.name = NULL}};
