#!/usr/bin/env bash
# Optuna tuning with a shared, resumable study. Run this script in several shells (or machines
# sharing the storage) to add workers; re-running it resumes the same study.
# Storage: any SQLAlchemy URL (sqlite:///qmp.db, postgresql://...) or a journal file (qmp.log).
set -euo pipefail
STORAGE=${STORAGE:-sqlite:///qmp_tuning.db}
python -m rl_zoo3.train --algo qmp --env MultiGoalPoint-v0 -n "${N:-1000}" -f "${LOGS:-logs}" --num-threads 1 \
  -optimize --n-trials "${TRIALS:-2}" --n-evaluations 1 --eval-episodes 4 \
  --storage "$STORAGE" --study-name "${STUDY:-qmp_point}" --sampler tpe --pruner median --no-optim-plots
# Retrain with the best trial's hyperparameters (or any --trial-id N > 0):
# python -m rl_zoo3.train --algo qmp --env MultiGoalPoint-v0 --storage "$STORAGE" --study-name qmp_point --trial-id 1
