"""`medres tokens`: header-only sizes, the run's own decisions, cost relative to native."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from swift_plugins.data.sizes import jsonl_split_sizes, load_registry_sizes
from swift_plugins.fixtures.hub_vqa import FIXTURE_SPECS
from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.resolution.tokens import policy_costs
from swift_plugins.settings import Settings


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_header_sizes_match_the_loaded_rows():
    from swift.dataset import load_dataset
    (sizes,) = load_registry_sizes(['vqa-rad:test'], Settings.from_env())
    rows, _ = load_dataset('medres/vqa-rad:test')
    assert sizes.sizes == [(r['chat_template_kwargs']['medres']['width'], r['chat_template_kwargs']['medres']['height'])
                           for r in rows]


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_mixed_costs_use_the_loaders_balanced_draw(monkeypatch):
    from swift.dataset import load_dataset
    splits = load_registry_sizes(['vqa-rad:train', 'slake:train'], Settings.from_env())
    policy = ResolutionPolicy(mode='mixed', low_pixels=3136)
    costs = policy_costs(splits, Qwen2VL(), policy)
    n_rad, n_slake = (FIXTURE_SPECS[n]['split_sizes']['train'] for n in ('vqa-rad', 'slake'))
    assert [c.images for c in costs] == [n_rad, n_slake]
    assert sum(c.low_images for c in costs) == round((n_rad + n_slake) / 2)   # one radiology group

    # The loader, under the same policy and order, marks exactly the same rows low.
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '3136')
    train, _ = load_dataset(['medres/vqa-rad', 'medres/slake'])
    from swift_plugins.resolution.mixing import MixSlot
    low_ids = {r['chat_template_kwargs']['medres']['id'] for r in train
               if MixSlot(**r['chat_template_kwargs']['medres']['mix']).is_low()}
    assert len(low_ids) == sum(c.low_images for c in costs)
    assert all(policy.decide(i, MixSlot(**r['chat_template_kwargs']['medres']['mix'])) == 'low'
               for r in train for i in [r['chat_template_kwargs']['medres']['id']] if i in low_ids)

    for c, sp in zip(costs, splits):
        native = policy_costs([sp], Qwen2VL(), ResolutionPolicy(mode='native'))[0]
        assert c.native_total_tokens == native.total_tokens
        assert 0 < c.cost_vs_native < 1


def test_jsonl_input_and_cost_of_low(tmp_path):
    lines = []
    for i, (w, h) in enumerate([(2048, 2048), (1280, 1024), (300, 200)]):
        Image.new('RGB', (w, h)).save(tmp_path / f'{i}.png')
        lines.append(json.dumps({'messages': [], 'images': [f'{i}.png']}))
    (tmp_path / 'd.jsonl').write_text('\n'.join(lines))
    sp = jsonl_split_sizes(tmp_path / 'd.jsonl')
    assert sp.sizes == [(2048, 2048), (1280, 1024), (300, 200)]
    native, low = (policy_costs([sp], Qwen2VL(), ResolutionPolicy(mode=m))[0] for m in ('native', 'low'))
    # 2048^2 -> 73x73 tokens; 1280x1024 -> 45x36; 300x200 -> 10x7.
    assert native.total_tokens == 73 * 73 + 45 * 36 + 10 * 7
    assert low.max_tokens <= 1280 and low.total_tokens < native.total_tokens


@pytest.mark.usefixtures('use_local_sources')
def test_cli_json():
    out = subprocess.run([sys.executable, '-m', 'swift_plugins.cli.main', 'tokens', '--dataset', 'vqa-rad:test',
                          '--low-pixels', '3136', '--json'], capture_output=True, text=True, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)
    assert [r['mode'] for r in rows] == ['native', 'low', 'mixed']
    native, low, mixed = rows
    assert native['cost_vs_native'] == 1.0 and low['cost_vs_native'] < mixed['cost_vs_native'] < 1.0
    assert mixed['low_images'] == 6 and native['images'] == 12


def test_shell_policy_settings_count_without_a_mode():
    """MEDRES_LOW_SCALE in the shell shapes `medres tokens`' low column even with MEDRES_RESOLUTION unset."""
    from types import SimpleNamespace

    from swift_plugins.cli.tokens import policies
    args = SimpleNamespace(env={'MEDRES_LOW_SCALE': '0.5'}, low_pixels=None, low_scale=None, native_max_pixels=None,
                           mix_ratio=None, mix_seed=None, balance=None, upsample_from_low=False, resolution=None,
                           native_align=None)
    assert [(p.mode, p.low_scale) for p in policies(args)] == [('native', 0.5), ('low', 0.5), ('mixed', 0.5)]
