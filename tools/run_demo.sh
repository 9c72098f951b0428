#!/usr/bin/env bash
# The README's main job: make the demo data, train CONFIG on CPU, evaluate the final
# checkpoint, draw its predictions, and say where everything went.
# Usage: bash tools/run_demo.sh [CONFIG] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/augfpn_faster_rcnn_r50_demo.py}"
name="$(basename "$config" .py)"
work_dir="${2:-work_dirs/$name}"
py=.venv/bin/python
[ -x "$py" ] || py=python

"$py" tools/misc/make_demo_data.py --out data/demo
"$py" tools/train.py "$config" --work-dir "$work_dir"
checkpoint="$(cat "$work_dir/last_checkpoint")"
"$py" tools/test.py "$config" "$checkpoint" --work-dir "$work_dir/test" --show-dir predictions

run_dir="$(ls -td "$work_dir"/test/*/ | head -n 1)"
echo
echo "Demo finished ($config):"
echo "  training log:  $(ls -t "$work_dir"/*/*.log | head -n 1)"
echo "  checkpoint:    $checkpoint"
echo "  test metrics:  ${run_dir}$(basename "${run_dir%/}").json"
echo "  predictions:   ${run_dir}predictions/"
grep -h -o '"coco/bbox_mAP[^,]*' "${run_dir}$(basename "${run_dir%/}").json" | sed 's/^/  /' || true
