#!/usr/bin/env bash
# One-command, idempotent set-up: creates .venv and installs torch, mmcv (with compiled ops),
# mmengine, mmdet, mmseg, the test tools and this package (editable).
# Honours PIP_FIND_LINKS (e.g. a folder holding a prebuilt mmcv 2.1.0 wheel).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${MMPLUG_VENV:-$root/.venv}"
py="$venv/bin/python"
stamp="$venv/.mmplug_agg_setup"
stamp_key="$(cat setup.py requirements/*.txt tools/setup_env.sh | sha1sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ] && "$py" -c 'import mmplug_agg' 2>/dev/null; then
  echo "[setup] $venv is up to date"
  exit 0
fi

if [ ! -x "$py" ]; then
  echo "[setup] creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
pip_install() { "$py" -m pip install --disable-pip-version-check "$@"; }

# torch + torchvision: keep whatever pair already works (never replace a working torch).
if "$py" -c 'import torch, torchvision.ops as o; o.nms(torch.zeros(1, 4), torch.zeros(1), 0.5)' 2>/dev/null; then
  echo "[setup] keeping the installed torch $("$py" -c 'import torch; print(torch.__version__)')"
else
  # The local '+cpu' torch 2.13.0 cannot run beside PyPI's torchvision; take the PyPI build.
  echo "[setup] installing torch and torchvision (large download on first run)"
  pip_install "torch==2.13.0,!=2.13.0+cpu" "torchvision==0.28.0"
fi

# Pin the torch pair from here on, so that no later requirement swaps it for another build.
constraints="$venv/.mmplug_agg_constraints.txt"
"$py" - > "$constraints" <<'PY'
from importlib.metadata import version
for name in ('torch', 'torchvision'):
    print(f'{name}=={version(name)}')
# mmengine needs pkg_resources at run time (gone from setuptools 81), and from setuptools 80
# on an editable install no longer leaves the egg-link through which mim finds our .mim
# folder; torch 2.13 wants setuptools >= 77.
print('setuptools>=77,<80' if int(version('torch').split('.')[1]) >= 13 else 'setuptools<80')
PY

# mmcv 2.1.0 with compiled ops. A wheel on PIP_FIND_LINKS is taken when it fits; otherwise
# it builds from source, which needs pkg_resources from setuptools < 70 and must see the
# installed torch (no build isolation).
if "$py" -c 'import mmcv, mmcv._ext; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  echo "[setup] mmcv 2.1.0 with ops already installed"
else
  pip_install "setuptools<70" wheel ninja
  echo "[setup] installing mmcv 2.1.0 with ops (a source build takes 20-30 min on 2 cores)"
  MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    pip_install --no-build-isolation "mmcv==2.1.0"
fi

pip_install -c "$constraints" setuptools -r requirements/runtime.txt -r requirements/tests.txt
# openmim's optional dataset downloader (opendatalab -> openxlab) pins setuptools 60, which
# torch 2.13 refuses; mim's train/test/search commands do not need it.
pip_install -c "$constraints" --no-deps openmim
pip_install -c "$constraints" Click colorama model-index pandas rich tabulate requests
pip_install -c "$constraints" --no-build-isolation --no-deps -e .
"$py" -c "import sys; from mmplug_agg.utils.check_env import main; sys.exit(main())"
echo "$stamp_key" > "$stamp"
echo "[setup] done: activate with 'source $venv/bin/activate'"
