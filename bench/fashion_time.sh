#!/bin/sh
# bench/fashion_time.sh - times the 10-epoch Fashion-MNIST training of
# examples/fashion_mlp (Adam lr 1e-3, inputs scaled to [-1, 1], batch 1024,
# Flatten, Linear 784->256, ReLU, Linear 256->10) against the same training in
# PyTorch (examples/fashion_mlp.py) in one run, and prints both times, their
# ratio (agrad / PyTorch; the target is <= 0.6) and both peak RSS.
#
#   bench/fashion_time.sh [BUILD_DIR] [REPEATS]     (defaults: build, 3)
#
# Each program runs REPEATS times, alternately, under /usr/bin/time; the
# figures are medians, and the training time also the minimum (the least
# disturbed run: on a shared machine the median mostly measures the others).  "train" is the training loop alone (each program's own
# train_s: batching, forward, backward, optimizer steps; not loading the data,
# not the per-epoch test evaluation), "process" the whole run, loading and
# decompressing the data included.  PyTorch runs in its fastest configuration
# on 2 cores (see /work/shared/notes/pytorch-baseline.md): OPENBLAS_NUM_THREADS=2
# and torch.set_num_threads(1); agrad with its defaults.  Needs
# datasets/fashion-mnist/*.gz (scripts/fetch_fashion_mnist.sh) and /usr/bin/python3
# with torch.  The machine should be otherwise idle: both programs use 2 cores.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
REPEATS=${2:-3}
DATA=datasets/fashion-mnist
PY=/usr/bin/python3
# PyTorch on the OpenBLAS kernels the CPU can run: bench/blas_check.py names the core to
# force when OpenBLAS chose one below the CPU (its generic Prescott kernels on Sapphire Rapids)
core=$("$PY" bench/blas_check.py 2>/dev/null | sed -n 's/^OPENBLAS_CORETYPE=//p')
[ -n "$core" ] && [ -z "${OPENBLAS_CORETYPE:-}" ] && export OPENBLAS_CORETYPE="$core" && echo "OPENBLAS_CORETYPE=$core"
[ -x "$BUILD/examples/fashion_mlp" ] || { echo "build first: ninja -C $BUILD"; exit 2; }
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "no $DATA: run scripts/fetch_fashion_mnist.sh"; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run NAME CMD...: one timed run; appends "train_s process_s peak_rss_kb test_acc" to $tmp/NAME
run() {
    name=$1
    shift
    /usr/bin/time -f "%e %M" -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    last=$(tail -n 1 "$tmp/out")
    train=$(echo "$last" | tr ' ' '\n' | sed -n 's/^train_s=//p')
    acc=$(echo "$last" | tr ' ' '\n' | sed -n 's/^test_acc=//p')
    echo "$train $(cat "$tmp/time") $acc" >>"$tmp/$name"
    echo "  $name: $last"
}

echo "fashion_time: $REPEATS runs each, 10 epochs, Adam lr 1e-3, [-1,1], batch 1024, seed 0"
i=0
while [ "$i" -lt "$REPEATS" ]; do
    run agrad "$BUILD/examples/fashion_mlp" --optimizer adam --norm pm1 --epochs 10 --progress quiet --data "$DATA"
    run pytorch env OPENBLAS_NUM_THREADS=2 "$PY" examples/fashion_mlp.py --optimizer adam --norm pm1 --epochs 10 \
        --threads 1 --data "$DATA"
    i=$((i + 1))
done

# median / minimum of column $2 of file $1
median() { cut -d' ' -f"$2" "$1" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
best() { cut -d' ' -f"$2" "$1" | sort -g | head -n 1; }
at=$(median "$tmp/agrad" 1) ap=$(median "$tmp/agrad" 2) am=$(median "$tmp/agrad" 3) aa=$(median "$tmp/agrad" 4)
pt=$(median "$tmp/pytorch" 1) pp=$(median "$tmp/pytorch" 2) pm=$(median "$tmp/pytorch" 3) pa=$(median "$tmp/pytorch" 4)
ab=$(best "$tmp/agrad" 1) pb=$(best "$tmp/pytorch" 1)
awk -v at="$at" -v ap="$ap" -v am="$am" -v aa="$aa" -v pt="$pt" -v pp="$pp" -v pm="$pm" -v pa="$pa" \
    -v ab="$ab" -v pb="$pb" 'BEGIN {
    printf "%-8s %13s %12s %10s %12s %9s\n", "", "train s (med)", "train s (min)", "process s", "peak RSS MB", "test acc"
    printf "%-8s %13.2f %12.2f %10.2f %12.0f %9.4f\n", "agrad", at, ab, ap, am / 1024, aa
    printf "%-8s %13.2f %12.2f %10.2f %12.0f %9.4f\n", "pytorch", pt, pb, pp, pm / 1024, pa
    printf "agrad_train_s=%.2f pytorch_train_s=%.2f train_ratio=%.2f best_train_ratio=%.2f agrad_process_s=%.2f pytorch_process_s=%.2f process_ratio=%.2f agrad_rss_mb=%.0f pytorch_rss_mb=%.0f target_ratio=0.60\n",
        at, pt, at / pt, ab / pb, ap, pp, ap / pp, am / 1024, pm / 1024
}'
