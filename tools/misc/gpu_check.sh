#!/usr/bin/env bash
# One-shot GPU check: set up on a bare CUDA machine without network, verify mmcv's CUDA ops,
# train a demo config through mim, one AMP (float16) step per config family, benchmarks.
#
#   bash tools/misc/gpu_check.sh [--device cuda|cpu] [--dry-run] [--out DIR] [--wheels DIR]
#                                [--budget SECONDS] [--skip-setup]
#   bash tools/misc/gpu_check.sh --download-wheels DIR [--python-version 3.12]
#
# Everything lands in one folder, $OUT when set (the device tool's output folder), else
# work_dirs/gpu_check, as at most 8 files: gpu_check.log, summary.json, ops.json,
# amp.json, train_scalars.json, bench.json and run_all's JSON and plot. Scratch work
# (demo data, work dirs) goes to a temporary folder, never into the checkout.
#
# Set-up (skipped when mmcv's ops, mmdet and mmseg already import and run on the device):
# pip installs from local folders only (--no-index): --wheels DIR, .whl, .wheels-cuda and
# .gpu_check/wheels in the checkout (carry them to a device machine), shared/wheels-cuda,
# ../shared/wheels-cuda and $PIP_FIND_LINKS. An mmcv 2.1.0 wheel with this Python's tag is
# installed and kept only if its ops then run on the device (a wheel built against another
# torch fails to import, one without this GPU's architecture fails to launch: the one in
# ../shared/wheels-cuda is cp311, torch 2.13, sm_90 only); otherwise mmcv 2.1.0 is built
# from mmcv-2.1.0.tar.gz in those folders with its CUDA ops for the present GPU's
# architecture only (FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST from torch; setuptools<70 from the
# folders when the interpreter's setuptools lacks pkg_resources). --download-wheels DIR
# fills such a folder where PyPI is reachable (for the GPU machine's Python, default 3.12).
#
# The steps share a time budget (default 570 s, inside a 10-minute call); each step gets
# what is left, at most its own cap, and one failing step does not stop the others.
# --device cpu --dry-run rehearses every step on the CPU at toy sizes (tests run it).
set -u -o pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DEVICE=cuda
DRY_RUN=0
SKIP_SETUP=0
BUDGET=570
WHEELS=""
DOWNLOAD=""
PY_VERSION=3.12
OUT_DIR="${OUT:-$REPO/work_dirs/gpu_check}"
PYTHON="${PYTHON:-python3}"
DEMO_CONFIG="${DEMO_CONFIG:-augfpn_faster_rcnn_r50_demo.py}"

while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --skip-setup) SKIP_SETUP=1; shift ;;
        --out) OUT_DIR=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        --download-wheels) DOWNLOAD=$2; shift 2 ;;
        --python-version) PY_VERSION=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/!p}' "$0"; exit 0 ;;
        *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "error: --device must be cuda or cpu" >&2; exit 2 ;; esac

# What mmplug_agg's stack needs beyond the GPU image (which has torch, torchvision, numpy,
# scipy, pandas, matplotlib, opencv, regex, rich, tabulate, click, requests, markdown...),
# installed with --no-deps: openmim's opendatalab (dataset downloads) pins an old
# setuptools and is left out; mim train/test do not need it.
PACKAGES_LIST="mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 openmim model-index
    ordered-set addict yapf platformdirs termcolor terminaltables pycocotools shapely ftfy
    wcwidth prettytable"
read -r -a PACKAGES <<< "$(echo $PACKAGES_LIST)"

if [ -n "$DOWNLOAD" ]; then
    # Here, with PyPI: wheels for the GPU machine's Python, and mmcv's sdist to build there.
    mkdir -p "$DOWNLOAD"
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$DOWNLOAD" "${PACKAGES[@]}" || exit 1
    "$PYTHON" -m pip download --no-deps --no-binary=:all: -d "$DOWNLOAD" mmcv==2.1.0 || exit 1
    "$PYTHON" -m pip download --no-deps --only-binary=:all: -d "$DOWNLOAD" 'setuptools<70' \
        || exit 1
    echo "wheels for Python $PY_VERSION and the mmcv sdist are in $DOWNLOAD"
    exit 0
fi

mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1
START=$(date +%s)
STEPS=()
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

remaining() { echo $((BUDGET - ($(date +%s) - START))); }

# run_step NAME CAP_SECONDS COMMAND...: run with the lesser of CAP and the budget left
# (a command or one of the functions below, exported for the timed child shell).
run_step() {
    local name=$1 cap=$2 left status began
    shift 2
    left=$(remaining)
    [ "$left" -lt "$cap" ] && cap=$left
    began=$(date +%s)
    echo "===== $name (up to ${cap}s): $*"
    if [ "$cap" -le 5 ]; then
        status=skipped
    elif timeout --kill-after=10 "$cap" bash -c '"$@"' "$name" "$@"; then
        status=ok
    else
        local code=$?
        status=$([ $code -eq 124 ] || [ $code -eq 137 ] && echo timeout || echo "failed($code)")
    fi
    echo "===== $name: $status in $(($(date +%s) - began))s"
    STEPS+=("$name=$status:$(($(date +%s) - began))")
}

stack_ready() {
    # mmcv's compiled ops must import and run on the device (a wheel built for another torch
    # fails to import; one without kernels for this GPU fails at the first launch).
    "$PYTHON" - "$DEVICE" <<'PY'
import sys
import torch
from mmcv.ops import RoIAlign, nms
import mmdet, mmseg, mmengine  # noqa: F401
dev = sys.argv[1]
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]], device=dev)
nms(boxes, torch.tensor([0.9, 0.8], device=dev), 0.5)
rois = torch.tensor([[0., 0., 0., 8., 8.]], device=dev)
RoIAlign((2, 2), 1.0)(torch.rand(1, 2, 8, 8, device=dev), rois)
PY
}

# mmcv_wheel DIR...: the mmcv 2.1.0 wheel for this interpreter's tag in the first folder that
# has one (pip would take any cp3XY wheel of the right tag, whatever torch or GPU it was
# built for: stack_ready decides whether it fits).
mmcv_wheel() {
    local tag dir
    tag=$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    for dir in "$@"; do
        ls "$dir"/mmcv-2.1.0-"$tag"-"$tag"-*linux*_x86_64.whl 2>/dev/null | head -1
    done | head -1
}

wheel_dirs() {
    local dir
    for dir in "$WHEELS" "$REPO/.whl" "$REPO/.wheels-cuda" "$REPO/.gpu_check/wheels" \
               "$REPO/shared/wheels-cuda" "$REPO/../shared/wheels-cuda" \
               ${PIP_FIND_LINKS:-}; do
        [ -n "$dir" ] && [ -d "$dir" ] && echo "$dir"
    done
}

setup() {
    local dirs=() links=() dir arch packages wheel sdist build_path
    read -r -a packages <<< "$(echo $PACKAGES_LIST)"
    mapfile -t dirs < <(wheel_dirs)
    for dir in "${dirs[@]}"; do links+=(--find-links "$dir"); done
    wheel=$(mmcv_wheel "${dirs[@]}")
    sdist=$(for dir in "${dirs[@]}"; do ls "$dir"/mmcv-2.1.0.tar.gz 2>/dev/null; done | head -1)
    echo "python: $("$PYTHON" -V 2>&1)," \
         "torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
    echo "wheel folders: ${dirs[*]:-none}"
    echo "mmcv plan: wheel for this Python: ${wheel:-none}; sdist: ${sdist:-none}"
    if stack_ready >/dev/null 2>&1; then
        echo "mmcv (ops on $DEVICE), mmdet, mmseg import and run: nothing to install"
    elif [ "$DRY_RUN" = 1 ]; then
        echo "dry run: would install ${packages[*]}, then mmcv from ${wheel:-the sdist}" \
             "(verified on $DEVICE, else built from ${sdist:-nothing})"
        return 1
    else
        [ ${#links[@]} -eq 0 ] && { echo "no wheel folder found (see --wheels)"; return 1; }
        "$PYTHON" -m pip install --no-index --no-deps "${links[@]}" "${packages[@]}" || return 1
        if [ -n "$wheel" ]; then
            "$PYTHON" -m pip install --no-index --no-deps --force-reinstall "$wheel" || return 1
            if stack_ready; then
                echo "mmcv: $wheel fits this torch and GPU"
            else
                echo "mmcv: $wheel does not run here (built for another torch or GPU): building"
                "$PYTHON" -m pip uninstall -y mmcv
                wheel=""
            fi
        fi
        if [ -z "$wheel" ]; then
            [ -z "$sdist" ] && { echo "no mmcv-2.1.0.tar.gz in the wheel folders"; return 1; }
            arch=$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
            # mmcv 2.1.0's setup.py imports pkg_resources, gone from recent setuptools.
            build_path="${PYTHONPATH:-}"
            if ! "$PYTHON" -c 'import pkg_resources' 2>/dev/null; then
                "$PYTHON" -m pip install --no-index --no-deps --target "$SCRATCH/build_tools" \
                    "${links[@]}" 'setuptools<70' || return 1
                build_path="$SCRATCH/build_tools${build_path:+:$build_path}"
            fi
            echo "mmcv: building $sdist with CUDA ops for sm_${arch/./} only"
            PYTHONPATH="$build_path" FORCE_CUDA=1 MMCV_WITH_OPS=1 TORCH_CUDA_ARCH_LIST="$arch" \
                MAX_JOBS="$(nproc)" "$PYTHON" -m pip install --no-index --no-deps \
                --no-build-isolation "$sdist" || return 1
        fi
    fi
    # mim resolves installed packages only. A regular install: a PEP 660 editable one hides
    # the package's folder from mim; imports still come from the checkout (PYTHONPATH).
    "$PYTHON" -m pip show mmplug_agg >/dev/null 2>&1 || [ "$DRY_RUN" = 1 ] || \
        "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation "$REPO" || return 1
    stack_ready
}

make_data() {
    local size=256 train=8 val=4
    [ "$DRY_RUN" = 1 ] && size=128 train=2 val=1
    mkdir -p "$SCRATCH/data"
    "$PYTHON" "$REPO/tools/misc/make_demo_data.py" --out "$SCRATCH/data/demo" \
        --num-train $train --num-val $val --size $size
}

train() {
    # mim finds our tools and the config by its basename; configs read data/demo from the cwd.
    local options=(train_cfg.max_epochs=1 train_cfg.val_interval=1
                   default_hooks.checkpoint.interval=1 default_hooks.logger.interval=1
                   train_dataloader.batch_size=2 train_dataloader.num_workers=0
                   train_dataloader.persistent_workers=False val_dataloader.num_workers=0
                   val_dataloader.persistent_workers=False)
    local cmd=(mim train mmplug_agg "$DEMO_CONFIG" --launcher pytorch --gpus 1)
    if ! command -v mim >/dev/null 2>&1; then  # what mim would run
        echo "mim not on PATH: launching tools/train.py through torch.distributed.run"
        cmd=("$PYTHON" -m torch.distributed.run --nproc_per_node=1
             "$REPO/tools/train.py" "$REPO/configs/$DEMO_CONFIG" --launcher pytorch)
    fi
    (cd "$SCRATCH" && "${cmd[@]}" --work-dir "$SCRATCH/train" --cfg-options "${options[@]}") \
        || return 1
    local scalars
    scalars=$(ls -t "$SCRATCH"/train/*/vis_data/scalars.json 2>/dev/null | head -1)
    [ -n "$scalars" ] && cp "$scalars" "$OUT_DIR/train_scalars.json"
    grep -q '"loss"' "$OUT_DIR/train_scalars.json"
}

export REPO DEVICE DRY_RUN PYTHON WHEELS SCRATCH OUT_DIR DEMO_CONFIG PACKAGES_LIST
export -f stack_ready mmcv_wheel wheel_dirs setup make_data train
CHECK=("$PYTHON" "$REPO/tools/misc/gpu_check.py")
if [ "$DRY_RUN" = 1 ]; then
    AMP_ARGS=(--configs fpn_faster_rcnn_r50_demo --shape 64 96)
    BENCH_ARGS=(--only dlaup)
else
    AMP_ARGS=(--configs families)
    BENCH_ARGS=()
fi

echo "gpu_check: device $DEVICE, dry run $DRY_RUN, budget ${BUDGET}s, output $OUT_DIR"
nvidia-smi 2>/dev/null | head -15 || echo "nvidia-smi: not available"
if [ "$SKIP_SETUP" = 1 ]; then STEPS+=("setup=skipped:0"); else run_step setup 420 setup; fi
run_step demo_data 60 make_data
run_step ops 120 "${CHECK[@]}" ops --device "$DEVICE" --out "$OUT_DIR"
run_step train 240 train
run_step amp 240 "${CHECK[@]}" amp --device "$DEVICE" --out "$OUT_DIR" "${AMP_ARGS[@]}"
run_step bench 300 "${CHECK[@]}" bench --device "$DEVICE" --out "$OUT_DIR" "${BENCH_ARGS[@]}"

"$PYTHON" - "$OUT_DIR/summary.json" "$DEVICE" "$DRY_RUN" "$(($(date +%s) - START))" \
    "${STEPS[@]}" <<'PY'
import json, platform, sys
import torch
path, device, dry_run, seconds, *steps = sys.argv[1:]
summary = dict(device=device, dry_run=dry_run == '1', seconds=int(seconds),
               python=platform.python_version(), torch=torch.__version__,
               gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               steps={})
for step in steps:
    name, rest = step.split('=', 1)
    status, took = rest.rsplit(':', 1)
    summary['steps'][name] = dict(status=status, seconds=int(took))
json.dump(summary, open(path, 'w'), indent=1)
PY
rm -rf "$SCRATCH"
FAILED=$(printf '%s\n' "${STEPS[@]}" | grep -v -e '=ok:' -e '=skipped:' | cut -d= -f1 | xargs)
echo "gpu_check: ${#STEPS[@]} steps in $(($(date +%s) - START))s; failed: ${FAILED:-none};" \
     "results in $OUT_DIR"
[ -z "$FAILED" ]
