#!/usr/bin/env python3
"""Writes a tiny stand-in for Fashion-MNIST: the four IDX .gz files (512 training
and 128 test images of random pixels, labels 0-9 in turn) into DIR.

    fake_fashion.py DIR
    fake_fashion.py DIR --learnable N_TRAIN N_TEST

--learnable makes images a model can learn: each class's fixed random template,
blurred by noise (docs/distributed.md compares one process with two ranks on it).

The valgrind suite runs the Fashion-MNIST examples on it (examples/meson.build):
the real data are not shipped and would take minutes under valgrind.
"""
import gzip
import os
import random
import struct
import sys


def write(path, header, payload):
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        f.write(payload)


def learnable(rng, n, templates):
    """n images: image i is class i % 10's template plus noise, clamped to bytes."""
    out = bytearray()
    for i in range(n):
        t = templates[i % 10]
        out += bytes(min(255, max(0, t[j] + rng.randint(-150, 150))) for j in range(28 * 28))
    return bytes(out)


def main():
    out = sys.argv[1]
    rng = random.Random(0)
    sizes = (("train", 512), ("t10k", 128))
    templates = None
    if len(sys.argv) == 5 and sys.argv[2] == "--learnable":
        sizes = (("train", int(sys.argv[3])), ("t10k", int(sys.argv[4])))
        templates = [[rng.randint(0, 255) for _ in range(28 * 28)] for _ in range(10)]
    for split, n in sizes:
        if templates:
            pixels = learnable(rng, n, templates)
        else:
            pixels = bytes(rng.getrandbits(8) for _ in range(n * 28 * 28))
        write(os.path.join(out, f"{split}-images-idx3-ubyte.gz"), struct.pack(">IIII", 0x803, n, 28, 28), pixels)
        write(os.path.join(out, f"{split}-labels-idx1-ubyte.gz"), struct.pack(">II", 0x801, n),
              bytes(i % 10 for i in range(n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
