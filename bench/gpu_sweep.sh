#!/usr/bin/env bash
# The figures of BENCHMARKS.md that are too slow to sweep on a 2-core CPU, run side by side on one GPU.
#
#   bench/gpu_sweep.sh PLAN ENCODER_DIR DATA_DIR LOG_DIR [SECONDS]
#
# PLAN is `figures` (the issue's data sets) or `sst2` (SST-2 finetune variants and the no-LSTM control).
# Each line of output goes to LOG_DIR/sweep.log prefixed with the run's name; every run is stopped after
# SECONDS (default 480) so that what finished is reported even on a short lease. The epoch lines of a stopped
# run still show how far it got. One process per run: a model this small leaves the GPU idle between
# kernels, so several processes share it well.
set -u
plan=$1 encoder=$2 data=$3 logs=$4 seconds=${5:-480}
here=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH=$here/src OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$logs"

run() {  # run NAME SCRIPT arguments...
    local name=$1 script=$2
    shift 2
    timeout "$seconds" python3 "$here/bench/$script" "$@" --encoder "$encoder" --data "$data" 2>&1 |
        sed -u "s/^/[$name] /" >>"$logs/sweep.log" &
}

case $plan in
figures)
    run sst2-5e-5 figures.py sst2-finetune --encoder-lr 5e-5
    run sst2-5e-5-bi figures.py sst2-finetune --encoder-lr 5e-5 --bidirectional
    run sst2-3e-5 figures.py sst2-finetune --encoder-lr 3e-5
    run sst2-8e-5 figures.py sst2-finetune --encoder-lr 8e-5
    run sst2-5e-5-s1 figures.py sst2-finetune --encoder-lr 5e-5 --seed 1
    run sst2-5e-5-s2 figures.py sst2-finetune --encoder-lr 5e-5 --seed 2
    run trec-5e-5 figures.py trec --encoder-lr 5e-5
    run trec-5e-5-bi figures.py trec --encoder-lr 5e-5 --bidirectional
    run sms-finetune figures.py sms --mode finetune --encoder-lr 5e-5
    run goemo-frozen figures.py goemotions
    run goemo-finetune figures.py goemotions --mode finetune --encoder-lr 5e-5 --epochs 4
    ;;
sst2)
    run control-cls-3e-5 control_finetune.py --head cls --lr 3e-5
    run control-cls-5e-5 control_finetune.py --head cls --lr 5e-5
    run control-cls-1e-4 control_finetune.py --head cls --lr 1e-4
    run control-mean-5e-5 control_finetune.py --head mean --lr 5e-5
    run sst2-5e-5-s4 figures.py sst2-finetune --encoder-lr 5e-5 --seed 4
    run sst2-1e-4 figures.py sst2-finetune --encoder-lr 1e-4
    run sst2-5e-5-d3 figures.py sst2-finetune --encoder-lr 5e-5 --dropout 0.3
    run sst2-5e-5-s3 figures.py sst2-finetune --encoder-lr 5e-5 --seed 3
    ;;
*)
    echo "unknown plan $plan (figures or sst2)" >&2
    exit 2
    ;;
esac
wait
