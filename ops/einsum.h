/*
 * einsum.h - the order in which ag_einsum contracted its operands, for tests:
 * ag__einsum_planned is ag_einsum that also reports the contractions it ran,
 * and can be told to use the greedy order where it would find the optimal one.
 */
#ifndef AGRAD_OPS_EINSUM_H
#define AGRAD_OPS_EINSUM_H

#include "core/internal.h"

/* Up to this many operands einsum finds the order with the fewest multiply-adds (dynamic
 * programming over subsets of the operands: 3^n splits); beyond, the greedy order. */
#define EINSUM_DP_MAX 8

typedef struct ag_einsum_plan {
    int steps;                        /* the contractions of two terms run */
    int pair[AG_MAX_DIMS + 1][2];     /* step k's two terms: operand i (0..n-1), or n + j for step j's result */
    double flops;                     /* their multiply-adds in all (each: the product of all their labels' sizes) */
    bool optimal;                     /* the order came from the dynamic programme (else greedy) */
} ag_einsum_plan;

/* ag_einsum(equation, operands, n), recording the contractions in *plan (not NULL); greedy:
 * the greedy order (the smallest intermediate first) even for 3 to EINSUM_DP_MAX operands.
 * Ownership and failure as ag_einsum. */
AG_HIDDEN ag_tensor *ag__einsum_planned(const char *equation, ag_tensor *const *operands, int n, bool greedy,
                                        ag_einsum_plan *plan);

#endif
