"""Run stock `swift <command>` from this environment, log to a file, show a spinner."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from rich.console import Console

PLUGIN_PATH = Path(__file__).parent / 'plugin' / 'medres_plugin.py'
# Environment that keeps a run off every hub: tests, the demo, air-gapped clusters.
OFFLINE_ENV = {'HF_HUB_OFFLINE': '1', 'MODELSCOPE_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}

console = Console(stderr=True)


class SwiftRunError(RuntimeError):
    pass


def swift_executable() -> str:
    """The `swift` console script of this interpreter's environment (not whatever is on PATH)."""
    candidate = Path(sys.executable).parent / 'swift'
    if candidate.is_file():
        return str(candidate)
    found = shutil.which('swift')
    if not found:
        raise SwiftRunError('ms-swift is not installed in this environment (no `swift` command)')
    return found


def run_swift(command: str, args: Sequence[str], *, log_path: Path, env: Optional[Mapping[str, str]] = None,
              title: Optional[str] = None) -> None:
    """Run `swift <command> --external_plugins <medres plugin> <args>`; raise with the log tail on failure."""
    argv = [swift_executable(), command, '--external_plugins', str(PLUGIN_PATH), *map(str, args)]
    full_env = {**os.environ, **(env or {})}
    # Headless CPU runs: keep ms-swift from probing for accelerators that are not there.
    full_env.setdefault('PYTHONUNBUFFERED', '1')
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, 'w') as log, console.status(f'{title or "swift " + command}  (log: {log_path})'):
        log.write('$ ' + ' '.join(argv) + '\n')
        log.flush()
        proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    if proc.returncode != 0:
        tail = ''.join(log_path.read_text(errors='replace').splitlines(keepends=True)[-40:])
        raise SwiftRunError(f'swift {command} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail}')


def last_checkpoint(output_dir: Path) -> Path:
    """The newest `checkpoint-N` under an sft output dir (with or without ms-swift's version folder)."""
    ckpts = sorted(output_dir.glob('**/checkpoint-*'), key=lambda p: (p.stat().st_mtime, p.name))
    ckpts = [p for p in ckpts if (p / 'config.json').is_file() or (p / 'adapter_config.json').is_file()]
    if not ckpts:
        raise SwiftRunError(f'no checkpoint-* folder under {output_dir}')
    return ckpts[-1]
