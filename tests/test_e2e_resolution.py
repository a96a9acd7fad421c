"""Train the tiny Qwen2-VL with `mixed` through stock `swift sft`, infer with `low` and `native`
through `swift infer`: the recorded visual tokens follow the policy, sample by sample."""
import json
from collections import Counter

import pytest

from swift_plugins.fixtures.tiny_runs import tiny_infer_args, tiny_sft_args
from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy

from helpers import swift

LOW = '3136'  # 56x56: a quarter of the ~112x112 fixture pixels


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.usefixtures('use_local_sources')
def test_mixed_training_then_low_and_native_inference(tiny_qwen2_vl, tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_LOW_PIXELS', LOW)
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    train_log = tmp_path / 'train_tokens.jsonl'
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(train_log))
    out = tmp_path / 'sft'
    # One epoch of the 24-row train split in 6 steps of 4.
    swift('sft', tiny_sft_args(tiny_qwen2_vl, 'medres/vqa-rad', out, max_steps=6), tmp_path / 'sft.log')

    # The run records the policy it ran under beside ms-swift's args.json, and said so in its log.
    saved = json.loads((out / 'medres_policy.json').read_text())
    assert (out / 'args.json').is_file() and saved['command'] == 'sft'
    assert saved['policy'] == ResolutionPolicy(mode='mixed', low_pixels=int(LOW)).as_dict()
    assert 'medres: resolution policy for this swift sft: mixed' in (tmp_path / 'sft.log').read_text()

    train = [r for r in records(train_log) if r['training']]
    assert len({r['id'] for r in train}) == 24
    assert all(r['predicted_tokens'] == r['actual_tokens'] for r in train)
    decisions = {r['id']: r['decision'] for r in train}
    assert Counter(decisions.values()) == {'low': 12, 'native': 12}   # exactly 50/50, balanced
    low_tokens = {r['actual_tokens'] for r in train if r['decision'] == 'low'}
    native_tokens = {r['actual_tokens'] for r in train if r['decision'] == 'native'}
    assert max(low_tokens) < min(native_tokens)

    ckpt = out / 'checkpoint-6'
    per_mode = {}
    for mode in ('low', 'native'):
        monkeypatch.setenv('MEDRES_RESOLUTION', mode)
        log = tmp_path / f'infer_{mode}_tokens.jsonl'
        monkeypatch.setenv('MEDRES_TOKEN_LOG', str(log))
        preds = tmp_path / f'preds_{mode}.jsonl'
        swift('infer', tiny_infer_args(ckpt, 'medres/vqa-rad:test', preds), tmp_path / f'infer_{mode}.log')
        assert len(records(preds)) == 12
        assert json.loads(preds.with_suffix('.medres_policy.json').read_text())['policy']['mode'] == mode
        recs = records(log)
        assert {r['decision'] for r in recs} == {mode} and all(not r['training'] for r in recs)
        assert all(r['predicted_tokens'] == r['actual_tokens'] for r in recs)
        per_mode[mode] = {r['id']: r for r in recs}

    assert set(per_mode['low']) == set(per_mode['native']) == {f'vqa-rad/test/{i}' for i in range(12)}
    policy = ResolutionPolicy(mode='native', low_pixels=int(LOW))
    for sid, native in per_mode['native'].items():
        low = per_mode['low'][sid]
        w, h = native['source'][0]
        assert native['actual_tokens'] == policy.plan(w, h, 'native', Qwen2VL()).tokens
        assert low['actual_tokens'] == policy.plan(w, h, 'low', Qwen2VL()).tokens
        assert low['actual_tokens'] < native['actual_tokens']


@pytest.mark.slow
@pytest.mark.usefixtures('use_local_sources')
def test_per_epoch_redraw_in_a_real_run(tiny_qwen2_vl, tmp_path, monkeypatch):
    for k, v in {'MEDRES_RESOLUTION': 'mixed', 'MEDRES_MIX_REDRAW': '1', 'MEDRES_LOW_PIXELS': LOW,
                 'MEDRES_TOKEN_LOG': str(tmp_path / 'tokens.jsonl')}.items():
        monkeypatch.setenv(k, v)
    # Two epochs of the 24-row split (6 steps of 4 each).
    args = tiny_sft_args(tiny_qwen2_vl, 'medres/vqa-rad', tmp_path / 'sft', max_steps=12) + ['--callbacks',
                                                                                            'medres_epoch']
    swift('sft', args, tmp_path / 'sft.log')
    seen = {}
    for r in records(tmp_path / 'tokens.jsonl'):
        if r['training']:  # ms-swift also encodes one preview sample before training: keyed by epoch
            seen.setdefault(r['id'], {})[r['epoch']] = r['decision']
    seen = {k: [v[0], v[1]] for k, v in seen.items()}
    assert len(seen) == 24
    assert all(d[0] != d[1] for d in seen.values())   # p = 0.5: every sample switches resolution
    first = Counter(d[0] for d in seen.values())
    assert first == {'low': 12, 'native': 12}
