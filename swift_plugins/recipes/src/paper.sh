#!/usr/bin/env bash
@GENERATED@
# Paper Table @TABLE@: @PAPER_MODEL@, trained at low, native and mixed resolution on the seven datasets,
# evaluated at low, native and mixed inference resolution, beside the zero-shot base model.
# One `medres study`: every arm through recipes/train/@MODEL@-full-<resolution>.yaml (`medres train`),
# the train x inference grid, report/index.html. Rerun the same command to resume.
#
#   bash @SCRIPT@ --dry-run      # the plan: samples, steps, visual tokens, FLOPs per arm; runs nothing
#   bash @SCRIPT@                # the study
#   bash @SCRIPT@ -- --num_train_epochs 1     # anything after -- goes to every swift sft
#   bash @SCRIPT@ --sweep               # other medres study flags too: add the zero-shot resolution sweep
#
# Prepare the four datasets without a hub copy first (medres prepare subcellular|compound|cervical|wsi).
set -euo pipefail

GPUS=${GPUS:-8}                  # GPUs per training run
MICRO_BATCH=${MICRO_BATCH:-@MICRO_BATCH@}          # per-GPU batch that fits in memory; accumulation makes the total @GLOBAL_BATCH@
WORKDIR=${WORKDIR:-study-@MODEL@}
TOKENS_PER_SECOND=${TOKENS_PER_SECOND:-}   # your measured training throughput per GPU (visual tokens/s): adds GPU hours
MEDRES=${MEDRES:-medres}
MODEL=@MODEL@
DATASETS=(subcellular compound cervical wsi vqa-rad path-vqa slake)

args=(--model "$MODEL" --nproc-per-node "$GPUS" --micro-batch "$MICRO_BATCH" --workdir "$WORKDIR")
for d in "${DATASETS[@]}"; do args+=(--dataset "$d"); done
@ZERO3@if [[ -n "$TOKENS_PER_SECOND" ]]; then args+=(--tokens-per-second "$TOKENS_PER_SECOND"); fi
if [[ "${1:-}" == "--dry-run" ]]; then
    shift
    args+=(--plan)
fi
exec "$MEDRES" study "${args[@]}" "$@"
