"""The policy under engine modes, without an engine: what the ms-swift template hands vLLM per request,
the engine settings computed from the policy, the check on the prompt the engine reports, the
refusal of engines medres cannot check, and the grid's one-engine-per-group execution.

The same paths on the real engine: tests/test_vllm_engine.py (run by `.ci/run` in `.ci/vllm-env`).
"""
import json
from types import SimpleNamespace

import pytest

from swift_plugins.errors import PolicyError, TokenMismatchError
from swift_plugins.resolution.engine import engine_kwargs, largest_pixels, refuse_engine
from swift_plugins.resolution.families import InternVL, Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.resolution.swift_args import check_run
from swift_plugins.vocabulary import Env

from helpers import processor, row


def vllm_template(model_dir, model_type, template_type):
    from swift.template import get_template
    t = get_template(processor(model_dir, model_type, template_type), template_type=template_type)
    t.set_mode('vllm')
    return t


SIZES = [(2240, 1792), (301, 157), (100, 80), (28, 28), (5000, 300), (640, 480), (10000, 50), (50, 9000)]


@pytest.mark.parametrize('policy', [ResolutionPolicy('native'), ResolutionPolicy('low'),
                                    ResolutionPolicy('low', low_pixels=784), ResolutionPolicy('mixed'),
                                    ResolutionPolicy('low', low_scale=0.5),
                                    ResolutionPolicy('native', native_max_pixels=4_100_000),
                                    ResolutionPolicy('low', low_pixels=300_000, upsample_from_low=True)])
def test_engine_settings_cover_every_planned_image(policy):
    """The engine is sized at start for the largest image the policy can plan: no planned image
    needs more pixels (Qwen2-VL) or tiles (InternVL) than the settings allow."""
    for family in (Qwen2VL(), InternVL()):
        settings = family.engine_settings(largest_pixels(policy))
        for w, h in SIZES:
            for decision in ('low', 'native'):
                if policy.mode != 'mixed' and decision != policy.mode:
                    continue
                try:
                    size = policy.plan(w, h, decision, family).size
                except PolicyError as e:   # refused when planned (Qwen2-VL's 200:1): never reaches the engine
                    assert isinstance(family, Qwen2VL) and 'aspect ratio' in str(e)
                    continue
                if isinstance(family, Qwen2VL):
                    assert size[0] * size[1] <= settings['max_pixels']
                else:
                    assert (size[0] // 448) * (size[1] // 448) <= settings['max_patches']


def test_engine_settings_values():
    assert largest_pixels(ResolutionPolicy('low', low_pixels=784)) == 784
    assert largest_pixels(ResolutionPolicy('native')) == 12_000_000
    assert largest_pixels(ResolutionPolicy('mixed', low_pixels=784)) == 12_000_000
    # 12 MP at native: 59 tiles of 448 (the processor's default cap is 12).
    assert InternVL().engine_settings(12_000_000) == {'max_patches': 59}
    assert InternVL(engine_knob='max_dynamic_patch').engine_settings(1_003_520) == {'max_dynamic_patch': 5}
    assert Qwen2VL().engine_settings(4_000_000) == {'max_pixels': 4_000_000}
    assert Qwen2VL().engine_settings(784) == {'max_pixels': 200 * 28 * 28}   # a 200:1 image is 200 units at least
    base = {'mm_processor_kwargs': {'do_pan_and_scan': False}, 'other': 1}
    merged = engine_kwargs(ResolutionPolicy('native', native_max_pixels=4_100_000), InternVL(), base)
    assert merged == {'mm_processor_kwargs': {'do_pan_and_scan': False, 'max_patches': 20}, 'other': 1}


def test_engines_medres_cannot_check_are_refused():
    policy = ResolutionPolicy('native')
    for backend in ('lmdeploy', 'sglang'):
        with pytest.raises(PolicyError, match=f'--infer_backend {backend}: medres cannot pass'):
            refuse_engine(backend, policy)
        # ... before any data or model is loaded (swift infer's argument hook)
        with pytest.raises(PolicyError, match=f'{Env.RESOLUTION}=native with --infer_backend {backend}'):
            check_run(SimpleNamespace(max_pixels=None, infer_backend=backend), policy, 'infer')
    refuse_engine('vllm', policy)
    refuse_engine('transformers', policy)
    check_run(SimpleNamespace(max_pixels=None, infer_backend='lmdeploy'), None, 'infer')  # no policy: stock


@pytest.mark.usefixtures('swift_registered')
def test_vllm_requests_carry_the_knob(tiny_qwen2_vl, tiny_internvl, monkeypatch):
    """In vLLM mode ms-swift skips the template's `_encode`: the image and the knob it hands the
    engine must already be the policy's. The issue's two silent cases: Qwen2-VL at a 784-pixel low
    budget (stock ms-swift upscales 28x28 to 56x56), InternVL's 21-tile native image (the engine's
    processor caps at 12 tiles unless told otherwise)."""
    monkeypatch.setenv(Env.RESOLUTION, 'low')
    monkeypatch.setenv(Env.LOW_PIXELS, '784')
    t = vllm_template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    encoded = t.encode(row(100, 80), return_template_inputs=True)
    assert [im.size for im in encoded['images']] == [(28, 28)]
    assert encoded['mm_processor_kwargs'] == {'do_resize': False}
    assert [p.tokens for p in encoded['template_inputs'].medres_plans] == [1]

    monkeypatch.setenv(Env.RESOLUTION, 'native')
    t = vllm_template(tiny_internvl, 'internvl', 'internvl_hf')
    encoded = t.encode(row(2240, 1792), return_template_inputs=True)
    assert [im.size for im in encoded['images']] == [(2240, 1792)]
    assert encoded['mm_processor_kwargs'] == {'max_patches': 20}
    assert [p.tokens for p in encoded['template_inputs'].medres_plans] == [21 * 256]
    assert engine_kwargs(t.medres_policy, t.medres_family, {})['mm_processor_kwargs'] == {'max_patches': 59}
    # Remote-code InternVL2.5: vLLM's own InternVL processor names the budget max_dynamic_patch.
    t = vllm_template(tiny_internvl, 'internvl', 'internvl2_5')
    encoded = t.encode(row(2240, 1792), return_template_inputs=True)
    assert encoded['mm_processor_kwargs'] == {'max_dynamic_patch': 20}
    assert engine_kwargs(t.medres_policy, t.medres_family, {})['mm_processor_kwargs'] == {'max_dynamic_patch': 59}


@pytest.mark.usefixtures('swift_registered')
def test_stock_ms_swift_upscales_under_vllm(tiny_qwen2_vl):
    """Without medres's knob the image vLLM receives is not the policy's (why the knob must travel)."""
    t = vllm_template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    r = row(28, 28)
    assert t.encode(r)['images'][0].size == (56, 56)


@pytest.mark.usefixtures('swift_registered')
def test_engine_check_logs_and_names_the_row(tiny_qwen2_vl, monkeypatch, tmp_path):
    monkeypatch.setenv(Env.RESOLUTION, 'low')
    monkeypatch.setenv(Env.LOW_PIXELS, '784')
    monkeypatch.setenv(Env.TOKEN_LOG, str(tmp_path / 'tokens.jsonl'))
    t = vllm_template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    pad = t.tokenizer.convert_tokens_to_ids('<|image_pad|>')
    inputs = t.encode(row(100, 80, 7), return_template_inputs=True)['template_inputs']
    t.medres_engine_check(inputs, [1, 2, pad, 3])
    with pytest.raises(TokenMismatchError, match=r'fx/test/7: the vllm engine \(qwen2_vl\) produced 4 visual tokens, '
                                                 r'the resolution policy planned 1 for sizes \[\(28, 28\)\]'):
        t.medres_engine_check(inputs, [1, pad, pad, pad, pad, 3])
    records = [json.loads(line) for line in (tmp_path / 'tokens.jsonl').read_text().splitlines()]
    assert [(r['id'], r['mode'], r['predicted_tokens'], r['actual_tokens']) for r in records] == [
        ('fx/test/7', 'vllm', 1, 1), ('fx/test/7', 'vllm', 1, 4)]


def test_grid_runs_one_engine_per_arm_and_resolution(tmp_path, monkeypatch):
    """With --infer_backend vllm the datasets of one (arm, inference) share one swift infer, whose
    predictions and token log are split into the cells by the rows' medres metadata; a rerun reuses
    the cells, and a transformers grid still runs one swift infer per cell."""
    import swift_plugins.eval.grid as grid
    from swift_plugins.data.registry import get_entry
    from swift_plugins.settings import Settings

    calls = []

    def fake_infer(specs, run_dir, *, env, settings, label):
        calls.append([(s.dataset, s.inference) for s in specs])
        run_dir.mkdir(parents=True, exist_ok=True)
        partial, tokens = run_dir / 'predictions.partial.jsonl', run_dir / 'visual_tokens.jsonl'
        with open(partial, 'w') as p, open(tokens, 'w') as t:
            for s in specs:
                for i in range(3):
                    meta = {'id': f'{s.dataset}/{s.split}/{i}', 'dataset': s.dataset, 'split': s.split}
                    p.write(json.dumps({'response': 'yes', 'labels': 'yes' if i else 'no',
                                        'chat_template_kwargs': {'medres': meta}}) + '\n')
                    t.write(json.dumps({**meta, 'actual_tokens': 10 * (i + 1)}) + '\n')
        return partial, tokens

    monkeypatch.setattr(grid, '_infer', fake_infer)
    for name in ('vqa-rad', 'slake'):  # the fake rows need no data, but the entries must resolve
        get_entry(name)

    def run(backend_args, workdir):
        cfg = grid.GridConfig(workdir, {'native': str(tmp_path / 'ckpt')}, ['vqa-rad', 'slake'], ['low', 'native'],
                              extra_args=backend_args, n_boot=50, settings=Settings())
        return grid.run_cells(cfg.cells(), cfg.cell_dir, env={}, settings=cfg.settings, n_boot=50)

    results = run(('--infer_backend', 'vllm'), tmp_path / 'v')
    assert calls == [[('vqa-rad', 'low'), ('slake', 'low')], [('vqa-rad', 'native'), ('slake', 'native')]]
    assert [(r.spec.dataset, r.spec.inference, r.value, r.mean_visual_tokens) for r in results] == [
        ('vqa-rad', 'low', pytest.approx(200 / 3), 20.0), ('vqa-rad', 'native', pytest.approx(200 / 3), 20.0),
        ('slake', 'low', pytest.approx(200 / 3), 20.0), ('slake', 'native', pytest.approx(200 / 3), 20.0)]
    cell = tmp_path / 'v' / 'cells' / 'native' / 'slake' / 'low'
    ids = [json.loads(line)['chat_template_kwargs']['medres']['id'] for line in open(cell / 'predictions.jsonl')]
    assert ids == ['slake/test/0', 'slake/test/1', 'slake/test/2']
    assert 'one swift infer served vqa-rad:test, slake:test' in (cell / 'infer.log').read_text()
    calls.clear()
    assert all(r.cached for r in run(('--infer_backend', 'vllm'), tmp_path / 'v')) and calls == []
    # One cell lost: only it runs again, on its own.
    (tmp_path / 'v' / 'cells' / 'native' / 'vqa-rad' / 'native' / 'done.json').unlink()
    run(('--infer_backend', 'vllm'), tmp_path / 'v')
    assert calls == [[('vqa-rad', 'native')]]
    calls.clear()
    run((), tmp_path / 't')
    assert len(calls) == 4 and all(len(c) == 1 for c in calls)


def test_infer_backend_of_a_cell():
    from swift_plugins.eval.grid import CellSpec, infer_backend
    from swift_plugins.train.recipes import RECIPES_DIR
    recipe = str(RECIPES_DIR / 'infer' / 'low.yaml')

    def spec(*extra):
        return CellSpec('t', 'c', 'vqa-rad', 'test', 'low', recipe, {}, extra)

    assert infer_backend(spec()) == 'transformers'   # the recipe's
    assert infer_backend(spec('--infer_backend', 'vllm')) == 'vllm'
    assert infer_backend(spec('--infer_backend=vllm', '--temperature', '0')) == 'vllm'
    assert infer_backend(spec('--infer_backend', 'vllm', '--infer_backend', 'transformers')) == 'transformers'
