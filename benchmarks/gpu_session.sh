#!/usr/bin/env bash
# The GPU checks and benchmarks of issue 7, in stages that each fit a 10-minute call.
#
# Run from the repository root on a CUDA machine:
#
#   bash benchmarks/gpu_session.sh STAGE [OUTDIR]
#
# STAGE:
#   tests    tests/test_cuda.py (the GPU code paths), about 2-4 minutes
#   train    bench_training.py at 121x145x121: fp32 and bf16, batch 32 and 64
#   options  bench_training.py in bf16 with channels_last, then with torch.compile
#   data     bench_data.py and bench_embed.py on the GPU, bench_losses.py
#   all      every stage in turn (a machine held for longer)
#
# OUTDIR (default: $OUT, else benchmarks/output/gpu) receives the logs and one tarball of
# benchmarks/output (csv + md tables). Packages missing from the machine (skorch, nibabel) are
# installed from wheels in .whl/ when that folder exists, e.g. prepared elsewhere with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl skorch==1.4.0 nibabel==5.4.2
set -uo pipefail
stage=${1:?"usage: bash benchmarks/gpu_session.sh tests|train|options|data|all [OUTDIR]"}
out=${2:-${OUT:-benchmarks/output/gpu}}
mkdir -p "$out"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/anatcl-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/anatcl-site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    python3 -c "import torch, sklearn, skorch, numpy; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN', torch.backends.cudnn.version(), '| sklearn', sklearn.__version__, '| skorch', skorch.__version__, '| numpy', numpy.__version__)"
    git log -1 --format='commit %h %s' 2>/dev/null
} 2>&1 | tee "$out/machine.txt"

run_tests() {
    # torch.compile last: its first use builds a C launcher and takes minutes for a 3D ResNet
    python3 -m pytest tests/test_cuda.py -v -p no:cacheprovider -k "not compile" 2>&1 \
        | tee "$out/test_cuda.log"
    python3 -m pytest tests/test_cuda.py -v -p no:cacheprovider -k compile 2>&1 \
        | tee "$out/test_cuda_compile.log"
}
run_train() {
    python3 benchmarks/bench_training.py --device cuda --precision fp32 bf16 --batch-size 32 64 \
        --n-subjects 256 --epochs 3 --repeats 2 2>&1 | tee "$out/bench_training.log"
}
run_options() {
    python3 benchmarks/bench_training.py --device cuda --precision bf16 --batch-size 32 64 \
        --n-subjects 256 --epochs 3 --repeats 2 --channels-last 2>&1 | tee "$out/bench_training_cl.log"
    python3 benchmarks/bench_training.py --device cuda --precision bf16 --batch-size 32 \
        --n-subjects 256 --epochs 3 --repeats 2 --channels-last --compile \
        --loops fit forward_once 2>&1 | tee "$out/bench_training_compile.log"
}
run_data() {
    python3 benchmarks/bench_data.py --device cuda 2>&1 | tee "$out/bench_data.log"
    python3 benchmarks/bench_embed.py --device cuda --precision bf16 2>&1 | tee "$out/bench_embed.log"
    python3 benchmarks/bench_losses.py --device cuda 2>&1 | tee "$out/bench_losses.log"
}

status=0
case "$stage" in
    tests) run_tests || status=$? ;;
    train) run_train || status=$? ;;
    options) run_options || status=$? ;;
    data) run_data || status=$? ;;
    all) for s in run_tests run_train run_options run_data; do $s || status=$?; done ;;
    *) echo "unknown stage '$stage'" >&2; exit 2 ;;
esac
tar czf "$out/tables-$stage.tgz" --exclude=gpu benchmarks/output 2>/dev/null || true
exit $status
