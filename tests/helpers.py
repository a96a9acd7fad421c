"""Helpers the test modules share: run stock swift as a user does, load registry splits, read outputs,
build a one-image ms-swift row."""
import functools
import io
import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def plugin_path() -> str:
    out = subprocess.run([str(BIN / 'medres'), 'plugin-path'], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def swift(command: str, args, log: Path) -> None:
    """`swift <command> --external_plugins "$(medres plugin-path)" <args>`, output to `log`."""
    with open(log, 'w') as f:
        proc = subprocess.run([str(BIN / 'swift'), command, '--external_plugins', plugin_path(), *args],
                              stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
    assert proc.returncode == 0, log.read_text()[-4000:]


def load(spec):
    """A registry split through ms-swift's own `load_dataset`, as `swift sft --dataset <spec>` loads it."""
    from swift.dataset import load_dataset
    train, val = load_dataset(spec)
    assert val is None
    return train


def prepared_rows(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / 'data' / f'{split}.jsonl').read_text().splitlines()]


def run_medres(*args: str, expect: int = 0) -> str:
    """`medres <args>` as a user types it; its output (stdout + stderr), asserting the exit status."""
    proc = subprocess.run([str(BIN / 'medres'), *args], capture_output=True, text=True,
                          env={**os.environ, 'COLUMNS': '200'})
    out = proc.stdout + proc.stderr
    assert proc.returncode == expect, out[-4000:]
    return out


def png(w: int, h: int) -> bytes:
    """A noise PNG of w x h (noise: no compression shortcut hides a wrong size)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.effect_noise((w, h), 60).convert('RGB').save(buf, 'PNG')
    return buf.getvalue()


def row(w: int, h: int, i: int = 0) -> dict:
    """An ms-swift row with one w x h image and medres metadata (dataset fx, split test, row i)."""
    return {'messages': [{'role': 'user', 'content': '<image>What is shown?'}, {'role': 'assistant', 'content': 'yes'}],
            'images': [{'bytes': png(w, h), 'path': None}],
            'chat_template_kwargs': {'medres': {'id': f'fx/test/{i}', 'dataset': 'fx', 'split': 'test'}}}


@functools.lru_cache(maxsize=None)
def processor(model_dir, model_type: str, template_type: str):
    """ms-swift's processor for a local model folder, as `swift sft|infer` builds it."""
    from swift.model import get_processor
    proc = get_processor(str(model_dir), model_type=model_type)
    if template_type == 'internvl2_5':  # remote-code InternVL: its processor is the tokenizer
        tok = proc.tokenizer
        tok.model_info, tok.model_meta = proc.model_info, proc.model_meta
        proc = tok
    return proc
