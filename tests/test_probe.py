"""The resolution probe: generator (determinism, cache, cues), registry entry, the flags its study
adds to the recipes, and (slow) the paper's pattern on the default size for three seeds. The probe
runs as `medres study` on its dataset: the quick size end to end is in test_study.py."""
import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from swift_plugins.probe.config import ProbeConfig, prepare_probe, probe_env, probe_policy, probe_settings
from swift_plugins.probe.generator import LABELS, ProbeDataSpec, ProbeItem, fine_statistics, plan_split, render, write_probe
from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy

from helpers import run_medres

SMALL = ProbeDataSpec(n_train=24, n_validation=4, n_test=12, seed=3)
LOW = ResolutionPolicy(mode='low', low_pixels=112 * 112)
NATIVE = ResolutionPolicy(mode='native')


def as_model_sees(image: np.ndarray, policy: ResolutionPolicy) -> np.ndarray:
    out, _ = policy.apply(Image.fromarray(image), policy.mode, Qwen2VL())
    return np.asarray(out).astype(np.int16)


def test_generation_is_deterministic_and_cached(tmp_path):
    a = write_probe(SMALL, tmp_path / 'a' / 'probe')
    b = write_probe(SMALL, tmp_path / 'b' / 'probe')
    files = {k: v['sha256'] for k, v in a['files'].items()}
    assert files == {k: v['sha256'] for k, v in b['files'].items()}
    assert a['counts'] == {'train': 24, 'validation': 4, 'test': 12}
    assert a['generator']['parameters']['seed'] == 3 and a['generator']['key'] == SMALL.key()
    # Same parameters: reused, nothing rewritten.
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / 'a' / 'probe').rglob('*')}
    again = write_probe(SMALL, tmp_path / 'a' / 'probe')
    assert again['up_to_date'] is True
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / 'a' / 'probe').rglob('*')}
    # Other parameters: another key, other images.
    other = replace(SMALL, seed=4)
    assert other.key() != SMALL.key()
    c = write_probe(other, tmp_path / 'a' / 'probe')
    assert c.get('up_to_date') is None and c['files']['images/test/test-00000.png'] != files['images/test/test-00000.png']
    # A damaged folder is rebuilt.
    victim = tmp_path / 'b' / 'probe' / 'images' / 'train' / 'train-00000.png'
    victim.write_bytes(b'')
    assert write_probe(SMALL, tmp_path / 'b' / 'probe').get('up_to_date') is None
    assert victim.stat().st_size > 0


def test_rows_and_card_are_a_prepared_dataset(tmp_path):
    out = tmp_path / 'probe'
    write_probe(SMALL, out)
    rows = [json.loads(line) for line in (out / 'data' / 'test.jsonl').read_text().splitlines()]
    assert len(rows) == 12 and {r['answer'] for r in rows} <= set(LABELS)
    im = Image.open(out / rows[0]['image'])
    assert im.size == (224, 224) and im.mode == 'RGB'
    assert 'data/test.jsonl' in (out / 'README.md').read_text()
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['cues']['coarse']['agreement'] == 0.75


@pytest.mark.parametrize('n', [400, 401])
def test_classes_balanced_and_coarse_cue_agrees_as_configured(n):
    spec = replace(SMALL, coarse_agreement=0.8)
    items = plan_split(spec, 'train', n)
    counts = Counter(i.label for i in items)
    assert max(counts.values()) - min(counts.values()) <= 1 and set(counts) == set(LABELS)
    assert sum(i.coarse_agrees for i in items) == round(0.8 * n)
    per_class = Counter(i.label for i in items if i.coarse_agrees)
    assert max(per_class.values()) - min(per_class.values()) <= 1
    # When the hue is wrong it names each other class about equally often.
    wrong = Counter((i.label, i.stain) for i in items if not i.coarse_agrees)
    assert all(i.stain != i.label for i in items if not i.coarse_agrees)
    assert len(wrong) == 12
    assert plan_split(spec, 'train', n) == items


def test_fine_cue_present_at_native_and_destroyed_at_low():
    """The same field rendered with each of the four fine classes: at native the images differ by
    the full +-amplitude striation; after the low-budget resize the model receives, the four
    differ by rounding only, and a matched-filter statistic reads the class at native, not at low."""
    spec = ProbeDataSpec(seed=11)
    for index in range(4):
        item = ProbeItem('test', index, 'alpha', 'beta')
        natives = [as_model_sees(render(spec, item, fine_label=c), NATIVE) for c in LABELS]
        lows = [as_model_sees(render(spec, item, fine_label=c), LOW) for c in LABELS]
        assert natives[0].shape == (224, 224, 3) and lows[0].shape == (112, 112, 3)
        for i in range(4):
            for j in range(i + 1, 4):
                assert np.abs(natives[i] - natives[j]).max() == 2 * spec.fine_amplitude
                assert np.abs(lows[i] - lows[j]).max() <= 2       # two 8-bit resampling passes round
                assert np.abs(lows[i] - lows[j]).mean() < 0.1
        for c, native in zip(LABELS, natives):
            assert fine_statistics(native).argmax() == LABELS.index(c)
            assert np.abs(fine_statistics(native)).max() > 0.7 * spec.fine_amplitude
        for low in lows:
            assert np.abs(fine_statistics(low)).max() < 0.5


def test_no_linear_readout_of_the_fine_class_at_low_resolution():
    """A least-squares linear probe on every pixel, trained and tested on fields whose hue is
    independent of the class: near-perfect on native images, chance on low ones."""
    spec = ProbeDataSpec(seed=5, coarse_agreement=0.25)
    items = plan_split(spec, 'train', 160)
    feats = {'native': [], 'low': []}
    for item in items:
        image = render(spec, item)
        feats['native'].append(fine_statistics(as_model_sees(image, NATIVE), raw=True))
        feats['low'].append(fine_statistics(as_model_sees(image, LOW), raw=True))
    y = np.array([LABELS.index(i.label) for i in items])
    acc = {}
    for res, x in feats.items():
        x = np.asarray(x, dtype=np.float64)
        x = np.hstack([x, np.ones((len(x), 1))])
        target = np.eye(4)[y]
        w, *_ = np.linalg.lstsq(x[:100], target[:100], rcond=None)
        acc[res] = float(np.mean((x[100:] @ w).argmax(1) == y[100:]))
    assert acc['native'] == 1.0
    assert acc['low'] < 0.45   # chance is 0.25; 60 test fields


def test_registry_entry_loads_through_ms_swift(swift_registered, tmp_path, monkeypatch):
    from swift.dataset import load_dataset

    config = replace(ProbeConfig.preset('quick'), data=SMALL)
    home = tmp_path / 'home'
    folder = prepare_probe(config, home)
    from swift_plugins.settings import Settings
    env = {**probe_env(config, home), **probe_settings(config, Settings(data_home=home)).to_env()}
    for key in ('MEDRES_DATA_HOME', 'MEDRES_LOCAL_SOURCES', 'HF_DATASETS_CACHE'):
        monkeypatch.setenv(key, env[key])
    assert folder.parent == tmp_path / 'home' / 'prepared' / 'probe-sets' / SMALL.key()
    train, _ = load_dataset('medres/probe', split_dataset_ratio=0)
    test, _ = load_dataset('medres/probe:test', split_dataset_ratio=0)
    assert (len(train), len(test)) == (24, 12)
    row = test[0]
    assert row['messages'][1]['content'] == '<image>Class? One of: alpha, beta, gamma, delta.'
    assert row['messages'][2]['content'] in LABELS
    assert row['chat_template_kwargs']['medres']['id'] == 'probe/test/0'
    assert (row['chat_template_kwargs']['medres']['width'], row['chat_template_kwargs']['medres']['height']) == (224, 224)

    # The default location of the entry, for a folder written there.
    monkeypatch.delenv('MEDRES_LOCAL_SOURCES')
    write_probe(SMALL, home / 'prepared' / 'probe')
    test2, _ = load_dataset('medres/probe:validation', split_dataset_ratio=0)
    assert len(test2) == 4


def test_probe_study_trains_through_the_recipes(tmp_path):
    """The probe is a study: each arm is the Qwen2-VL-2B full recipe of its resolution launched by
    `medres train`, with the tiny model and the toy's flags after `--`; the shell's policy variables
    are dropped (the recipe decides), the probe's low budget is set for training and inference."""
    from swift_plugins.settings import Settings
    from swift_plugins.study.demo import probe_folder, probe_study
    config = ProbeConfig.preset('quick', seed=1)
    study = probe_study(config, tmp_path / 'work', settings=Settings(data_home=tmp_path / 'home'),
                        base_env={'MEDRES_RESOLUTION': 'native', 'MEDRES_LOW_PIXELS': '9', 'PATH': '/bin'})
    assert study.workdir == probe_folder(config, tmp_path / 'work')
    assert probe_policy(config) == {'MEDRES_LOW_PIXELS': str(112 * 112)}
    jobs = study.jobs(study.entries())
    assert [j.arm for j in jobs] == ['low', 'native', 'mixed']
    for job in jobs:
        assert job.launcher[:2] == ['train', str(study.recipe(job.arm))]
        assert job.launcher[1].endswith(f'recipes/train/qwen2-vl-2b-full-{job.arm}.yaml')
        assert job.launcher[job.launcher.index('--global-batch') + 1] == str(config.train.batch_size)
        args = job.swift_args
        assert args[args.index('--max_steps') + 1] == str(config.train.max_steps)
        assert args[args.index('--dataset') + 1] == 'medres/probe:train'
        assert args[args.index('--model') + 1].startswith(str(study.workdir / 'models'))
        assert 'MEDRES_RESOLUTION' not in job.env and job.env['MEDRES_LOW_PIXELS'] == str(112 * 112)
        assert job.env['PATH'] == '/bin' and job.env['HF_HUB_OFFLINE'] == '1'
        assert job.env['MEDRES_LOCAL_SOURCES'].endswith(f'probe-sets/{config.data.key()}')
    assert ProbeConfig.preset('quick', seed=1).key() == config.key() != ProbeConfig.preset('quick', seed=2).key()
    with pytest.raises(ValueError):
        ProbeConfig.preset('huge')


@pytest.mark.slow
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_default_probe_shows_the_papers_pattern(tmp_path_factory, seed):
    """The default size, three seeds: every claim of the paper's pattern holds (see README)."""

    work = tmp_path_factory.mktemp(f'probe{seed}')
    run_medres('probe', '--replicate-seed', str(seed), '--workdir', str(work), '--data-home', str(work / 'home'), '--check')
    folder = work / f'default-seed{seed}-{ProbeConfig.preset("default", seed).key()}'
    report = json.loads((folder / 'study.json').read_text())['probe']
    failed = [c['detail'] for c in report['checks'] if not c['holds']]
    assert report['pattern_holds'] and not failed
    # The native-trained model reads the stripes: right where the hue misleads; the low-trained
    # one reads the hue: wrong wherever it misleads.
    cues = report['breakdown']
    assert cues['native/native']['hue_wrong']['accuracy'] > 90
    assert cues['low/low']['hue_right']['accuracy'] > 90 and cues['low/low']['hue_wrong']['accuracy'] < 10
    assert (folder / 'report' / 'index.html').is_file()


def _cell(correct_ids, n=200):
    from swift_plugins.eval.scoring import RowScore
    return [RowScore(id=f'probe/test/{i}', image_key=f'img{i}', kind='classification', gold='alpha',
                     response='alpha' if i in correct_ids else 'beta',
                     status='correct' if i in correct_ids else 'wrong', correct=i in correct_ids)
            for i in range(n)]


def test_pattern_checks_decide_each_claim_from_paired_rows():
    """The paper's pattern as the probe states it: all claims hold on rows shaped like the paper's
    findings; a mixed arm 10 points under native fails only 'within 5 points'; a cell missing is named."""
    from swift_plugins.data.registry import get_entry
    from swift_plugins.probe.pattern import cue_breakdown, pattern_checks

    entry = get_entry('probe')
    hue = set(range(150))                               # the hue names the class on 75% of 200
    rows = {('native', 'native'): _cell(set(range(200))), ('low', 'low'): _cell(hue),
            ('native', 'low'): _cell(set(range(0, 200, 4))), ('low', 'native'): _cell(hue),
            ('mixed', 'native'): _cell(set(range(198)))}
    checks = {c.name: c for c in pattern_checks(entry, rows, coarse_ceiling=0.75, n_boot=200)}
    assert all(c.holds for c in checks.values()), [c.detail for c in checks.values() if not c.holds]
    assert checks['native_beats_low'].diff == pytest.approx(25.0)
    assert checks['mismatch_collapse'].diff == pytest.approx(50.0) and checks['mismatch_collapse'].p_value < 1e-6
    assert checks['mixed_near_native'].diff == pytest.approx(-1.0)

    rows[('mixed', 'native')] = _cell(set(range(180)))
    checks = {c.name: c for c in pattern_checks(entry, rows, coarse_ceiling=0.75, n_boot=200)}
    assert [n for n, c in checks.items() if not c.holds] == ['mixed_near_native']
    assert checks['mixed_near_native'].ci[0] < -5

    rows[('native', 'native')] = _cell(hue)             # a native arm that only learnt the hue
    checks = {c.name: c for c in pattern_checks(entry, rows, coarse_ceiling=0.75, n_boot=200)}
    assert not checks['fine_cue_used'].holds and not checks['native_beats_low'].holds

    del rows[('low', 'native')]
    with pytest.raises(ValueError, match='low/native'):
        pattern_checks(entry, rows, coarse_ceiling=0.75)

    breakdown = cue_breakdown({('low', 'low'): _cell(hue)}, {f'probe/test/{i}': i in hue for i in range(200)})
    assert breakdown['low/low'] == {'hue_right': {'accuracy': 100.0, 'n': 150}, 'hue_wrong': {'accuracy': 0.0, 'n': 50}}
