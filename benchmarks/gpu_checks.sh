#!/usr/bin/env bash
# The GPU checks of issue 14, as one short script for a lent GPU machine (BENCHMARKS.md sections 3 and 11).
#
#   [STEPS=123] bash benchmarks/gpu_checks.sh OUT_DIR [ML100K_U_DATA]
#
# All three steps take about ten minutes, the device tool's limit for one command: STEPS=12 and STEPS=3
# split them over two calls.
#
# 1. the @pytest.mark.gpu tests (bf16 autocast, torch.compile, the stream refresh of the large config);
# 2. benchmarks/encoder.py --device cuda: on ML-100K, MFU of the large config and time to the reference
#    implementation's quality; on 400,000 generated events, the large config's MFU on more windows, eager
#    and compiled (the GPU alone: nothing else runs beside it);
# 3. `streamrec eval --encoder on` on ML-100K with the trainer on the GPU (shipped `small` preset, and the
#    `paper` preset), side by side: CPU-bound replays whose trainers use the GPU now and then.
#
# MovieLens is read from ../shared/data/ml-100k/u.data (never bundled). On a machine where that path does
# not exist, pass the file as the second argument: it is copied there (outside the repository) for the run.
set -u
out=${1:?usage: gpu_checks.sh OUT_DIR [ML100K_U_DATA]}
data=${2:-}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
ml=../shared/data/ml-100k/u.data
if [ ! -f "$ml" ] && [ -n "$data" ]; then mkdir -p "$(dirname "$ml")" && cp "$data" "$ml"; fi
streamrec() { python3 -c "import sys; from stream.cli.main import main; sys.exit(main(sys.argv[1:]))" "$@"; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
  nproc; date -u; } > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

steps=${STEPS:-123}
if [[ $steps == *1* ]]; then
echo "== 1. GPU tests"; date -u
timeout 80 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_models/test_encoder_trainer.py tests/test_models/test_encoder_refresh.py > "$out/gpu_tests.log" 2>&1
echo "rc $?"; tail -3 "$out/gpu_tests.log"
fi

if [[ $steps == *2* ]]; then
echo "== 2. encoder benchmark on the GPU"; date -u
# eager: torch.compile's first epoch took ~60 s on an H200 (2026-11-30), more than these budgets
timeout 110 python3 benchmarks/encoder.py --data ml100k --device cuda --compile off \
  --variants large-ce ce-paper-size --budget-s 25 --eval-every-s 2.5 --json "$out/encoder_ml100k_eager.json" \
  > "$out/encoder_ml100k_eager.log" 2>&1
echo "rc $?"; grep -E "^-- " "$out/encoder_ml100k_eager.log" | cut -c1-400
# a longer training set (400,000 generated events, ~2,400 windows of 200) for the large config's MFU,
# eager and then compiled with a budget long enough to see epochs after the compilation
timeout 75 python3 benchmarks/encoder.py --data generated --generated-events 400000 --device cuda --compile off \
  --variants large-ce --budget-s 20 --eval-every-s 20 --json "$out/encoder_generated_eager.json" \
  > "$out/encoder_generated_eager.log" 2>&1
echo "rc $?"; grep -E "^-- " "$out/encoder_generated_eager.log" | cut -c1-400
timeout 200 python3 benchmarks/encoder.py --data generated --generated-events 400000 --device cuda \
  --variants large-ce --budget-s 120 --eval-every-s 120 --json "$out/encoder_generated_compiled.json" \
  > "$out/encoder_generated_compiled.log" 2>&1
echo "rc $?"; grep -E "^-- " "$out/encoder_generated_compiled.log" | cut -c1-400
fi

if [[ $steps == *3* ]]; then
echo "== 3. streaming eval, trainer on the GPU"; date -u
for size in small paper; do
  timeout 220 bash -c "$(declare -f streamrec); streamrec eval --data $ml --format movielens --strategy blend \
    --self-tune off --encoder on --set trainer_device=cuda --set trainer_size=$size --no-progress \
    --json $out/eval_$size.json" > "$out/eval_$size.log" 2>&1 &
done
wait
for size in small paper; do echo "-- $size"; grep -A3 "encoder in the stream" "$out/eval_$size.log"; done
fi
date -u
