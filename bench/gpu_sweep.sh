#!/usr/bin/env bash
# The figures of BENCHMARKS.md that are too slow to sweep on a 2-core CPU, run side by side on one GPU.
#
#   bench/gpu_sweep.sh ENCODER_DIR DATA_DIR LOG_DIR [SECONDS]
#
# Each line of bench/figures.py output goes to LOG_DIR/sweep.log prefixed with the run's name; every run is
# stopped after SECONDS (default 480) so that what finished is reported even on a short lease. The epoch lines
# of a stopped run still show how far it got. One process per run: a model this small leaves the GPU idle
# between kernels, so several processes share it well.
set -u
encoder=$1 data=$2 logs=$3 seconds=${4:-480}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$here/src OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$logs"

run() {  # run NAME figures.py-arguments...
    local name=$1
    shift
    timeout "$seconds" python3 "$here/bench/figures.py" "$@" --encoder "$encoder" --data "$data" 2>&1 |
        sed -u "s/^/[$name] /" >>"$logs/sweep.log" &
}

run sst2-5e-5 sst2-finetune --encoder-lr 5e-5
run sst2-5e-5-bi sst2-finetune --encoder-lr 5e-5 --bidirectional
run sst2-3e-5 sst2-finetune --encoder-lr 3e-5
run sst2-8e-5 sst2-finetune --encoder-lr 8e-5
run sst2-5e-5-s1 sst2-finetune --encoder-lr 5e-5 --seed 1
run sst2-5e-5-s2 sst2-finetune --encoder-lr 5e-5 --seed 2
run trec-5e-5 trec --encoder-lr 5e-5
run trec-5e-5-bi trec --encoder-lr 5e-5 --bidirectional
run sms-finetune sms --mode finetune --encoder-lr 5e-5
run goemo-frozen goemotions
run goemo-finetune goemotions --mode finetune --encoder-lr 5e-5 --epochs 4
wait
