#!/usr/bin/env bash
# The label-efficiency cells of bench/label_efficiency.py on one machine with a GPU and many cores:
# JOBS one-thread processes (and PAPER_JOBS for the paper preset) share the GPU; each width-16 run
# alone would leave it mostly idle, together they kept an H200 40-100 % busy. The cells are the same
# cpu-preset runs as on a laptop (width, steps, bf16 mixed precision, early stopping); the hardware
# and its torch build differ, and the study folder is kept apart from the CPU one so that every
# paired difference compares cells of one machine.
#
#   bash bench/label_efficiency_gpu.sh                      # from the repository root
#   STUDY=studies/label_eff_gpu DATA=../shared/data/xca_cimat40 JOBS=12 PAPER_JOBS=3 CELL_LIMIT=450 bash bench/label_efficiency_gpu.sh
#
# Cells that finish are kept (a rerun skips them, an interrupted one resumes). After CELL_LIMIT
# seconds the runs are stopped, every finished cell is scored on its validation images' own grid
# (bench/tta_choice.py's cache), and, where OUT is set, the report, the GPU's load every 20 s and the
# cells without their weights and checkpoints are written to OUT (report.md, gpu_util.csv,
# cells.tar.gz, machine.txt). Exit status: that of the cells' run (0 also when CELL_LIMIT cut it).
set -u
STUDY=${STUDY:-studies/label_eff_gpu}
DATA=${DATA:-../shared/data/xca_cimat40}
JOBS=${JOBS:-12}
PAPER_JOBS=${PAPER_JOBS:-3}
CELL_LIMIT=${CELL_LIMIT:-420}
SCORE_LIMIT=${SCORE_LIMIT:-90}
METHODS=${METHODS:-synth scratch}
BUDGETS=${BUDGETS:-all 2}
FOLDS=${FOLDS:-0 1 2 3 4}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-}
PY=${PY:-python3}
OUT=${OUT:-}
t0=$(date +%s)
mkdir -p "$STUDY"
[ -n "$OUT" ] && mkdir -p "$OUT"
if [ -n "$OUT" ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 >"$OUT/gpu_util.csv" 2>&1 &
    smi=$!
fi

# wheels of packages the machine lacks (see the device notes): installed beside, not into, its Python
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 3; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1

$PY - <<'EOF' || exit 4
import torch, lightning, monai
import angioseg.train.finetune, angioseg.zoo  # noqa: F401
print(f"torch {torch.__version__}, lightning {lightning.__version__}, monai {monai.__version__},",
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, cores: {__import__('os').cpu_count()}")
EOF
[ -d "$DATA" ] || { echo "no data folder $DATA"; exit 5; }

extra=()
[ -n "$EPOCHS" ] && extra+=(--epochs "$EPOCHS")
# the paper preset beside them (PAPER_JOBS processes; all labels, seed 0): what a GPU user would run
if [ "$PAPER_JOBS" -gt 0 ]; then
    # shellcheck disable=SC2086
    timeout -k 5 "$CELL_LIMIT" $PY bench/label_efficiency.py --out "$STUDY" --data "$DATA" --methods paper \
        --budgets all --folds $FOLDS --seeds 0 --jobs "$PAPER_JOBS" --no-report "${extra[@]}" &
    paper=$!
fi
# shellcheck disable=SC2086
timeout -k 5 "$CELL_LIMIT" $PY bench/label_efficiency.py --out "$STUDY" --data "$DATA" --methods $METHODS \
    --budgets $BUDGETS --folds $FOLDS --seeds $SEEDS --jobs "$JOBS" --no-report "${extra[@]}"
rc=$?
echo "cells: exit $rc after $(( $(date +%s) - t0 )) s"
[ "$rc" -eq 124 ] && rc=0  # stopped at CELL_LIMIT: by design
if [ "$PAPER_JOBS" -gt 0 ]; then
    wait "$paper"
    echo "paper preset cells: exit $? after $(( $(date +%s) - t0 )) s"
fi
pkill -KILL -f "bench/label_efficiency.py --out $STUDY " 2>/dev/null  # none should be left
sleep 1

timeout -k 5 "$SCORE_LIMIT" $PY bench/tta_choice.py --study "$STUDY" --data "$DATA" --jobs "$JOBS" >"$STUDY/tta_choice.log" 2>&1
echo "validation scoring: exit $? after $(( $(date +%s) - t0 )) s"
$PY bench/label_efficiency.py --out "$STUDY" --report >"$STUDY/report.md" 2>"$STUDY/report.err"
cat "$STUDY/report.md"

if [ -n "$OUT" ]; then
    cp "$STUDY/report.md" "$OUT/report.md"
    { nvidia-smi -L 2>/dev/null; nproc; uname -a; echo "wall $(( $(date +%s) - t0 )) s"; } >"$OUT/machine.txt"
    tar czf "$OUT/cells.tar.gz" --exclude=checkpoints --exclude=model.safetensors --exclude='*.tfevents.*' \
        --exclude='*_pseudo' -C "$(dirname "$STUDY")" "$(basename "$STUDY")"
fi
[ -n "${smi:-}" ] && kill "$smi" 2>/dev/null
echo "total $(( $(date +%s) - t0 )) s"
exit "$rc"
