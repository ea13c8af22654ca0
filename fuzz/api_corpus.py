#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_api (fuzz/corpus/api/): small hand-written
programs, one or more per call kind, in the byte code fuzz/fuzz_api.c decodes.

    python3 fuzz/api_corpus.py        # rewrites fuzz/corpus/api/*.bin

The encoders below mirror the decoder's readers (get_size, get_shape,
get_dtype, get_scalar, get_dim, get_index) and the order in which each op_*
function reads its bytes; change both together.  A seed that no longer means
what its name says still runs (every byte string is a valid program), it only
seeds less well.
"""
import os
import struct

OPS = dict(create=0, view=2, split=4, join=5, unary=6, unary_param=7, binary=8, reduce=9, index=10,
           norm=11, loss=12, registered=13, inplace=15, autograd=16, backward=17, read=18, state=19,
           module=20, scope=21, settings=22, null=23, conv=24, functional=27)
HOSTILE = [-1, -2, -2**63, 2**63 - 1, 2**31, 2**32, 2**62, 2**62 + 1, 3037000500, 2**21, 2**40,
           (2**63 - 1) // 3 + 1, -2**62, 2**32 + 1, 2**16]
DTYPE = dict(f32=0, f64=1, i64=4, bool=5, u8=6, bad=250)
SPECIAL = ['nan', 'inf', '-inf', 1e300, -1e300]


def u8(v): return bytes([v & 255])
def u16(v): return struct.pack('<H', v & 0xffff)
def op(name): return u8(OPS[name])
def dtype(d): return u8(DTYPE[d])
def slot(s): return u8(s)  # a slot to pick from or store into
def bit(b): return u8(1 if b else 0)


def size(v):
    if 0 <= v < 6: return u8(v)
    if v in HOSTILE: return u8(224 + HOSTILE.index(v))
    if 0 <= v < 256: return u8(160) + u8(v)
    if 0 <= v < 65536: return u8(208) + u16(v)
    return u8(239) + struct.pack('<q', v)


def shape(*dims, ndim=None):
    """dims; ndim overrides the rank with a hostile one (16, 17, -1, 2**31 - 1, -2**31)."""
    if ndim is None: return u8(len(dims)) + b''.join(size(d) for d in dims)
    read = min(max(ndim, 0), 16)  # the decoder reads this many sizes
    dims = (list(dims) + [1] * read)[:read]
    return u8(248 + [16, 17, -1, 2**31 - 1, -2**31].index(ndim)) + b''.join(size(d) for d in dims)


def scalar(x):
    if isinstance(x, str) or x in SPECIAL: return u8(128 + SPECIAL.index(x))
    if x * 2 == int(x * 2) and -8 <= x * 2 <= 8: return u8(int(x * 2) + 8)
    return u8(240) + struct.pack('<d', x)


def dim(d):
    hostile = [-2**31, 2**31 - 1, 16, -17, 17, -16, 100, -100]
    return u8(d + 4) if -4 <= d <= 4 else u8(232 + hostile.index(d))


def index(v):
    if -6 <= v <= 6: return u8(v + 6)
    if -32768 <= v < 32768: return u8(160) + struct.pack('<h', v)
    return u8(239) + struct.pack('<q', v)


def program(*parts, seed=1): return u16(seed) + b''.join(parts)


# ---- call encoders (each names the op_* function it feeds) ----
def create(kind, *args): return op('create') + u8(kind) + b''.join(args)
def zeros(shp, dt, to): return create(1, shp, dtype(dt), slot(to))
def full(shp, v, dt, to): return create(3, shp, scalar(v), dtype(dt), slot(to))
def rand(shp, dt, to): return create(8, shp, dtype(dt), slot(to))
def arange(a, b, step, dt, to): return create(5, scalar(a), scalar(b), scalar(step), dtype(dt), slot(to))
def from_data(shp, dt, data, to, borrow=False):  # byte 0 mod 4: ag_from_buffer
    return create(10, u8(0 if borrow else 1), shp, dtype(dt), data, slot(to))
def view(src, kind, *args, to): return op('view') + slot(src) + u8(kind) + b''.join(args) + slot(to)
def unary(src, k, to): return op('unary') + slot(src) + u8(k) + slot(to)
def binary(a, b, k, to, extra=b''): return op('binary') + slot(a) + slot(b) + u8(k) + extra + slot(to)
def backward(src, how, seed_slot=None):
    return op('backward') + slot(src) + u8(how) + (slot(seed_slot) if seed_slot is not None else b'')


HOSTILE_COUNT = [-1, -2**31, 65, 64, 2**31 - 1, 1000]


def count(n):  # get_count: 0 .. 4, or one of HOSTILE_COUNT
    if 0 <= n < 5: return u8(n)
    return u8(next(v for v in range(200, 256) if v % 6 == HOSTILE_COUNT.index(n)))


def functional(k, n, m=1, x=0, v=1, fn=0, nulls=False, create=False, strict=False, mode=0, retain=False,
               gcreate=False, allow_unused=False, opts=True, tail=b''):
    """op_functional: call k on fuzz_fn number fn, inputs all slot x, vectors all slot v."""
    pick = (lambda s: u8(64 + s)) if nulls else u8  # pick_optional with nulls
    return (op('functional') + u8(k) + count(n) + count(m) + bit(nulls) + pick(x) * 64 + pick(v) * 64 + u8(fn) +
            bit(1) + bit(1) + bit(create) + bit(strict) + u8(mode) + bit(retain) + bit(gcreate) +
            bit(allow_unused) + bit(opts) + tail)


def i64s(*v): return b''.join(struct.pack('<q', x) for x in v)
def f64s(*v): return b''.join(struct.pack('<d', x) for x in v)


SEEDS = {
    # creation, hostile shapes and dtypes included
    'create': program(
        zeros(shape(2, 3), 'f32', 0), full(shape(2, 2), 1.5, 'f64', 1), arange(0, 3, 0.5, 'f64', 2),
        create(6, scalar(0), scalar(1), size(5), dtype('f32'), slot(3)),   # linspace
        create(7, size(3), dtype('f64'), slot(4)),                         # eye
        rand(shape(3, 4), 'f32', 5), create(9, shape(4), dtype('f64'), slot(6)),  # randn
        from_data(shape(2, 3), 'f64', f64s(1, 2, 3, 4, 5, 6), 7),
        from_data(shape(2), 'i64', i64s(7, -1), 0, borrow=True),
        create(4, scalar('nan'), dtype('f32'), slot(1)),                   # scalar
        create(14, slot(7), scalar('inf'), slot(2)),                       # full_like
        create(15, slot(3)), create(16, slot(3)),                          # get/set_rng_state
    ),
    'create_hostile': program(
        zeros(shape(-1, 3), 'f32', 0), zeros(shape(2, 3), 'bad', 0), zeros(shape(1, ndim=17), 'f32', 0),
        zeros(shape(2**21, 2**21), 'f32', 0), rand(shape(3), 'i64', 0), arange(0, 1, 0, 'f32', 0),
        arange(0, 'inf', 1, 'f32', 0), create(6, scalar(0), scalar(1), size(-1), dtype('f32'), slot(0)),
        create(7, size(-2), dtype('f32'), slot(0)),
    ),
    # views with valid and hostile arguments
    'views': program(
        rand(shape(2, 3, 4), 'f32', 0),
        view(0, 0, shape(4, 6), to=1),                           # reshape [4, 6]
        view(0, 1, shape(6, 4), to=2),                           # view
        view(0, 2, dim(0), dim(2), to=3),                        # transpose
        view(0, 4, bit(1), to=4),                                # permute (reversed dims)
        view(0, 5, dim(1), index(1), index(2), to=5),            # narrow
        view(0, 6, dim(-1), index(-3), index(4), index(2), to=6),  # slice
        view(0, 7, dim(0), index(-1), to=7),                     # select
        view(7, 8, shape(5, 3, 4), to=1),                        # expand (fails: 3 != 1)
        rand(shape(3, 1), 'f64', 2), view(2, 8, shape(2, 3, 5), to=3),  # expand
        view(2, 9, dim(1), to=4), view(2, 11, dim(0), to=5),     # squeeze, unsqueeze
        view(0, 12, dim(0), dim(1), to=6),                       # flatten
        view(6, 13, dim(0), shape(3, 2), to=7),                  # unflatten
        view(3, 14, to=1), view(3, 15, to=2), view(0, 16, to=4), view(0, 17, dtype('i64'), to=5),
    ),
    'views_hostile': program(
        rand(shape(2, 3), 'f32', 0),
        view(0, 5, dim(0), index(2**62), index(2**62), to=1),    # narrow past the end
        view(0, 6, dim(1), index(-2**63), index(2**63 - 1), index(2**62), to=1),
        view(0, 8, shape(2**62, 2, 3), to=1),                    # expand to a huge shape
        view(0, 2, dim(-17), dim(100), to=1), view(0, 7, dim(1), index(3), to=1),
        view(0, 0, shape(2**32, 2**32), to=1), view(0, 0, shape(-1, -1), to=1),
    ),
    'split_join': program(
        rand(shape(5, 4), 'f32', 0),
        op('split') + slot(0) + bit(0) + dim(0) + u8(5) + index(2) + u8(0) + u8(1) + slot(1) + slot(2),
        op('split') + slot(0) + bit(1) + dim(1) + u8(3) + index(3) + u8(0) + u8(4) + slot(3),
        op('join') + u8(3) + slot(1) * 8 + dim(0) + bit(1) + slot(4),          # cat of two
        op('join') + u8(4) + slot(0) * 8 + dim(-1) + bit(0) + slot(5),         # stack of three
    ),
    # computing ops with special values
    'compute': program(
        from_data(shape(2, 3), 'f64', f64s(1, -2, float('nan'), float('inf'), 0, 1e300), 0),
        rand(shape(3, 2), 'f64', 1),
        unary(0, 1, 2), unary(0, 32, 3),                                       # exp, sum
        op('unary_param') + slot(0) + u8(0) + scalar(-1) + scalar('nan') + slot(4),   # clamp
        op('unary_param') + slot(0) + u8(12) + scalar(0) + scalar(20) + slot(4),      # softplus beta 0
        binary(0, 1, 7, 5),                                                    # matmul
        binary(0, 0, 9, 6),                                                    # eq
        op('reduce') + slot(0) + u8(3) + dim(0) + dim(-1) + dim(0) + dim(0) + dim(1) + index(1) + bit(1)
        + u8(3) + slot(7),                                                     # var_dims
        op('reduce') + slot(0) + u8(0) + dim(0) * 4 + dim(1) + index(0) + bit(0) + u8(14) + slot(7),  # softmax
    ),
    'index': program(
        rand(shape(3, 4), 'f32', 0), from_data(shape(2), 'i64', i64s(2, 0), 1),
        op('index') + slot(0) + slot(1) + dim(0) + u8(0) + slot(2),            # index_select
        from_data(shape(2), 'i64', i64s(-1, 2**62), 3),
        op('index') + slot(0) + slot(3) + dim(1) + u8(0) + slot(4),            # bad indices
        op('index') + slot(0) + slot(1) + dim(0) + u8(3) + index(-1) + slot(5),  # one_hot
    ),
    'norm_loss': program(
        rand(shape(4, 3), 'f32', 0), rand(shape(3), 'f32', 1), rand(shape(4, 3), 'f32', 2),
        op('norm') + slot(0) + u8(65) + u8(66) + u8(0) + u8(0) + scalar(0.5) + scalar(1e-8) + bit(1) + bit(1)
        + slot(3),                                                             # batch_norm
        op('norm') + slot(0) + u8(0) * 4 + scalar(0) + scalar(-1) + bit(0) + shape(3) + slot(4),  # layer_norm
        op('loss') + slot(0) + slot(2) + slot(2) + u8(0) + u8(0) + slot(5),    # mse_loss
        from_data(shape(4), 'i64', i64s(0, 2, 1, 5), 6),
        op('loss') + slot(0) + slot(6) + slot(2) + u8(8) + index(5) + u8(7) + slot(7),  # cross_entropy
    ),
    # the loss objects of three tensors (op_loss's kind 22 + 5; object kinds 3-7), then one given 2 tensors
    'loss_objects': program(
        rand(shape(4, 3), 'f32', 0), rand(shape(4, 3), 'f32', 1), rand(shape(4), 'f32', 2),
        from_data(shape(4), 'i64', i64s(0, 2, 1, 3), 3),
        *[op('loss') + slot(0) + slot(1) + slot(u) + u8(0) + u8(27) + u8(kind) + extra + slot(2) + u8(2) + slot(5)
          for kind, u, extra in ((3, 2, b''), (4, 1, b''), (5, 2, b''), (6, 1, b''), (7, 3, scalar(2)))],
        op('loss') + slot(0) + slot(1) + slot(2) + u8(0) + u8(27) + u8(3) + slot(2) + u8(1) + slot(5),
    ),
    # registered ops through their test rows (op index, case, scale, dtype, layout, grads, specials)
    'registered': program(*[
        op('registered') + u16(i) + u8(0) + u8(0) + bit(1) + bit(i & 1) + u8(0x81) + u8(0)
        + scalar(0.5) + scalar(2) + slot(0) + slot(0) + slot(0) + slot(0) + slot(i % 8)
        for i in (0, 7, 23, 60, 75, 90)
    ]),
    'inplace': program(
        rand(shape(4, 4), 'f32', 0), view(0, 6, dim(1), index(0), index(4), index(2), to=1),
        op('inplace') + slot(1) + slot(1) + u8(2) + scalar('nan') + scalar(0),            # fill_ a view
        op('inplace') + slot(0) + slot(1) + u8(3) + scalar(2) + scalar(0),                # add_ broadcast
        rand(shape(3, 1), 'f32', 2), view(2, 8, shape(3, 4), to=3),
        op('inplace') + slot(3) + slot(2) + u8(9) + scalar(-1) + scalar(1),               # clamp_ expanded
        op('inplace') + slot(0) + slot(0) + u8(23) + scalar(1) + scalar(0),               # orthogonal_
    ),
    'backward': program(
        rand(shape(3, 2), 'f64', 0), op('autograd') + slot(0) + u8(0),
        unary(0, 14, 1), view(1, 3, to=2), binary(1, 2, 7, 3),
        backward(3, 1), op('autograd') + slot(0) + u8(5) + slot(4),             # sum, backward; grad
        backward(3, 1),                                                          # twice: graph freed
        op('inplace') + slot(0) + slot(0) + u8(7) + scalar(1) + scalar(0),     # leaf requiring grad
        op('autograd') + slot(0) + u8(6),                                        # no_grad
        backward(1, 5, 7),
    ),
    'read': program(
        rand(shape(2, 3), 'f32', 0),
        op('read') + slot(0) + u8(0), op('read') + slot(0) + u8(1) + index(1) + index(5) + index(0) * 14,
        op('read') + slot(0) + u8(2) + dtype('f64') + index(3), op('read') + slot(0) + u8(3),
        op('read') + slot(0) + u8(4) + dim(-1), op('read') + slot(0) + u8(5), op('read') + slot(0) + u8(6),
    ),
    'state': program(
        rand(shape(2, 3), 'f32', 0), from_data(shape(2), 'i64', i64s(1, 2), 1),
        create(4, scalar('nan'), dtype('f64'), slot(2)),
        op('state') + u8(4) + slot(0) + u8(0) + bit(0) + slot(1) + u8(2) + bit(0) + slot(2) + u8(7) + bit(0)
        + slot(0) + u8(4) + bit(1) + scalar(3) + u8(1) + bit(1) + u8(1) + slot(3),
    ),
    'module': program(
        rand(shape(2, 3), 'f32', 0),
        op('module') + size(3) + size(4) + scalar(0) + scalar(0) + u8(0) + bit(1) + bit(0) + slot(0) + slot(1)
        + u8(7) + u8(2) + slot(0) + u8(0) + slot(1) + u8(1) + bit(1),                    # linear
        op('module') + size(3) + size(0) + scalar(1e-5) + scalar(0.5) + u8(2) + bit(1) + bit(1) + bit(0)
        + slot(0) + slot(2) + u8(2),                                                      # batch_norm1d
    ),
    # convolution and pooling (op_conv): valid options, then hostile ones
    'conv': program(
        rand(shape(2, 3, 5, 6), 'f32', 0), rand(shape(4, 3, 3, 2), 'f32', 1), rand(shape(4), 'f32', 2),
        op('conv') + slot(0) + u8(0) + slot(1) + u8(66)                                   # conv2d, bias slot 2
        + index(2) + index(1) + index(1) + index(1) + index(2) + index(2) + index(1) + u8(0) + bit(1) + slot(3),
        op('conv') + slot(0) + u8(0) + slot(1) + u8(0)                                    # groups -1, padding 2^62
        + index(1) + index(2**62) + index(1) + index(1) + index(0) + index(1) + index(-1) + u8(3) + bit(1) + slot(4),
        op('conv') + slot(3) + u8(2)                                                      # max_pool2d with indices
        + index(2) + index(0) + index(1) + index(1) + index(2) + index(1) + index(0) + index(2) + bit(1) + bit(0)
        + u8(200) + bit(1) + slot(5) + slot(6),
        op('conv') + slot(0) + u8(4)                                                      # avg_pool2d, pad > k/2
        + index(2) + index(1) + index(2) + index(0) + index(3) + index(2**62) + index(0) + index(0) + bit(1) + bit(1)
        + u8(200) + slot(7),
        backward(6, 1),
    ),
    # the functional API on fuzz_fn, dual levels and tangents (op_functional)
    'functional': program(
        rand(shape(3), 'f64', 0), rand(shape(3), 'f64', 1),
        functional(5, 1, tail=bit(1) + bit(1) + bit(1) + slot(4)),          # hvp of Σ x²
        functional(6, 1, tail=bit(1) + bit(1) + bit(1) + slot(5)),          # vhp
        functional(3, 1, fn=1, mode=2, tail=bit(1)),                        # jacobian forward
        functional(4, 1, create=True, tail=bit(1)),                         # hessian, create_graph
        functional(2, 1, fn=1, tail=u8(64 + 1) + bit(1) + bit(1) + slot(6)), # vjp with v
        functional(7, 1, fn=1, tail=bit(1) + bit(1) + bit(1) + slot(6) + slot(7)),  # jvp
        functional(9, 0, tail=bit(0)),                                      # dual level begin
        functional(11, 0, tail=u8(0) + u8(64 + 1) + slot(2)),               # make_dual into slot 2
        op('inplace') + slot(2) + slot(1) + u8(5) + scalar(0) + scalar(0),  # mul_ of the dual
        functional(12, 0, tail=u8(2) + slot(3)),                            # its tangent
        functional(5, 1, tail=bit(1) + bit(1) + bit(1)),                    # hvp inside a level: refused
        functional(10, 0),                                                  # level end
    ),
    'functional_hostile': program(
        rand(shape(2), 'f64', 0),
        functional(4, 2**31 - 1, tail=bit(1)),                              # hessian of INT_MAX inputs
        functional(4, 65, tail=bit(1)), functional(3, -1, tail=bit(1)),
        functional(0, 1, 65),                                              # autograd_grad: skipped (arrays of 64)
        functional(0, 1, -1, tail=bit(1) + bit(1) + bit(1)),                # a negative count
        functional(0, 1, 1, nulls=True, tail=bit(1) + bit(1) + bit(1)),
        functional(2, 1, fn=3, tail=u8(0) + bit(1) + bit(1)),               # fn returns NULL
        functional(3, 1, fn=4, tail=bit(1)),                                # fn returns int64
        functional(7, 1, fn=2, nulls=True, tail=bit(1) + bit(1) + bit(1) + slot(2) + slot(3)),  # jvp
        functional(5, 1, fn=5, strict=True, tail=bit(1) + bit(1) + bit(1) + slot(4)),  # independent, strict
        functional(10, 0), functional(10, 0),                               # end without a level
    ),
    'misc': program(
        op('scope') + bit(1), rand(shape(2), 'f32', 0), op('scope') + bit(1), unary(0, 0, 1),
        op('scope') + bit(0), op('settings') + u8(1) + bit(0), op('settings') + u8(0) + bit(1),
        op('settings') + u8(2) + u16(7) * 4, op('null') + slot(0) + u8(1) + u8(2) + bit(1),
        op('null') + slot(0) + u8(3) + u8(4),
    ),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'api')
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name + '.bin'), 'wb') as f:
            f.write(data)
    print(f'{len(SEEDS)} seeds, {sum(len(d) for d in SEEDS.values())} bytes in {out}')


if __name__ == '__main__':
    main()
