"""Helpers for tests that run this repository's command-line tools as a user would."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / 'configs'
TOOLS_DIR = REPO_ROOT / 'tools'

# Keeps a demo-config train run to a few iterations on 2 cores.
QUICK_TRAIN_OPTIONS = (
    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1',
    'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
)


def quick_options(*extra: str) -> List[str]:
    return ['--cfg-options', *QUICK_TRAIN_OPTIONS, *extra]


def run_tool(args: Sequence, cwd: Path, timeout: float = 600,
             launcher: Sequence[str] = (sys.executable, ),
             env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``launcher + args`` in ``cwd``; output is captured as text."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run([*launcher, *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ''


_LOADED_TOOLS: dict = {}


def load_tool(path: Path) -> ModuleType:
    """A tool script as a module (its ``main``, its ``run_cli``), loaded once per path."""
    path = Path(path)
    if path not in _LOADED_TOOLS:
        spec = importlib.util.spec_from_file_location(f'tool_{path.stem}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED_TOOLS[path] = module
    return _LOADED_TOOLS[path]


def run_tool_in_process(path: Path, args: Sequence, cwd: Path, monkeypatch,
                        capsys) -> Tuple[int, str]:
    """``python path args`` in ``cwd`` without starting an interpreter: (exit code, stderr).

    For a tool's error paths, which end before anything heavy is built: the
    tool's own ``run_cli(main)`` runs with ``sys.argv`` set, as under
    ``__main__``. Keep one real process start per tool (:func:`run_tool`) for
    the whole way a user goes.
    """
    tool = load_tool(path)
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, 'argv', [str(path), *map(str, args)])
    capsys.readouterr()
    try:
        tool.run_cli(tool.main)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capsys.readouterr().err
