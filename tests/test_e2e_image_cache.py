"""Three epochs of the tiny Qwen2-VL through stock `swift sft` with `MEDRES_IMAGE_CACHE`: the first
epoch decodes every image, the next two read the policy-resized images back (the cache hit rate of
the token log), with the visual tokens still as planned."""
import json

import pytest

from swift_plugins.fixtures.tiny_runs import tiny_sft_args

from helpers import swift


@pytest.mark.slow
@pytest.mark.usefixtures('use_local_sources')
def test_three_epochs_hit_the_cache_after_the_first(tiny_qwen2_vl, tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '3136')
    monkeypatch.setenv('MEDRES_NATIVE_ALIGN', 'crop')
    monkeypatch.setenv('MEDRES_IMAGE_CACHE', str(tmp_path / 'cache'))
    log = tmp_path / 'tokens.jsonl'
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(log))
    # The 24-row train split in steps of 4: 18 steps are 3 epochs.
    swift('sft', tiny_sft_args(tiny_qwen2_vl, 'medres/vqa-rad', tmp_path / 'sft', max_steps=18), tmp_path / 'sft.log')
    train = [json.loads(line) for line in log.read_text().splitlines()]
    train = [r for r in train if r['training']]
    # 24 rows x 3 epochs, plus the sample ms-swift encodes as a preview before training.
    assert len(train) in (72, 73) and all(r['predicted_tokens'] == r['actual_tokens'] for r in train)
    seen, first, later = set(), [], []
    for r in train:
        (later if r['id'] in seen else first).append(r['cache_hit'][0])
        seen.add(r['id'])
    assert len(first) == 24 and not any(first) and all(later)
    rate = sum(r['cache_hit'][0] for r in train) / len(train)
    print(f'cache hit rate over 3 epochs: {rate:.3f}')
    assert rate >= 2 / 3 - 1e-9
    assert list((tmp_path / 'cache').rglob('*.npy'))
