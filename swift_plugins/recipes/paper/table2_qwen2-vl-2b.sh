#!/usr/bin/env bash
# Paper Table 2: Qwen2-VL-2B-Instruct, trained at low, native and mixed resolution on the seven datasets,
# evaluated at low, native and mixed inference resolution, beside the zero-shot base model.
# One `medres study`: every arm through recipes/train/qwen2-vl-2b-full-<resolution>.yaml (`medres train`),
# the train x inference grid, report/index.html. Rerun the same command to resume.
#
#   bash table2_qwen2-vl-2b.sh --dry-run      # the plan: samples, steps, visual tokens, FLOPs per arm; runs nothing
#   bash table2_qwen2-vl-2b.sh                # the study
#   bash table2_qwen2-vl-2b.sh -- --num_train_epochs 1     # anything after -- goes to every swift sft
#   bash table2_qwen2-vl-2b.sh --sweep               # other medres study flags too: add the zero-shot resolution sweep
#
# Prepare the four datasets without a hub copy first (medres prepare subcellular|compound|cervical|wsi).
set -euo pipefail

GPUS=${GPUS:-8}                  # GPUs per training run
MICRO_BATCH=${MICRO_BATCH:-2}          # per-GPU batch that fits in memory; accumulation makes the total 128
WORKDIR=${WORKDIR:-study-qwen2-vl-2b}
TOKENS_PER_SECOND=${TOKENS_PER_SECOND:-}   # your measured training throughput per GPU (visual tokens/s): adds GPU hours
MEDRES=${MEDRES:-medres}
MODEL=qwen2-vl-2b
DATASETS=(subcellular compound cervical wsi vqa-rad path-vqa slake)

args=(--model "$MODEL" --nproc-per-node "$GPUS" --micro-batch "$MICRO_BATCH" --workdir "$WORKDIR")
for d in "${DATASETS[@]}"; do args+=(--dataset "$d"); done
if [[ -n "$TOKENS_PER_SECOND" ]]; then args+=(--tokens-per-second "$TOKENS_PER_SECOND"); fi
if [[ "${1:-}" == "--dry-run" ]]; then
    shift
    args+=(--plan)
fi
exec "$MEDRES" study "${args[@]}" "$@"
