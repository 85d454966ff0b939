#!/usr/bin/env bash
# The leak-free study (rbcray/configs/sweep-study.yaml) from nothing but the public data:
#
#   benchmarks/run_study.sh [OUT] [--tiny]          (default OUT: study-output)
#
# For Chula-RBC-12 and for BCCD-TXL: annotate (derived masks), split by image (Chula seeded
# 0.75/0.10/0.15; BCCD keeps its own train/val/test folders), then build the shape bank, the
# synthesis statistics and a pix2pixHD from the TRAIN role only, generate synthetic shards, and
# finally run the evaluation sweep, which refuses any synthetic input built from a val or test
# image. Every step is skipped when its output is complete, so re-running resumes (the sweep
# resumes from Ray Tune's checkpoints). --tiny shrinks every count for a smoke run of minutes.
# Times of each step go to OUT/times.txt.
set -euo pipefail
OUT=${1:-study-output}
TINY=0
[[ "${2:-}" == "--tiny" || "${1:-}" == "--tiny" ]] && TINY=1
[[ "$OUT" == "--tiny" ]] && OUT=study-output-tiny
PY=${PYTHON:-python}
RB="$PY -m rbcray"
mkdir -p "$OUT"
T0=$(date +%s)
step() {  # step NAME DONE_FILE CMD...: run CMD unless DONE_FILE exists; log its time
  local name=$1 done=$2; shift 2
  if [[ -e "$done" ]]; then echo "== $name: done already ($done)"; return 0; fi
  echo "== $name: $*"
  local t=$(date +%s)
  "$@"
  echo "$name $(( $(date +%s) - t )) s" | tee -a "$OUT/times.txt"
}

# pix2pixHD: the demo config (both stages, 128-px crops); BCCD's for a third of the epochs (the
# human-label check needs its own generator, not a good one, within the CPU budget)
if [[ $TINY == 1 ]]; then
  CHULA_LIMIT="--limit 60"; N_SYN=24
  CHULA_GAN="--stage1-epochs 2 --stage2-epochs 1 --samples-per-epoch 16"; BCCD_GAN=$CHULA_GAN
else
  CHULA_LIMIT=""; N_SYN=200
  CHULA_GAN=""; BCCD_GAN="--stage1-epochs 10 --stage2-epochs 5"
fi

build() {  # build NAME SOURCE SPLIT_ARGS
  local name=$1 source=$2; shift 2
  local d="$OUT/$name"
  mkdir -p "$d"
  step "$name annotate" "$d/annotated/dataset.json" \
    $RB annotate "$source" --out "$d/annotated" --workers 2 ${LIMIT:-}
  step "$name split" "$d/splits.json" $RB split "$d/annotated" --out "$d/splits.json" "$@"
  # every stage that learns does so from the train role only, and records its stems
  local data="$d/annotated" role=(--splits "$d/splits.json" --split train)
  step "$name shapes" "$d/shapes.parquet" $RB shapes "$data" --out "$d/shapes.parquet" "${role[@]}"
  step "$name stats" "$d/stats.json" $RB stats "$data" --json "$d/stats.json" --markdown "$d/stats.md" "${role[@]}"
  step "$name pix2pixHD" "$d/p2p/model/model.json" \
    $RB train --data "$data" --out "$d/p2p" --config demo --no-ray --threads 2 $GAN "${role[@]}"
  step "$name generate" "$d/shards/manifest.json" \
    $RB generate --checkpoint "$d/p2p" --shapes "$d/shapes.parquet" --stats "$d/stats.json" \
      --num-samples $N_SYN --out "$d/shards" --seed 1 --local --no-progress
}

LIMIT=$CHULA_LIMIT GAN=$CHULA_GAN build chula chula-rbc-12 --val 0.10 --test 0.15 --seed 0
LIMIT="" GAN=$BCCD_GAN build bccd bccd-txl-pbc

CFG=rbcray/configs/sweep-study.yaml
if [[ $TINY == 1 ]]; then
  CFG="$OUT/sweep-study-tiny.yaml"
  $PY benchmarks/study_tiny_config.py rbcray/configs/sweep-study.yaml "$OUT" > "$CFG"
elif [[ "$OUT" != study-output ]]; then
  CFG="$OUT/sweep-study.yaml"
  sed "s#study-output/#$OUT/#g" rbcray/configs/sweep-study.yaml > "$CFG"
fi
t=$(date +%s)
$RB evaluate --config "$CFG" --out "$OUT/evaluate" ${EVAL_ARGS:-}
echo "evaluate $(( $(date +%s) - t )) s" | tee -a "$OUT/times.txt"
echo "study total $(( $(date +%s) - T0 )) s (this invocation)" | tee -a "$OUT/times.txt"
