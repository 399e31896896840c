#!/usr/bin/env bash
# The recipe of fusionocc_core/assets/tiny_synth_v2.pt, for one modality, resumable stage by stage:
#   bash training/recipes/tiny_synth_v2.sh fusion|lidar|camera [RUNS_DIR] [INFOS]
# Stage 1 trains over all voxels (no camera mask, like the published recipe); the fine-tunes add the same loss
# terms over the camera-visible voxels (`visible_weight`), then per-class logit adjustment on 120 train keyframes
# and the evaluation on the val keyframes (written to RUNS_DIR/v2_MODALITY_eval.json). The lidar-only and
# camera-only baselines of the README run exactly this with another modality. A finished stage (model_final.pth
# present) is skipped and an interrupted one resumes from its newest checkpoint, so rerunning the same command
# continues. DRY_RUN=1 prints the commands instead of running them. ~3.5 h of 2 cores for fusion.
set -euo pipefail
modality=${1:?usage: tiny_synth_v2.sh fusion|lidar|camera [RUNS_DIR] [INFOS]}
case $modality in fusion|lidar|camera) ;; *) echo "unknown modality '$modality' (fusion, lidar or camera)" >&2; exit 2 ;; esac
runs=${2:-.cache/train_runs}
infos=${3:-data/synth30/fusionocc_infos.pkl}
fusionocc=${FUSIONOCC:-fusionocc}
base="$runs/v2_$modality"

run() { if [[ ${DRY_RUN:-0} == 1 ]]; then echo "$*"; else "$@"; fi; }

# run-folder suffix ("-" = none), steps, visible_weight, lr, warm-up steps: one line per stage; each stage after
# the first starts from the previous stage's final weights.
stages=(
  "-    3300 0  1e-3   50"
  "_ft  2200 2  5e-4   50"
  "_ft2 1400 5  3e-4   50"
  "_ft3  500 5  1.5e-4 20"
  "_ft4  800 10 2e-4   20"
)
previous=""
for stage in "${stages[@]}"; do
  read -r suffix steps weight lr warmup <<<"$stage"
  out="$base${suffix#-}"
  if [[ -f $out/model_final.pth && ${DRY_RUN:-0} != 1 ]]; then
    echo "== $out done, skipped"
  else
    run "$fusionocc" train --config training/configs/tiny_synth_fusion.yaml --infos "$infos" --device cpu \
      --modality "$modality" --out "$out" --resume auto --max-iters "$steps" --set progress=false \
      --set visible_weight="$weight" --set lr="$lr" --set warmup_iters="$warmup" \
      ${previous:+--set init_from="$previous/model_final.pth"}
  fi
  previous=$out
done
run "$fusionocc" adjust-logits --checkpoint "$previous/model_final.pth" --infos "$infos" --per-class \
  --guard-unobserved --limit 120 --half --no-progress --out "$base.pt"
run "$fusionocc" eval --infos "$infos" --checkpoint "$base.pt" --device cpu --no-progress --out "${base}_eval.json"
