#!/usr/bin/env bash
# Success-rate curves (mean +- std over seeds, per method and per task) and mixture heatmaps
# from the rl-zoo3 log folder, plus the heatmap of one saved model.
set -euo pipefail
LOGS=${LOGS:-logs}
MPLBACKEND=Agg python -m sb3_qmp.plot "$LOGS" -o "$LOGS/plots" \
  --heatmap "$LOGS/qmp/MultiGoalPoint-v0_1/MultiGoalPoint-v0.zip"
ls -l "$LOGS/plots"
