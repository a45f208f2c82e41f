#!/usr/bin/env bash
# The paper-size x²+y² phase diagram in one accelerator call: Power et al.'s 2-layer transformer
# on x²+y² mod 97, fractions 0.1-0.9 x SEEDS seeds x 1e5 steps, evaluations on a log schedule.
#
#   bash experiments/jobs/x2_plus_y2_p97.sh            # on the device machine; writes into $OUT
#   P=11 STEPS=40 SEEDS=1 BUDGET_S=60 bash experiments/jobs/x2_plus_y2_p97.sh   # a CPU check
#
# The device image has JAX, Flax, optax, Orbax, pandas and matplotlib but no network, so the
# repository runs from its source tree (PYTHONPATH), not from an install. Training stops with
# SIGTERM at BUDGET_S seconds if it has not finished: the sweep then saves a checkpoint and its
# metrics table at the step reached (finished evaluations are never lost), and the tables and
# figures are drawn from what is there. metrics.csv, config.json, phases.csv, cells.csv,
# spikes.csv and the phase diagram come back in $OUT (at most 8 files); the checkpoints stay
# on the machine (RUN_DIR), where `--resume` continues them while it is warm.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/x2_plus_y2_p97_out}
RUN_DIR=${RUN_DIR:-runs/x2_plus_y2_p97}
P=${P:-97}
SEEDS=${SEEDS:-3}
STEPS=${STEPS:-100000}
BUDGET_S=${BUDGET_S:-420}
PRECISION=${PRECISION:-highest}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/device.txt" 2>/dev/null \
  || echo "no GPU: $(uname -m), $(nproc) cores" > "$OUT/device.txt"
start=$(date +%s)
timeout -s TERM -k 60 "$BUDGET_S" "$PY" experiments/phase_diagram.py --op=x2_plus_y2 --p="$P" \
  --fractions=0.1:0.9:9 --seeds="$SEEDS" --steps="$STEPS" --log_eval=200 \
  --checkpoint_every=$((STEPS / 10 > 0 ? STEPS / 10 : 1)) --matmul_precision="$PRECISION" \
  --out="$RUN_DIR" --nofigures $( [ -f "$RUN_DIR/config.json" ] && echo --resume ) \
  2>&1 | tee "$OUT/train.log" | tail -n 40
rc=${PIPESTATUS[0]}
end=$(date +%s)
echo "training: exit $rc, $((end - start)) s wall (budget $BUDGET_S s)" | tee -a "$OUT/device.txt"
"$PY" experiments/plot.py --run="$RUN_DIR" >> "$OUT/train.log" 2>&1 || tail -n 20 "$OUT/train.log"
for f in metrics.csv config.json phases.csv cells.csv spikes.csv; do
  [ -f "$RUN_DIR/$f" ] && cp "$RUN_DIR/$f" "$OUT/"
done
[ -f "$RUN_DIR/figures/phase_diagram.png" ] && cp "$RUN_DIR/figures/phase_diagram.png" "$OUT/"
ls -la "$OUT"
