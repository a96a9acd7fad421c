"""Run stock `swift <command>` (or any medres subprocess) with an explicit environment, logged to a file."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from rich.console import Console

from ..errors import RunError

PLUGIN_PATH = Path(__file__).resolve().parent.parent / 'plugin' / 'medres_plugin.py'
LOG_TAIL_LINES = 40

console = Console(stderr=True)


def swift_executable() -> str:
    """The `swift` console script of this interpreter's environment (not whatever is on PATH)."""
    candidate = Path(sys.executable).parent / 'swift'
    if candidate.is_file():
        return str(candidate)
    found = shutil.which('swift')
    if not found:
        raise RunError('ms-swift is not installed in this environment (no `swift` command)')
    return found


def run_logged(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str], name: str,
               cwd: Optional[Path] = None, poll: Callable[[], None] = lambda: None) -> float:
    """Run `argv` with its output in `log_path` (the command line first), calling `poll` every 2 s
    while it runs; seconds taken. A failure raises with `name` and the log's last lines."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        log.write('$ ' + ' '.join(map(str, argv)) + '\n')
        log.flush()
        proc = subprocess.Popen(list(map(str, argv)), stdout=log, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd)
        while True:
            try:
                proc.wait(timeout=2)
                break
            except subprocess.TimeoutExpired:
                poll()
    if proc.returncode != 0:
        tail = ''.join(log_path.read_text(errors='replace').splitlines(keepends=True)[-LOG_TAIL_LINES:])
        raise RunError(f'{name} failed (exit {proc.returncode}); log: {log_path}; its last lines:\n{tail}')
    return time.perf_counter() - start


def run_swift(command: str, args: Sequence[str], *, log_path: Path, env: Mapping[str, str],
              title: Optional[str] = None, config: Optional[Path] = None, spinner: bool = True) -> float:
    """Run `swift <command> [<config.yaml>] --external_plugins <medres plugin> <args>` in exactly `env`.

    Output goes to `log_path`; a failure raises `RunError` with the log's path and last lines.
    `config` is a recipe YAML, which ms-swift only reads as the first argument. Seconds taken.
    """
    argv = [swift_executable(), command, *([str(config)] if config else []),
            '--external_plugins', str(PLUGIN_PATH), *map(str, args)]
    full_env = {'PYTHONUNBUFFERED': '1', **env}
    status = console.status(f'{title or "swift " + command}  (log: {log_path})') if spinner else nullcontext()
    with status:
        return run_logged(argv, log_path=log_path, env=full_env, name=title or f'swift {command}')


def last_checkpoint(output_dir: Path) -> Path:
    """The newest `checkpoint-N` under an sft output dir (with or without ms-swift's version folder)."""
    ckpts = sorted(output_dir.glob('**/checkpoint-*'), key=lambda p: (p.stat().st_mtime, p.name))
    ckpts = [p for p in ckpts if (p / 'config.json').is_file() or (p / 'adapter_config.json').is_file()]
    if not ckpts:
        raise RunError(f'no checkpoint-* folder under {output_dir}')
    return ckpts[-1]
