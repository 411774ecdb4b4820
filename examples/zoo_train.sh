#!/usr/bin/env bash
# rl-zoo3: train QMP and a baseline with the packaged configs, then watch the QMP agent.
# Tiny budget by default; pass e.g. N=20000 for the full MultiGoalPoint-v0 config.
set -euo pipefail
N=${N:-2000}
LOGS=${LOGS:-logs}
for algo in qmp separated; do
  python -m rl_zoo3.train --algo "$algo" --env MultiGoalPoint-v0 -n "$N" -f "$LOGS" --seed 0 --eval-freq -1 --num-threads 1
done
# The same through the explicit wrapper (works even with the start-up hook disabled):
SB3_QMP_NO_ZOO_HOOK=1 python -m sb3_qmp.train --algo qmp --env MultiGoalPoint-v0 -n "$N" -f "$LOGS" --seed 1 --eval-freq -1 --num-threads 1
python -m rl_zoo3.enjoy --algo qmp --env MultiGoalPoint-v0 -f "$LOGS" --no-render -n 300
