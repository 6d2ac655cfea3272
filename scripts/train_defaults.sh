#!/bin/bash
# Train every default model (the four motor experts, the strategic and tactical planners, the
# router) from the collected demonstrations into OUT (default runs/train_defaults), timed: two
# streams on the two cores, then the router, which labels from the freshly trained experts.
#   bash scripts/train_defaults.sh [OUT]
# Needs the datasets of hybrid_vla_ros/checkpoints/arm7/motor/TRAINED_WITH.md under runs/data2/
# and its DAgger round-1 datasets under runs/dagger/; DAgger round 2 is collected here, driven
# by the freshly trained coarse_to_fine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=$(realpath -m "${1:-runs/train_defaults}")
D=runs/data2/reach,runs/data2/detour,runs/data2/multimodal,runs/data2/pick_place,runs/data2/stack
mkdir -p "$OUT"
T0=$(date +%s)
( for e in token flow diffusion; do
    hybrid-vla train motor --expert $e --data $D --out "$OUT/motor/$e" --steps 4000 \
        --val-every 2000 --threads 1
    echo "stream A: $e done at $(( $(date +%s) - T0 )) s"
  done ) > "$OUT/stream_a.log" 2>&1 &
PA=$!
R1=$D,runs/dagger/reach_r1,runs/dagger/detour_r1,runs/dagger/multimodal_r1
C2F="--expert coarse_to_fine --bins 256 --mu-law 255 --log-error --balance-tasks --ensemble 8
     --temperature 0 --threads 1"
( hybrid-vla train motor $C2F --data $R1 --out "$OUT/motor/coarse_to_fine" --steps 6000 \
      --val-every 3000
  hybrid-vla collect --task reach --episodes 200 --seed 30000 --out "$OUT/dagger/reach_r2" \
      --dagger "$OUT/motor/coarse_to_fine" --no-images
  hybrid-vla train motor $C2F --data "$R1,$OUT/dagger/reach_r2" \
      --out "$OUT/motor/coarse_to_fine" --steps 8000 --val-every 2000 --resume
  echo "stream B: coarse_to_fine done at $(( $(date +%s) - T0 )) s"
  python -m hybrid_vla_ros.training.planner_cli strategic --out "$OUT/planner" --episodes 60 --seed 0 \
      --threads 1
  echo "stream B: strategic done at $(( $(date +%s) - T0 )) s"
  python -m hybrid_vla_ros.training.planner_cli tactical --out "$OUT/planner" --episodes 100 --seed 0 \
      --threads 1 --epochs 150
  echo "stream B: tactical done at $(( $(date +%s) - T0 )) s" ) > "$OUT/stream_b.log" 2>&1 &
PB=$!
wait $PA
wait $PB
hybrid-vla train router --episodes 8 --workers 2 --checkpoints "$OUT/motor" --out "$OUT/motor/router" \
    > "$OUT/router.log" 2>&1
grep -h "done at" "$OUT/stream_a.log" "$OUT/stream_b.log"
echo "train_defaults: all default models in $(( $(date +%s) - T0 )) s -> $OUT"
