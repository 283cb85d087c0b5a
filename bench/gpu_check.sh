#!/usr/bin/env bash
# bench/gpu_check.sh — the GPU check of backend::cuda, in the mode of /work/shared/GPU.md: the
# programs are built on a CPU machine (portable: x86-64-v3, sm_90) and copied; the GPU machine
# only runs them (it cannot configure the project).
#   bash bench/gpu_check.sh build     # on the CPU build machine: build into build-gpu/, copy to gpu-bin/
#   bash bench/gpu_check.sh           # on the GPU machine, from the repository root (about 6-7 minutes;
#                                     # every stage has a timeout, all of them cut to TOTAL_S=540 s)
# The run: the CUDA tests (NCHW and NHWC engines, every precision, against the reference runner;
# training kernels; the GPU trainer against the CPU trainer), the same tests' small-network cases
# under compute-sanitizer memcheck, the NCCL one-rank test, the GPU trainer against torch
# autograd (two Inception v3 steps; the references made there by tools/train_reference.py on
# the CPU cores), gpu_bench (ctnet's engines x precisions, with and without host copies, batch
# 1/32/128/256), PyTorch on the same GPU (python3 with torch), the training step (gpu_train_bench
# against bench/gpu_torch_train.py, batch 32 and 128), the CLI's `ctnet bench --train --backend
# cuda` (batch 32), a short Fashion-MNIST run of `ctnet train --backend cuda` (data copied into
# gpu-bin/ by the build), then the tables. Logs in LOG_DIR (default
# /tmp/gpu-logs). Exit status 1 when a test, memcheck, the benchmark's agreement check, the
# training run or the torch comparison failed (not when too little time was left to start it).
set -u
cd "$(dirname "$0")/.."
B=${BIN:-gpu-bin}
if [ "${1:-run}" = build ]; then
  set -e
  mkdir -p build-gpu
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCTNET_CUDA=ON -DCTNET_NATIVE=OFF \
        -DCMAKE_CXX_FLAGS=-march=x86-64-v3 -DCMAKE_CUDA_ARCHITECTURES=90 -DCTNET_BUILD_EXAMPLES=OFF > build-gpu/configure.log
  grep -E "cuDNN engine" build-gpu/configure.log || true
  cmake --build build-gpu -j "${JOBS:-2}" --target ctnet_cuda_tests ctnet_cuda_parity_tests gpu_bench gpu_train_bench ctnet_tool
  cmake --build build-gpu -j "${JOBS:-2}" --target ctnet_nccl_tests || echo "(no NCCL: ctnet_nccl_tests not built)"
  mkdir -p "$B/lib"
  cp build-gpu/tests/ctnet_cuda_tests build-gpu/tests/ctnet_cuda_parity_tests build-gpu/bench/gpu_bench build-gpu/bench/gpu_train_bench build-gpu/apps/ctnet/ctnet "$B/"
  mkdir -p "$B/fashion" && cp /usr/share/datasets/fashion-mnist/*.gz "$B/fashion/"  # 30 MB: the GPU machine has no Debian packages
  [ -x build-gpu/tests/ctnet_nccl_tests ] && cp build-gpu/tests/ctnet_nccl_tests "$B/"
  cp -L /usr/local/cuda/lib64/libcudart.so.13 "$B/lib/"
  ls -la "$B" "$B/lib"
  exit 0
fi

LOG_DIR=${LOG_DIR:-/tmp/gpu-logs}
mkdir -p "$LOG_DIR"
: > "$LOG_DIR/summary.txt"
status=0
note() { echo "$*" | tee -a "$LOG_DIR/summary.txt"; }
# Each stage's timeout, cut to what is left of TOTAL_S (default 540 s) so that the whole check
# ends inside one 600 s device call; a stage that starts with nothing left gets 1 s, and one
# that ignores SIGTERM (stuck in the driver) is killed 5 s later.
deadline=$(( $(date +%s) + ${TOTAL_S:-540} ))
budget() { local left=$(( deadline - $(date +%s) )); [ "$left" -gt 1 ] || left=1; echo $(( $1 < left ? $1 : left )); }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$LOG_DIR/gpu.txt"
PY=${PYTHON:-python3}
site=$($PY -c 'import site; print(site.getsitepackages()[0])' 2> /dev/null)
libs=""
for d in "$site"/nvidia/cudnn/lib "$site"/nvidia/nccl/lib "$site"/nvidia/cu13/lib "$site"/nvidia/cuda_runtime/lib /usr/local/cuda/lib64 "$B/lib"; do
  [ -d "$d" ] && libs="$libs:$d"
done
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PATH:/usr/local/cuda/bin"  # compute-sanitizer
chmod +x "$B"/* 2> /dev/null
for x in ctnet_cuda_tests ctnet_cuda_parity_tests gpu_bench gpu_train_bench ctnet; do
  if ldd "$B/$x" | grep -q "not found"; then note "$x: missing libraries:"; ldd "$B/$x" | grep "not found" | tee -a "$LOG_DIR/summary.txt"; fi
done

echo "== CUDA tests (every engine and precision against the reference runner)"
t0=$(date +%s)
timeout -k 5 "$(budget "${TEST_S:-200}")" "$B/ctnet_cuda_tests" -s > "$LOG_DIR/cuda_tests.log" 2>&1
rc=$?; [ $rc = 0 ] || status=1
note "cuda tests rc=$rc in $(( $(date +%s) - t0 )) s"
# The measured errors, without the engines' descriptions (in the log); failures in full.
grep -E "MESSAGE|skipped|test cases|assertions|FAILED|ERROR" -A1 "$LOG_DIR/cuda_tests.log" | grep -vE "^--$|MESSAGE:?$" |
  grep -E "bound|fp32 |skipped|test cases|assertions|FAILED|ERROR|engine|convolutions" | sed -E 's/\); engine .*/)/; s/^.*MESSAGE: //' |
  uniq -c | head -70 | tee -a "$LOG_DIR/summary.txt"

echo "== compute-sanitizer memcheck (small networks, every engine and precision; training kernels)"
if command -v compute-sanitizer > /dev/null; then
  t0=$(date +%s)
  timeout -k 5 "$(budget "${MEMCHECK_S:-90}")" compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
    "$B/ctnet_cuda_tests" "-tce=*Inception*" > "$LOG_DIR/memcheck.log" 2>&1
  rc=$?
  [ $rc = 0 ] || status=1
  note "memcheck rc=$rc in $(( $(date +%s) - t0 )) s: $(grep -E "ERROR SUMMARY|LEAK SUMMARY" "$LOG_DIR/memcheck.log" | tr '\n' ' ')"
else
  note "compute-sanitizer not found: memcheck skipped"
fi

if [ -x "$B/ctnet_nccl_tests" ]; then
  timeout -k 5 "$(budget 30)" "$B/ctnet_nccl_tests" > "$LOG_DIR/nccl_tests.log" 2>&1 || status=1
  note "nccl tests: $(grep -E "test cases" "$LOG_DIR/nccl_tests.log")"
fi

echo "== the GPU trainer against torch autograd (tools/train_reference.py's two Inception v3 steps, fp32)"
t0=$(date +%s)
left=$(( deadline - t0 ))
need=$(( ${TRAIN_REF_S:-100} + ${PARITY_S:-60} ))
if [ "$left" -lt "$need" ]; then  # out of time is not a failure: say so
  note "cuda train parity: not run, ${left} s left of TOTAL_S (it may take ${need})"
else
  # The references (about 800 MB, outside LOG_DIR: they do not come back) are made here by this
  # machine's torch on its CPU cores.
  ref="${TMPDIR:-/tmp}/ctnet_train_ref"
  PYTHONUNBUFFERED=1 timeout -k 5 "$(budget "${TRAIN_REF_S:-100}")" "$PY" tools/train_reference.py "$ref" \
    --threads "$(nproc)" > "$LOG_DIR/train_reference.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    CTNET_TRAIN_PARITY_DIR="$ref" timeout -k 5 "$(budget "${PARITY_S:-60}")" "$B/ctnet_cuda_parity_tests" -s \
      > "$LOG_DIR/cuda_train_parity.log" 2>&1
    rc=$?
  fi
  [ $rc = 0 ] || status=1
  note "cuda train parity rc=$rc in $(( $(date +%s) - t0 )) s"
  grep -hE "^train parity|^train reference|convolutions:|test cases|FAILED|ERROR" "$LOG_DIR/train_reference.log" \
    "$LOG_DIR/cuda_train_parity.log" 2> /dev/null | sed -E 's/^.*MESSAGE: //' | head -30 | tee -a "$LOG_DIR/summary.txt"
  rm -rf "$ref"
fi

echo "== gpu_bench (ctnet: cuDNN / own NHWC kernels x bf16 fp16 tf32 fp32, NCHW tf32; batch ${BATCHES:-1,32,128,256})"
t0=$(date +%s)
timeout -k 5 "$(budget "${BENCH_S:-200}")" "$B/gpu_bench" --batches "${BATCHES:-1,32,128,256}" --iters "${ITERS:-30}" --seconds "${ROW_S:-0.5}" \
  > "$LOG_DIR/gpu_bench.txt" 2>&1
rc=$?; [ $rc = 0 ] || status=1
note "gpu_bench rc=$rc in $(( $(date +%s) - t0 )) s"
grep -E "^device|^cuDNN|^agreement|^  engine|gpu_bench:" "$LOG_DIR/gpu_bench.txt" | sed -E 's/; algorithms:[^;]*//' |
  tee -a "$LOG_DIR/summary.txt"

echo "== PyTorch ($PY)"
t0=$(date +%s)
PYTHONUNBUFFERED=1 timeout -k 5 "$(budget "${TORCH_S:-110}")" "$PY" bench/gpu_torch.py "${BATCHES:-1,32,128,256}" > "$LOG_DIR/torch.txt" 2>&1
rc=$?
note "torch rc=$rc in $(( $(date +%s) - t0 )) s: $(head -1 "$LOG_DIR/torch.txt")"
[ $rc = 0 ] || tail -5 "$LOG_DIR/torch.txt" | tee -a "$LOG_DIR/summary.txt"

echo "== training: ctnet's step (gpu_train_bench) and PyTorch's (bench/gpu_torch_train.py), batch ${TRAIN_BATCHES:-32,128}"
t0=$(date +%s)
# cuDNN's convs in tf32 and bf16 (the targets' rows), then ctnet's own conv kernels in tf32.
timeout -k 5 "$(budget "${TRAIN_BENCH_S:-90}")" "$B/gpu_train_bench" --batches "${TRAIN_BATCHES:-32,128}" --steps "${TRAIN_STEPS:-8}" \
  --precisions "${TRAIN_PRECISIONS:-tf32,bf16}" --convs "${TRAIN_CONVS:-cudnn,ctnet}" > "$LOG_DIR/train_bench.txt" 2>&1
rc=$?; [ $rc = 0 ] || status=1
note "gpu_train_bench rc=$rc in $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
TORCH_TRAIN_STEPS=${TRAIN_STEPS:-8} PYTHONUNBUFFERED=1 timeout -k 5 "$(budget "${TORCH_TRAIN_S:-90}")" "$PY" bench/gpu_torch_train.py \
  "${TRAIN_BATCHES:-32,128}" > "$LOG_DIR/torch_train.txt" 2>&1
note "torch training rc=$? in $(( $(date +%s) - t0 )) s"
grep -hE '"images_per_s"|"error"' "$LOG_DIR/train_bench.txt" "$LOG_DIR/torch_train.txt" | tee -a "$LOG_DIR/summary.txt"

echo "== ctnet bench --train --backend cuda (the CLI's timing of the same step, batch 32, bf16)"
timeout -k 5 "$(budget 60)" "$B/ctnet" bench --train --backend cuda --precision bf16 --model inception_v3 --batch 32 --iters 5 \
  > "$LOG_DIR/bench_train_cli.txt" 2>&1
rc=$?; [ $rc = 0 ] || status=1
note "ctnet bench --train --backend cuda rc=$rc: $(tail -1 "$LOG_DIR/bench_train_cli.txt")"

echo "== ctnet train --backend cuda: Fashion-MNIST, ${FASHION_EPOCHS:-2} epochs"
t0=$(date +%s)
timeout -k 5 "$(budget "${FASHION_S:-120}")" "$B/ctnet" train --backend cuda --data "$B/fashion" --out "$LOG_DIR/fashion" \
  --epochs "${FASHION_EPOCHS:-2}" --batch 64 --threads 8 > "$LOG_DIR/fashion.txt" 2>&1
rc=$?; [ $rc = 0 ] || status=1
note "ctnet train --backend cuda rc=$rc in $(( $(date +%s) - t0 )) s: $(grep -E '^epoch|^final' "$LOG_DIR/fashion.txt" | tr '\n' ' ')"

echo "== summary"
cat "$LOG_DIR/summary.txt"
echo "== table (images/s)"
"$PY" bench/gpu_table.py "$LOG_DIR/gpu_bench.txt" "$LOG_DIR/torch.txt" | tee "$LOG_DIR/table.md"
# On the lent GPU machine ($OUT comes back to the session): the logs too.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp -r "$LOG_DIR" "$OUT/gpu-logs"; fi
exit "$status"
