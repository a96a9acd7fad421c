"""The resolution policy on the real vLLM engine, behind stock `swift infer --infer_backend vllm`.

Tiny random-weight Qwen2-VL and InternVL (vLLM-compatible head sizes) on a VQA-RAD-layout split
whose images cover the cases that went silently wrong: a 784-pixel low budget (stock ms-swift
upscales 28x28 to 56x56), a 2240x1792 native image (21 InternVL tiles; the engine's processor
caps at 12), an off-grid size and thin or small images. Each run is checked against the
transformers backend: the same greedy predictions and the same token log.

These need vLLM: `.ci/vllm-env` builds the environment and `.ci/run` runs this file there, failing
if anything skips. Elsewhere (the main test run) the module skips.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('vllm', reason='the real-engine tests run in the environment `.ci/vllm-env` builds')

from swift_plugins.fixtures.hub_vqa import write_hub_layout  # noqa: E402
from swift_plugins.fixtures.tiny_families import VLLM_SPEC, build_tiny_internvl  # noqa: E402
from swift_plugins.fixtures.tiny_qwen2_vl import VLLM_QWEN2_VL_SPEC, build_tiny_qwen2_vl  # noqa: E402
from swift_plugins.fixtures.tiny_runs import tiny_infer_args  # noqa: E402
from swift_plugins.vocabulary import Env  # noqa: E402

from helpers import plugin_path, run_medres, swift  # noqa: E402

# (width, height) of the test images: small, on neither grid, the 2240x1792, thin, square.
SIZES = [(100, 80), (2240, 1792), (301, 157), (1200, 150), (640, 640)]
NATIVE_CAP = '4100000'    # keeps 2240x1792 native and the engine's start-up profile small on a CPU
# The CPU engine: a 1 GiB KV cache (the default reserves most of RAM), no graph compilation, and the
# engine core in this process (two fewer process start-ups).
ENGINE_ENV = {'VLLM_CPU_KVCACHE_SPACE': '1', 'VLLM_ENABLE_V1_MULTIPROCESSING': '0'}
ENGINE_ARGS = ['--vllm_enforce_eager', 'true', '--vllm_max_model_len', '16384']

FAMILIES = {
    'qwen2_vl': ('qwen2_vl', 'qwen2_vl', '784'),       # the low budget: one 28x28 token
    'internvl': ('internvl', 'internvl_hf', None),       # the paper's low budget: up to 5 tiles
}


@pytest.fixture(scope='module')
def models(session_dir):
    return {'qwen2_vl': build_tiny_qwen2_vl(session_dir / 'models' / 'vllm-qwen2-vl', VLLM_QWEN2_VL_SPEC),
            'internvl': build_tiny_internvl(session_dir / 'models' / 'vllm-internvl', VLLM_SPEC)}


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """VQA-RAD and SLAKE test splits in the hub's parquet layout, with the sizes above."""
    import io

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp('vllm-sources')
    rng = np.random.default_rng(0)
    for k, name in enumerate(('vqa-rad', 'slake')):
        rows = []
        for i, (w, h) in enumerate(SIZES if k == 0 else SIZES[::2]):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, 'PNG')
            rows.append({'image': {'bytes': buf.getvalue(), 'path': None}, 'question': 'Is there a lesion?',
                         'answer': 'yes' if i % 2 else 'no'})
        splits = {'test': rows} if name == 'vqa-rad' else {'train': rows, 'validation': rows, 'test': rows}
        write_hub_layout(root / name, splits)
    return root


def records(path: Path) -> dict:
    return {r['id']: r for r in map(json.loads, path.read_text().splitlines())}


def infer(model: Path, family: str, backend: str, policy: dict, out: Path, sources: Path) -> tuple[dict, dict]:
    """`swift infer` of medres/vqa-rad:test; (responses by id, token-log records by id)."""
    model_type, template, _ = FAMILIES[family]
    out.mkdir(parents=True, exist_ok=True)
    args = tiny_infer_args(model, 'medres/vqa-rad:test', out / 'predictions.jsonl', max_new_tokens=6)
    args[args.index('--model_type') + 1], args[args.index('--template') + 1] = model_type, template
    args[args.index('--infer_backend') + 1] = backend
    env_backup = dict(os.environ)
    os.environ.update({Env.LOCAL_SOURCES: str(sources), Env.TOKEN_LOG: str(out / 'tokens.jsonl'), **policy,
                       **(ENGINE_ENV if backend == 'vllm' else {})})
    try:
        swift('infer', args + (ENGINE_ARGS if backend == 'vllm' else []), out / 'infer.log')
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    rows = [json.loads(line) for line in (out / 'predictions.jsonl').read_text().splitlines()]
    responses = {r['chat_template_kwargs']['medres']['id']: r['response'] for r in rows}
    return responses, records(out / 'tokens.jsonl')


@pytest.mark.parametrize('resolution', ['low', 'native', 'mixed'])
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_vllm_matches_transformers_at_the_planned_resolution(family, resolution, models, sources, tmp_path):
    _, _, low_pixels = FAMILIES[family]
    policy = {Env.RESOLUTION: resolution, Env.NATIVE_MAX_PIXELS: NATIVE_CAP,
              **({Env.LOW_PIXELS: low_pixels} if low_pixels else {})}
    v_resp, v_tokens = infer(models[family], family, 'vllm', policy, tmp_path / 'vllm', sources)
    t_resp, t_tokens = infer(models[family], family, 'transformers', policy, tmp_path / 'tf', sources)

    log = (tmp_path / 'vllm' / 'infer.log').read_text()
    assert 'medres: vLLM engine settings' in log
    assert len(v_tokens) == len(SIZES) and all(r['mode'] == 'vllm' for r in v_tokens.values())
    # The engine's own count (from the prompt ids it ran) equals the plan for every row.
    assert all(r['actual_tokens'] == r['predicted_tokens'] for r in v_tokens.values())
    by_source = {tuple(r['source'][0]): r for r in v_tokens.values()}
    decisions = {r['decision'] for r in v_tokens.values()}
    assert decisions == ({'low', 'native'} if resolution == 'mixed' else {resolution})
    big = by_source[(2240, 1792)]
    if family == 'qwen2_vl':
        if big['decision'] == 'low':   # 784 pixels: one 28x28 token, not stock ms-swift's 56x56 (4 tokens)
            assert big['size'] == [[28, 28]] and big['actual_tokens'] == 1
        else:
            assert big['size'] == [[2240, 1792]] and big['actual_tokens'] == 80 * 64
        assert by_source[(301, 157)]['size'] in ([[28, 28]], [[280, 140]])  # off-grid: floored to 28s
    else:
        if big['decision'] == 'native':  # 20 tiles + thumbnail, over the processor's default 12
            assert big['size'] == [[2240, 1792]] and big['actual_tokens'] == 21 * 256
        else:                            # low: a 2x2 grid + thumbnail (multi-tile at low too)
            assert big['size'] == [[896, 896]] and big['actual_tokens'] == 5 * 256
    # Same images, same tokens, same greedy predictions in both backends.
    strip = lambda r: {k: v for k, v in r.items() if k != 'mode'}  # noqa: E731
    assert {i: strip(r) for i, r in v_tokens.items()} == {i: strip(r) for i, r in t_tokens.items()}
    assert v_resp == t_resp
    assert len(set(v_resp.values())) > 1   # the outputs depend on the image: the comparison means something


def test_a_knob_that_does_not_reach_the_engine_is_caught(models, sources, tmp_path):
    """Disable medres's per-request knob (a second plugin file) and stock ms-swift upscales the 28x28
    low image to 56x56: the engine's prompt then has 4 visual tokens, and the run stops naming the row."""
    plugin = tmp_path / 'no_knob.py'
    plugin.write_text('from swift_plugins.resolution.families import Qwen2VL\n'
                      'Qwen2VL.engine_knobs = lambda self, template, inputs, sizes: None\n')
    model_type, template, _ = FAMILIES['qwen2_vl']
    args = tiny_infer_args(models['qwen2_vl'], 'medres/vqa-rad:test', tmp_path / 'p.jsonl', max_new_tokens=2)
    args[args.index('--infer_backend') + 1] = 'vllm'
    env = {**os.environ, Env.LOCAL_SOURCES: str(sources), Env.RESOLUTION: 'low', Env.LOW_PIXELS: '784', **ENGINE_ENV}
    proc = subprocess.run([str(Path(sys.executable).parent / 'swift'), 'infer', '--external_plugins', plugin_path(),
                           str(plugin), *args, *ENGINE_ARGS], capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'medres: error: vqa-rad/test/' in out
    assert 'the vllm engine (qwen2_vl) produced 4 visual tokens, the resolution policy planned 1' in out


def test_grid_starts_one_engine_per_arm_and_resolution(models, sources, tmp_path):
    """`medres grid --infer-backend vllm`: one swift infer (one engine) serves both datasets of each
    (arm, inference resolution); the cells are split from it and scored as usual."""
    workdir = tmp_path / 'grid'
    env_backup = dict(os.environ)
    os.environ.update({Env.LOCAL_SOURCES: str(sources), **ENGINE_ENV})
    try:
        run_medres('grid', '--arm', f'none={models["qwen2_vl"]}', '--dataset', 'vqa-rad', '--dataset', 'slake',
                   '--inference', 'low', '--low-pixels', '784', '--native-max-pixels', NATIVE_CAP, '--n-boot', '50',
                   '--workdir', str(workdir), '--infer-backend', 'vllm', '--',
                   '--model_type', 'qwen2_vl', '--template', 'qwen2_vl', '--torch_dtype', 'float32',
                   '--max_new_tokens', '2', *ENGINE_ARGS)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    engine_logs = list((workdir / 'cells').rglob('infer.log'))
    shared = [p for p in engine_logs if p.parent.name == 'low.engine']
    assert len(shared) == 1
    assert 'medres/vqa-rad:test medres/slake:test' in shared[0].read_text().splitlines()[0]
    # At 784 pixels every image is one 28x28 token but the thin 1200x150 one (56x28: two tokens).
    for dataset, n, mean_tokens in (('vqa-rad', len(SIZES), 6 / 5), ('slake', len(SIZES[::2]), 1.0)):
        cell = workdir / 'cells' / 'none' / dataset / 'low'
        done = json.loads((cell / 'done.json').read_text())
        assert done['n_predictions'] == n and done['mean_visual_tokens'] == pytest.approx(mean_tokens)
        assert all(json.loads(line)['dataset'] == dataset for line in (cell / 'visual_tokens.jsonl').read_text().splitlines())
