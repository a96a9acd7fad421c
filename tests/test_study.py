"""`medres study`: model resolution and configuration, the plan (steps, visual tokens, FLOPs), arms
refused when their settings changed, the paper's shell recipes' dry runs, and the embedded default
end to end: killed while training, resumed, rerun as a no-op, its report checked in a real browser."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from browser import Browser, chromium

from swift_plugins.data.registry import get_entry
from swift_plugins.errors import StudyError, UsageError
from swift_plugins.probe.config import ProbeConfig
from swift_plugins.resolution.families import get_family
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.study import arms as arm_runs
from swift_plugins.study import model as study_model
from swift_plugins.study.model import model_config, resolve_model
from swift_plugins.study.plan import ModelShape, model_shape, plan_arm, training_flops
from swift_plugins.train.recipes import RECIPES_DIR

from helpers import run_medres

MEDRES = str(Path(sys.executable).parent / 'medres')
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / 'test-artifacts'   # CI keeps the report's screenshot here


# ------------------------------------------------------------------------------ model and plan

def test_model_names_resolve_to_a_recipe_family(tiny_qwen2_vl, tiny_llava_onevision):
    ref = resolve_model('qwen2-vl-2b')
    assert (ref.model, ref.model_type, ref.template, ref.local) == ('Qwen/Qwen2-VL-2B-Instruct', 'qwen2_vl', 'qwen2_vl', False)
    assert ref.is_recipe_default and ref.swift_args() == []
    assert resolve_model('Qwen/Qwen2-VL-7B-Instruct').recipe_key == 'qwen2-vl-7b'
    tiny = resolve_model(str(tiny_qwen2_vl))
    assert (tiny.recipe_key, tiny.local) == ('qwen2-vl-2b', True)
    assert tiny.swift_args() == ['--model', str(tiny_qwen2_vl), '--model_type', 'qwen2_vl', '--template', 'qwen2_vl']
    llava = resolve_model(str(tiny_llava_onevision))
    assert (llava.recipe_key, llava.model_type) == ('llava-onevision', 'llava_onevision_hf')
    seven = resolve_model('llava-hf/llava-onevision-qwen2-7b-ov-hf', 'llava-onevision')
    assert seven.swift_args()[:2] == ['--model', 'llava-hf/llava-onevision-qwen2-7b-ov-hf']
    with pytest.raises(UsageError, match='--recipe-model'):
        resolve_model('someone/some-model')


def test_model_config_from_a_folder_or_the_shipped_data(tiny_qwen2_vl, tmp_path, monkeypatch):
    assert model_config(str(tiny_qwen2_vl))['model_type'] == 'qwen2_vl'
    # The recipe models' published configurations ship as data (train/checkpoints/<key>.json).
    from swift_plugins.train.checkpoint import get_checkpoint
    for key in ('qwen2-vl-2b', 'qwen2-vl-7b', 'internvl2.5-2b', 'llava-onevision'):
        assert model_config(key) == get_checkpoint(key).config
    assert model_config('Qwen/Qwen2-VL-2B-Instruct')['hidden_size'] == 1536
    assert model_config('qwen2-vl-7b')['hidden_size'] == 3584
    # Another checkpoint of a recipe's family is not the shipped one: its configuration is not guessed.
    assert not study_model.resolve_model('llava-hf/llava-onevision-qwen2-7b-ov-hf', 'llava-onevision').is_recipe_default


def test_parameters_counted_on_the_meta_device_match_the_model(tiny_qwen2_vl):
    import torch
    from transformers import AutoModelForImageTextToText
    config = model_config(str(tiny_qwen2_vl))
    shape = model_shape(config)
    assert shape.counted == 'meta-device model' and shape.patches_per_token == 4 and shape.attention_group is None
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen2_vl, dtype=torch.float32)
    params = {n: p.numel() for n, p in model.named_parameters()}
    vision = sum(v for n, v in params.items() if '.visual.' in f'.{n}')
    llm = sum(v for n, v in params.items() if '.visual.' not in f'.{n}' and 'embed_tokens' not in n and 'lm_head' not in n)
    assert (shape.llm_params, shape.vision_params) == (llm, vision)
    assert (shape.llm_layers, shape.llm_width, shape.vision_layers, shape.vision_width) == (2, 64, 2, 32)
    # Counted from the fields alone (remote-code types): within 1% of the exact count for the LLM.
    from swift_plugins.study.plan import _field_counts
    assert _field_counts(config['text_config'], config['vision_config'])[0] == pytest.approx(llm, rel=0.01)


def test_flops_formula():
    shape = ModelShape(llm_params=1000, llm_layers=2, llm_width=8, vision_params=100, vision_layers=3, vision_width=4,
                       patches_per_token=4, attention_group=None, counted='test')
    tokens = [10, 20]
    dense = 6 * (1000 * 30 + 100 * 4 * 30)
    llm_attention = 12 * 2 * 8 * (10 ** 2 + 20 ** 2)
    vit_attention = 12 * 3 * 4 * ((4 * 10) ** 2 + (4 * 20) ** 2)
    assert training_flops(shape, tokens) == dense + llm_attention + vit_attention
    tiles = ModelShape(1000, 2, 8, 100, 3, 4, 4, 256, 'test')   # InternVL: the encoder attends each tile alone
    assert training_flops(tiles, [512]) == 6 * (1000 * 512 + 100 * 4 * 512) + 12 * 2 * 8 * 512 ** 2 \
        + 12 * 3 * 4 * 2 * 1024 ** 2


def test_plan_counts_samples_steps_and_tokens_as_the_run_draws_them():
    entry = get_entry('vqa-rad')
    recipe = RECIPES_DIR / 'train' / 'qwen2-vl-2b-full-mixed.yaml'
    sizes = [(1024, 1024)] * 257
    policy = ResolutionPolicy(mode='mixed')
    p = plan_arm(entry, 'train', 'mixed', str(recipe), recipe.read_text(), policy, get_family('qwen2_vl'), sizes,
                 'image headers', swift_args=[], global_batch=128, shape=None, tokens_per_second=None)
    assert (p.samples, p.epochs, p.steps) == (257, 3.0, 3 * 3)          # ceil(257 / 128) = 3 steps per epoch, 3 epochs
    native = ResolutionPolicy(mode='native').plan(1024, 1024, 'native', get_family('qwen2_vl')).tokens
    low = ResolutionPolicy(mode='low').plan(1024, 1024, 'low', get_family('qwen2_vl')).tokens
    assert (native, low) == (36 * 36, 35 * 35) and p.max_tokens == native     # 1008 px; 980 px under 1,003,520
    # The balanced draw makes round(0.5 x 257) samples low, exactly.
    assert p.tokens_per_epoch in (128 * low + 129 * native, 129 * low + 128 * native)
    assert p.flops is None and any('model configuration' in n for n in p.notes)
    assert p.gpu_hours is None
    # --max_steps after -- overrides the recipe's epochs; a measured throughput gives GPU hours.
    q = plan_arm(entry, 'train', 'native', str(recipe), recipe.read_text(), ResolutionPolicy(mode='native'),
                 get_family('qwen2_vl'), sizes, 'image headers', swift_args=['--max_steps', '4'], global_batch=128,
                 shape=ModelShape(10, 1, 1, 0, 0, 0, 4, None, 'test'), tokens_per_second=1000.0)
    assert q.steps == 4 and q.epochs == pytest.approx(4 * 128 / 257)
    assert q.gpu_hours == pytest.approx(q.tokens_per_epoch * q.epochs / 1000 / 3600)
    assert q.flops > 0


def test_plan_without_the_data_says_where_its_numbers_come_from(tmp_path):
    from swift_plugins.settings import Settings
    from swift_plugins.study.run import split_sizes
    sizes, source = split_sizes(get_entry('vqa-rad'), 'train', Settings(data_home=tmp_path))
    assert len(sizes) == 1793 and set(sizes) == {(1024, 1024)}
    assert source.startswith("the registry's 1,793 rows at its native size 1024x1024")
    sizes, source = split_sizes(get_entry('subcellular'), 'train', Settings(data_home=tmp_path))
    assert sizes is None and 'no row count' in source


def _job(tmp_path, **changes):
    recipe = RECIPES_DIR / 'train' / 'qwen2-vl-2b-full-low.yaml'
    kw = dict(dataset='vqa-rad', arm='low', recipe=recipe, folder=tmp_path / 'arm', launcher=['train', str(recipe)],
              swift_args=['--dataset', 'medres/vqa-rad:train'], env={}, model='Qwen/Qwen2-VL-2B-Instruct',
              entry_sha256='e', policy={}, data={}, tuning='full')
    return arm_runs.make_job(**{**kw, **changes})


def test_a_finished_arm_is_reused_and_one_with_other_settings_refused(tmp_path):
    job = _job(tmp_path)
    assert arm_runs.check_finished(job) is None
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    job.folder.mkdir(parents=True)
    (job.folder / 'arm.json').write_text(json.dumps({'key': job.key, 'key_parts': job.key_parts, 'checkpoint': str(ckpt),
                                                     'seconds': 3.0, 'losses': [1.0, 0.5]}))
    done = arm_runs.check_finished(job)
    assert done.cached and done.checkpoint == ckpt and done.losses == [1.0, 0.5]
    changed = _job(tmp_path, swift_args=['--dataset', 'medres/vqa-rad:train', '--learning_rate', '1e-4'])
    with pytest.raises(StudyError, match='trained with other settings: the training flags'):
        arm_runs.check_finished(changed)
    assert arm_runs.check_finished(changed, redo=True) is None
    with pytest.raises(StudyError, match='the registry entry; the resolution policy overrides'):
        arm_runs.check_finished(_job(tmp_path, entry_sha256='other', policy={'MEDRES_LOW_PIXELS': '9'}))
    ckpt.rmdir()
    assert arm_runs.check_finished(job) is None      # its checkpoint was deleted: trained again


def test_a_killed_arm_resumes_from_its_last_full_checkpoint(tmp_path):
    job = _job(tmp_path)
    ckpt = job.train_dir / 'checkpoint-20'
    ckpt.mkdir(parents=True)
    (job.train_dir / 'checkpoint-10').mkdir()
    (ckpt / 'trainer_state.json').write_text('{}')
    assert arm_runs.resumable_checkpoint(job) is None              # never started with this key
    (job.folder / 'arm.started.json').write_text(json.dumps({'key': job.key}))
    assert arm_runs.resumable_checkpoint(job) is None              # weights only: no optimizer state
    (ckpt / 'optimizer.pt').write_bytes(b'')
    assert arm_runs.resumable_checkpoint(job) == ckpt
    assert job.command(ckpt)[-2:] == ['--resume_from_checkpoint', str(ckpt)]
    other = _job(tmp_path, swift_args=['--learning_rate', '1'])
    assert arm_runs.resumable_checkpoint(other) is None            # started with other settings: start over


# ------------------------------------------------------------------------------ the paper's shell recipes

PAPER_SCRIPTS = [('table2_qwen2-vl-2b.sh', 'qwen2-vl-2b', 2, False), ('table3_internvl2.5-2b.sh', 'internvl2.5-2b', 2, False),
                 ('table4_llava-onevision.sh', 'llava-onevision', 2, False), ('table5_qwen2-vl-7b.sh', 'qwen2-vl-7b', 1, True)]
DATASETS = ('subcellular', 'compound', 'cervical', 'wsi', 'vqa-rad', 'path-vqa', 'slake')


@pytest.mark.parametrize('script, model, micro, zero3', PAPER_SCRIPTS, ids=[s[0] for s in PAPER_SCRIPTS])
def test_paper_recipe_dry_run_prints_the_plan(script, model, micro, zero3, tmp_path):
    path = RECIPES_DIR / 'paper' / script
    assert os.access(path, os.X_OK)
    env = {**os.environ, 'MEDRES': MEDRES, 'GPUS': '8', 'WORKDIR': str(tmp_path / 'w'), 'COLUMNS': '250',
           'MEDRES_DATA_HOME': str(tmp_path / 'home')}
    proc = subprocess.run(['bash', str(path), '--dry-run'], capture_output=True, text=True, env=env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    accumulation = 128 // (8 * micro)
    assert f'{micro} per GPU x {accumulation} accumulation x 8 GPUs (1 node(s) x 8) = 128' in out
    commands = [line for line in out.splitlines() if ': medres train ' in line]
    assert len(commands) == 7 * 3
    for d in DATASETS:
        for arm in ('low', 'native', 'mixed'):
            line = next(c for c in commands if c.startswith(f'{d} {arm}: '))
            assert f'recipes/train/{model}-full-{arm}.yaml --nproc-per-node 8 --micro-batch {micro} --global-batch 128' in line
            assert ('--zero3' in line) == zero3
            assert f'--dataset medres/{d}:train --output_dir {tmp_path / "w"}/arms/{d}/{arm}/train' in line
    # VQA-RAD: 1,793 training rows (the registry's count here, no data on this machine): 15 steps an epoch, 3 epochs.
    rows = [line for line in out.splitlines() if line.strip().startswith('vqa-rad ') and ': medres' not in line]
    assert len(rows) == 3 and all(' 1.79k (est.) ' in r and ' 45 ' in r for r in rows)
    assert 'GPU hours: pass --tokens-per-second' in out and not (tmp_path / 'w' / 'arms').exists()


# ------------------------------------------------------------------------------ the embedded default, end to end

def study_cmd(work, home, *extra):
    return [MEDRES, 'study', '--demo', '--size', 'quick', '--sweep', '--workdir', str(work), '--data-home', str(home),
            '--n-boot', '200', *extra]


@pytest.fixture(scope='module')
def quick_study(tmp_path_factory):
    """`medres study --demo --size quick` killed while its second arm trains, then resumed to the end."""
    root = tmp_path_factory.mktemp('study')
    work, home = root / 'work', root / 'home'
    config = ProbeConfig.preset('quick')
    folder = work / f'quick-seed0-{config.key()}'
    arms = folder / 'arms' / 'probe'
    env = {**os.environ, 'COLUMNS': '200'}
    run = subprocess.Popen(study_cmd(work, home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, env=env)
    deadline = time.time() + 600
    while not ((arms / 'low' / 'arm.json').exists() and (arms / 'native' / 'sft.log').exists()):
        assert run.poll() is None and time.time() < deadline
        time.sleep(0.5)
    time.sleep(4)   # inside the second arm's training run
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (arms / 'native' / 'arm.json').exists() and (arms / 'native' / 'arm.started.json').exists()
    first = (arms / 'low' / 'arm.json').stat().st_mtime_ns

    start = time.perf_counter()
    resumed = subprocess.run(study_cmd(work, home), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert (arms / 'low' / 'arm.json').stat().st_mtime_ns == first     # the finished arm was not retrained
    return {'folder': folder, 'work': work, 'home': home, 'out': resumed.stdout, 'config': config,
            'seconds': time.perf_counter() - start}


def test_resumed_study_trained_every_arm_at_its_resolution(quick_study):
    folder, config = quick_study['folder'], quick_study['config']
    assert '1 finished before' in quick_study['out'] and 'report:' in quick_study['out']
    n_train = config.data.n_train
    for arm in ('low', 'native', 'mixed'):
        recs = [json.loads(line) for line in (folder / 'arms' / 'probe' / arm / 'train_tokens.jsonl').read_text().splitlines()]
        assert recs and all(r['training'] and r['policy'] == arm for r in recs)
        assert all(r['actual_tokens'] == r['predicted_tokens'] == {'low': 16, 'native': 64}[r['decision']] for r in recs)
        decisions = {r['id']: r['decision'] for r in recs}
        assert len(decisions) == n_train
        assert Counter(decisions.values()) == {'low': {'low': n_train}, 'native': {'native': n_train},
                                               'mixed': {'low': n_train // 2, 'native': n_train // 2}}[arm]
        args = json.loads((folder / 'arms' / 'probe' / arm / 'train' / 'args.json').read_text())
        assert args['dataset'] == ['medres/probe:train'] and args['max_steps'] == config.train.max_steps


def test_every_cell_ran_at_the_resolution_it_claims(quick_study):
    folder, config = quick_study['folder'], quick_study['config']
    record = json.loads((folder / 'study.json').read_text())
    cells = {(c['training'], c['inference']): c for c in record['cells']}
    assert set(cells) == {(t, i) for t in ('none', 'low', 'native', 'mixed') for i in ('low', 'native', 'mixed')}
    for (train, inference), cell in cells.items():
        recs = [json.loads(line) for line in (Path(cell['cell']) / 'visual_tokens.jsonl').read_text().splitlines()]
        assert len({r['id'] for r in recs}) == config.data.n_test == cell['n']
        assert {r['policy'] for r in recs} == {inference}
        assert cell['mean_visual_tokens'] == pytest.approx({'low': 16, 'native': 64, 'mixed': 40}[inference])
        assert cell['policy']['MEDRES_LOW_PIXELS'] == str(112 * 112) if inference != 'native' else True
    assert 'visual tokens per test image: low 16, native 64, mixed 40' in quick_study['out']
    sweep = record['sweeps'][0]
    assert [r['setting'] for r in sweep['rows']] == ['low-3136', 'low-12544', 'low-28224', 'native']
    assert [r['mean_visual_tokens'] for r in sweep['rows']] == [4, 16, 36, 64]
    assert [c['name'] for c in record['probe']['checks']] == ['fine_cue_used', 'native_beats_low', 'mismatch_collapse',
                                                              'mixed_near_native', 'mixed_above_native_low',
                                                              'mixed_above_low_native']
    plan = json.loads((folder / 'plan.json').read_text())
    assert [(a['arm'], a['samples'], a['steps'], a['tokens_per_epoch']) for a in plan['arms']] == \
        [('low', 64, 8, 64 * 16), ('native', 64, 8, 64 * 64), ('mixed', 64, 8, 32 * 16 + 32 * 64)]
    assert all(a['flops'] > 0 for a in plan['arms'])


def test_report_has_every_section(quick_study):
    report = quick_study['folder'] / 'report'
    md = (report / 'report.md').read_text()
    for section in ('## probe: accuracy on test', "### The paper's claims as paired tests",
                    "### The paper's pattern on the probe", '## Plan: what the training cost', '## Provenance',
                    'recipe `recipes/train/qwen2-vl-2b-full-mixed.yaml`',
                    'registry entry `medres/probe`', 'versions: medres', 'The paper has no numbers for this model'):
        assert section in md, section
    figures = sorted(p.name for p in (report / 'figures').glob('*.png'))
    assert figures == ['probe-claims.png', 'probe-heatmap.png', 'probe-loss.png', 'probe-sweep.png', 'probe-tokens.png']
    for name in figures:
        assert f'](figures/{name})' in md
    html = (report / 'index.html').read_text()
    assert html.count('src="data:image/png;base64,') == 5 and '<script' not in html and 'http' not in html.split('<body>')[1]


def test_finished_study_reruns_as_a_no_op_and_refuses_changed_settings(quick_study):
    folder = quick_study['folder']
    stamps = {p: p.stat().st_mtime_ns for p in [*folder.glob('arms/*/*/arm.json'), *folder.glob('grid/cells/**/done.json'),
                                                *folder.glob('sweep/**/done.json')]}
    assert len(stamps) == 3 + 12 + 4
    again = run_medres(*study_cmd(quick_study['work'], quick_study['home'])[1:])
    assert '3 finished before' in again and '12 finished before' in again and '4 finished before' in again
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    changed = run_medres(*study_cmd(quick_study['work'], quick_study['home'])[1:], '--', '--weight_decay', '0.01', expect=2)
    assert 'the low arm on probe was trained with other settings: the training flags' in changed
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_report_renders_in_a_real_browser(quick_study, tmp_path):
    """Chromium (Debian's package) loads report/index.html from disk: every figure decoded, every table
    rendered, no console error; the screenshot is kept in test-artifacts/study-report.png."""
    exe = chromium()
    if exe is None:
        if os.environ.get('CI'):
            pytest.fail('chromium is not installed (.ci/run installs it: apt-get install -y chromium)')
        pytest.skip('chromium is not installed (apt-get install -y chromium)')
    page = quick_study['folder'] / 'report' / 'index.html'
    browser = Browser(exe, tmp_path / 'profile')
    try:
        browser.open(page.as_uri())
        state = browser.evaluate('''({
            images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width]),
            tables: Array.from(document.querySelectorAll('table')).map(t => [t.rows.length, t.getBoundingClientRect().height]),
            headings: Array.from(document.querySelectorAll('h2, h3')).map(h => h.textContent),
            title: document.title})''')
        errors = browser.console_errors()
        shot = browser.screenshot(ARTIFACTS / 'study-report.png')
    finally:
        browser.close()
    assert errors == []
    assert len(state['images']) == 5 and all(ok and w > 100 and shown > 100 for ok, w, shown in state['images'])
    assert len(state['tables']) >= 6 and all(rows >= 2 and height > 20 for rows, height in state['tables'])
    assert any(h.startswith('probe: accuracy') for h in state['headings']) and 'Provenance' in state['headings']
    assert state['title'].startswith('medres study')
    from PIL import Image
    with Image.open(shot) as im:
        assert im.width >= 1000 and im.height > 2000


@pytest.mark.slow
def test_default_study_finishes_offline_in_a_few_minutes(tmp_path):
    """`medres demo` (= `medres study --demo`), as the README's main command: the whole default study."""
    work = tmp_path / 'demo'
    start = time.perf_counter()
    out = run_medres('demo', '--workdir', str(work), '--data-home', str(tmp_path / 'home'))
    minutes = (time.perf_counter() - start) / 60
    folder = work / f'demo-seed0-{ProbeConfig.preset("demo").key()}'
    record = json.loads((folder / 'study.json').read_text())
    assert len(record['cells']) == 12 and (folder / 'report' / 'index.html').is_file()
    assert 'report:' in out
    cells = {(c['training'], c['inference']): c['value'] for c in record['cells']}
    # The effect the demo is there to show: the native-trained model beats the low-trained one at
    # native inference, and collapses when shown low-resolution images.
    assert cells[('native', 'native')] > cells[('low', 'low')] > cells[('native', 'low')]
    print(f'default study: {minutes:.1f} min')
    assert math.isfinite(minutes)


@pytest.mark.slow
def test_study_of_a_model_folder_with_lora_arms(tiny_qwen2_vl, use_local_sources, tmp_path):
    """The general path: a local checkpoint folder, a registry dataset, LoRA arms (merged before
    inference), two arms and two inference resolutions, flags for swift sft and swift infer."""
    work = tmp_path / 'study'
    toy = ['--deepspeed', '', '--torch_dtype', 'float32', '--max_steps', '2', '--save_strategy', 'steps',
           '--save_steps', '2', '--dataloader_num_workers', '0', '--dataset_num_proc', '1', '--report_to', 'none',
           '--logging_steps', '1', '--check_model', 'false', '--learning_rate', '1e-3']
    cmd = ['study', '--model', str(tiny_qwen2_vl), '--dataset', 'vqa-rad', '--arms', 'none,native', '--tuning', 'lora',
           '--global-batch', '2', '--micro-batch', '1', '--low-pixels', '4096', '--infer-args',
           '--torch_dtype float32 --max_new_tokens 4', '--workdir', str(work), '--n-boot', '200', '--', *toy]
    out = run_medres(*cmd)
    assert 'report:' in out
    record = json.loads((work / 'study.json').read_text())
    (arm,) = record['arms_trained']
    assert arm['arm'] == 'native' and arm['checkpoint'].endswith('/merged')
    assert (Path(arm['checkpoint']) / 'model.safetensors').is_file()
    args = json.loads((work / 'arms' / 'vqa-rad' / 'native' / 'train' / 'args.json').read_text())
    assert args['tuner_type'] == 'lora' and args['model'] == str(tiny_qwen2_vl) and args['max_steps'] == 2
    cells = {(c['training'], c['inference']): c for c in record['cells']}
    assert set(cells) == {(t, i) for t in ('none', 'native') for i in ('low', 'native', 'mixed')}
    assert cells[('native', 'low')]['policy']['MEDRES_LOW_PIXELS'] == '4096'
    assert cells[('native', 'low')]['mean_visual_tokens'] < cells[('native', 'native')]['mean_visual_tokens']
    md = (work / 'report' / 'report.md').read_text()
    assert '## vqa-rad: closed_accuracy on test' in md and 'qwen2-vl-2b-lora-native.yaml' in md


def test_report_puts_the_papers_numbers_beside_ours_for_a_paper_model(tmp_path):
    """A study of one of the paper's models: its published number stands beside each of ours, in the
    Markdown and in the page (the rows as the grid writes them; no model is run)."""
    from swift_plugins.eval.paper import paper_value
    from swift_plugins.study.report import write_report
    from swift_plugins.study.run import StudyConfig, StudyResult
    config = StudyConfig(tmp_path / 'study', resolve_model('qwen2-vl-2b'), ['subcellular'])
    rows = [{'training': t, 'inference': i, 'dataset': 'subcellular', 'split': 'test', 'metric': 'accuracy',
             'value': 50.0 + k, 'ci_low': 45.0 + k, 'ci_high': 55.0 + k, 'n': 2000, 'mean_visual_tokens': 100.0 * (k + 1),
             'paper': paper_value('Qwen2-VL-2B', t, i, 'subcellular'), 'checkpoint': f'/ckpt/{t}'}
            for k, (t, i) in enumerate((t, i) for t in ('none', 'low', 'native', 'mixed') for i in ('low', 'native', 'mixed'))]
    result = StudyResult(config, [], None, 'plan', rows=rows, paper='Qwen2-VL-2B', started='2026-01-01T00:00:00+00:00',
                         seconds={'plan': 1.0, 'arms': 60.0, 'grid': 30.0})
    html_path, md_path = write_report(result)
    md = md_path.read_text()
    assert 'reports this model as **Qwen2-VL-2B**' in md
    assert '| low | low | 53.0 [48.0, 58.0] (paper 91.80) |' in md
    assert sorted(p.name for p in (config.workdir / 'report' / 'figures').glob('*.png')) == \
        ['subcellular-heatmap.png', 'subcellular-tokens.png']
    html = html_path.read_text()
    assert '<td>53.0 [48.0, 58.0] (paper 91.80)</td>' in html and html.count('data:image/png;base64,') == 2


# Qwen2-VL-2B-Instruct's config.json (the hub's published values, the fields that size the model).
QWEN2_VL_2B = {'model_type': 'qwen2_vl', 'tie_word_embeddings': True,
               'text_config': {'model_type': 'qwen2_vl_text', 'hidden_size': 1536, 'num_hidden_layers': 28,
                               'num_attention_heads': 12, 'num_key_value_heads': 2, 'intermediate_size': 8960,
                               'vocab_size': 151936, 'tie_word_embeddings': True,
                               'rope_parameters': {'rope_type': 'default', 'rope_theta': 1e6, 'mrope_section': [16, 24, 24]}},
               'vision_config': {'depth': 32, 'embed_dim': 1280, 'hidden_size': 1536, 'num_heads': 16, 'mlp_ratio': 4,
                                 'spatial_merge_size': 2, 'patch_size': 14, 'temporal_patch_size': 2, 'in_channels': 3}}


def test_a_real_configuration_gives_the_published_sizes_and_a_plausible_cost():
    """Qwen2-VL-2B: its 1.5B language model has 1.31B non-embedding parameters, its ViT about 0.67B; one
    epoch of VQA-RAD at native resolution (1,793 images of 1024x1024, 1,296 tokens each) is ~8e16 FLOPs."""
    shape = model_shape(QWEN2_VL_2B)
    assert shape.llm_params == pytest.approx(1.31e9, rel=0.01) and shape.vision_params == pytest.approx(0.665e9, rel=0.01)
    assert (shape.llm_layers, shape.llm_width, shape.vision_layers, shape.vision_width) == (28, 1536, 32, 1280)
    flops = training_flops(shape, [1296] * 1793)
    dense = 6 * (shape.llm_params + 4 * shape.vision_params) * 1296 * 1793
    assert flops == pytest.approx(8.06e16, rel=0.01) and flops > dense    # the attention terms add on top
