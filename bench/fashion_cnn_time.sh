#!/bin/sh
# bench/fashion_cnn_time.sh - times the Fashion-MNIST training of
# examples/fashion_cnn (two blocks of Conv2d 3x3, BatchNorm2d, ReLU, MaxPool2d
# with 32 and 64 channels, Dropout(0.25), Linear 3136->10; Adam lr 1e-3 with
# a cosine schedule, z-scored inputs, batch 128) against the same training in PyTorch
# (examples/fashion_cnn.py) in one run, and prints for each the training time
# per epoch, the test accuracy and the peak RSS, and the ratio of the times
# (agrad / PyTorch; the issue's aim is <= 0.9).
#
#   bench/fashion_cnn_time.sh [BUILD_DIR] [EPOCHS] [REPEATS]    (defaults: build, 3, 1)
#
# "epoch s" is the training loop alone divided by the epochs (each program's own
# train_s: batching, forward, backward, optimizer steps; not loading the data,
# not the per-epoch test evaluation).  With REPEATS > 1 the programs run
# alternately and the figures are medians.  PyTorch runs with
# torch.set_num_threads(T) and OPENBLAS_NUM_THREADS=3-T, T from the environment
# variable TORCH_THREADS (default 2: its convolutions go through oneDNN on
# torch's threads, OpenBLAS only serves the linear head); pick T as the faster
# configuration that `bench/compare_pytorch.py build cnn_fashion` reports at
# the time (on a loaded machine one thread can win).  agrad runs with its
# defaults (OMP_NUM_THREADS applies).  The load average before and after is
# printed beside the figures: on a shared machine the times mostly measure the
# others.
# Needs datasets/fashion-mnist/*.gz (scripts/fetch_fashion_mnist.sh),
# /usr/bin/time and /usr/bin/python3 with torch.
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
EPOCHS=${2:-3}
REPEATS=${3:-1}
DATA=datasets/fashion-mnist
PY=/usr/bin/python3
# PyTorch on the OpenBLAS kernels the CPU can run: bench/blas_check.py names the core to
# force when OpenBLAS chose one below the CPU (its generic Prescott kernels on Sapphire Rapids)
core=$("$PY" bench/blas_check.py 2>/dev/null | sed -n 's/^OPENBLAS_CORETYPE=//p')
[ -n "$core" ] && [ -z "${OPENBLAS_CORETYPE:-}" ] && export OPENBLAS_CORETYPE="$core" && echo "OPENBLAS_CORETYPE=$core"
TORCH_THREADS=${TORCH_THREADS:-2}
[ -x "$BUILD/examples/fashion_cnn" ] || { echo "build first: ninja -C $BUILD"; exit 2; }
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || { echo "no $DATA: run scripts/fetch_fashion_mnist.sh"; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# figure KEY LINE: the value of KEY=... in LINE
figure() { echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# run NAME CMD...: one timed run; appends "epoch_s peak_rss_kb test_acc" to $tmp/NAME
run() {
    name=$1
    shift
    /usr/bin/time -f "%M" -o "$tmp/time" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
    last=$(tail -n 1 "$tmp/out")
    echo "$(figure epoch_s "$last") $(cat "$tmp/time") $(figure test_acc "$last")" >>"$tmp/$name"
    echo "  $name: $last"
}

echo "fashion_cnn_time: $REPEATS run(s) each, $EPOCHS epochs, width 32, Adam lr 1e-3 (cosine), batch 128, seed 0, PyTorch threads $TORCH_THREADS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
i=0
while [ "$i" -lt "$REPEATS" ]; do
    run agrad "$BUILD/examples/fashion_cnn" --epochs "$EPOCHS" --progress quiet --data "$DATA"
    run pytorch env OPENBLAS_NUM_THREADS=$((3 - TORCH_THREADS)) "$PY" examples/fashion_cnn.py --epochs "$EPOCHS" \
        --threads "$TORCH_THREADS" --data "$DATA"
    i=$((i + 1))
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# median of column $2 of file $1
median() { cut -d' ' -f"$2" "$1" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ae=$(median "$tmp/agrad" 1) am=$(median "$tmp/agrad" 2) aa=$(median "$tmp/agrad" 3)
pe=$(median "$tmp/pytorch" 1) pm=$(median "$tmp/pytorch" 2) pa=$(median "$tmp/pytorch" 3)
awk -v ae="$ae" -v am="$am" -v aa="$aa" -v pe="$pe" -v pm="$pm" -v pa="$pa" 'BEGIN {
    printf "%-8s %10s %12s %9s\n", "", "epoch s", "peak RSS MB", "test acc"
    printf "%-8s %10.2f %12.0f %9.4f\n", "agrad", ae, am / 1024, aa
    printf "%-8s %10.2f %12.0f %9.4f\n", "pytorch", pe, pm / 1024, pa
    printf "agrad_epoch_s=%.2f pytorch_epoch_s=%.2f epoch_ratio=%.2f agrad_test_acc=%.4f pytorch_test_acc=%.4f agrad_rss_mb=%.0f pytorch_rss_mb=%.0f target_ratio=0.90\n",
        ae, pe, ae / pe, aa, pa, am / 1024, pm / 1024
}'
