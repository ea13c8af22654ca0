#!/usr/bin/env python3
"""Writes a tiny stand-in for Fashion-MNIST: the four IDX .gz files (512 training
and 128 test images of random pixels, labels 0-9 in turn) into DIR.

    fake_fashion.py DIR

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


def main():
    out = sys.argv[1]
    rng = random.Random(0)
    for split, n in (("train", 512), ("t10k", 128)):
        pixels = bytes(rng.getrandbits(8) for _ in range(n * 28 * 28))
        write(os.path.join(out, f"{split}-images-idx3-ubyte.gz"), struct.pack(">IIII", 0x803, n, 28, 28), pixels)
        write(os.path.join(out, f"{split}-labels-idx1-ubyte.gz"), struct.pack(">II", 0x801, n),
              bytes(i % 10 for i in range(n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
