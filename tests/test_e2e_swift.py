"""Stock `swift sft` and `swift infer` load the plugin and run on a registry dataset, offline."""
import json
import math
from pathlib import Path

import pytest

from swift_plugins.fixtures.hub_vqa import FIXTURE_SPECS
from swift_plugins.fixtures.tiny_runs import tiny_infer_args, tiny_sft_args

from helpers import swift


def logged_losses(output_dir: Path) -> list[float]:
    recs = [json.loads(line) for line in (output_dir / 'logging.jsonl').read_text().splitlines()]
    return [r['loss'] for r in recs if 'loss' in r]


@pytest.mark.usefixtures('use_local_sources')
def test_sft_then_infer_on_registry_dataset(tiny_qwen2_vl, tmp_path):
    out = tmp_path / 'sft'
    swift('sft', tiny_sft_args(tiny_qwen2_vl, 'medres/vqa-rad', out, max_steps=3), tmp_path / 'sft.log')
    ckpt = out / 'checkpoint-3'
    assert (ckpt / 'model.safetensors').is_file() and (ckpt / 'config.json').is_file()
    losses = logged_losses(out)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)

    preds = tmp_path / 'preds.jsonl'
    swift('infer', tiny_infer_args(ckpt, 'medres/vqa-rad:test', preds), tmp_path / 'infer.log')
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == FIXTURE_SPECS['vqa-rad']['split_sizes']['test']
    ids = [r['chat_template_kwargs']['medres']['id'] for r in rows]
    assert ids == [f'vqa-rad/test/{i}' for i in range(len(rows))]
    assert all(isinstance(r['response'], str) and r['labels'] for r in rows)
