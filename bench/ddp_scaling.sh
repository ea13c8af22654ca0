#!/bin/sh
# ddp_scaling.sh - data-parallel scaling of bench_ddp (docs/distributed.md#performance):
# 1, 2 and 4 ranks of one thread each on this machine, for the all-reduce-heavy
# and the compute-heavy model, then a table of the scaling to expect where each
# rank has a core of its own and the all-reduce runs over a network, modelled
# from the 1-rank step times measured here (bench/ddp_model.py states the model).
#
#     bench/ddp_scaling.sh [build-dir] [steps]
set -eu
build=${1:-build}
steps=${2:-8}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp)
echo "# $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for model in allreduce compute; do
    for np in 1 2 4; do
        mpirun -np "$np" "$build/bench/bench_ddp" --model "$model" --steps "$steps" | tee -a "$out"
    done
done
python3 "$(dirname "$0")/ddp_model.py" < "$out"
rm -f "$out"
