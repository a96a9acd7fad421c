"""Grid and sweep pieces that need no model: cell specs, layout, paper column, recommendation."""
import pytest

from swift_plugins.eval.grid import CellResult, CellSpec, GridConfig, GridError, markdown_table, table_rows
from swift_plugins.eval.sweep import SweepRow, recommend


def result(train, inference, dataset, value, low=None, high=None, unparseable=0):
    spec = CellSpec(train, 'ckpt', dataset, 'test', inference, 'r.yaml', {'MEDRES_RESOLUTION': inference})
    metric = {'value': value, 'ci_low': low, 'ci_high': high, 'n': 10, 'n_unparseable': unparseable}
    return CellResult(spec, None, {'primary': 'closed_accuracy', 'metrics': {'closed_accuracy': metric}}, 5.0, False)


def test_cells_record_the_effective_policy_and_refuse_unknown_splits(tmp_path):
    shell = {'MEDRES_FILTER': 'bicubic'}   # the user's shell setting reaches every cell
    cfg = GridConfig(tmp_path, {'native': '/ckpt'}, ['vqa-rad', 'slake:validation'], ['low', 'native'],
                     policy_overrides={'MEDRES_LOW_PIXELS': '4096'}, env=shell)
    cells = cfg.cells()
    assert [(c.dataset, c.split, c.inference) for c in cells] == [
        ('vqa-rad', 'test', 'low'), ('vqa-rad', 'test', 'native'),
        ('slake', 'validation', 'low'), ('slake', 'validation', 'native')]
    low = cells[0].policy
    assert low['MEDRES_RESOLUTION'] == 'low' and low['MEDRES_LOW_PIXELS'] == '4096' and low['MEDRES_FILTER'] == 'bicubic'
    assert cells[0].recipe.endswith('recipes/infer/low.yaml')
    with pytest.raises(GridError, match="has no split 'validation'"):
        GridConfig(tmp_path, {'native': '/ckpt'}, ['vqa-rad:validation']).cells()


def test_markdown_is_the_papers_layout_with_the_paper_beside():
    results = [result('none', 'low', 'vqa-rad', 40.0, 35.0, 45.0), result('none', 'native', 'vqa-rad', 42.5),
               result('native', 'native', 'vqa-rad', 50.0), result('native', 'native', 'slake', 61.0)]
    rows = table_rows(results, 'Qwen2-VL-2B')
    assert rows[0]['paper'] == 39.25 and rows[3]['paper'] == 60.23
    md = markdown_table(rows, compare_paper=True).splitlines()
    assert md[0] == '| Training | Inference | vqa-rad | slake |'
    assert md[2] == '| none | low | 40.0 [35.0, 45.0] (paper 39.25; 0/10 unparseable) | - |'
    assert md[3] == '|  | native | 42.5 (paper 39.65; 0/10 unparseable) | - |'
    assert md[4] == '| native | native | 50.0 (paper 42.49; 0/10 unparseable) | 61.0 (paper 60.23; 0/10 unparseable) |'


def test_every_grid_cell_shows_its_unparseable_count():
    results = [result('none', 'low', 'vqa-rad', 0.0, 0.0, 0.0, unparseable=10),
               result('mixed', 'low', 'vqa-rad', 60.0, 30.0, 90.0, unparseable=3)]
    rows = table_rows(results, None)
    assert [r['unparseable'] for r in rows] == [10, 3]   # grid.csv gets the column too
    md = markdown_table(rows, compare_paper=False).splitlines()
    assert md[2] == '| none | low | 0.0 [0.0, 0.0] (10/10 unparseable) |'
    assert md[3] == '| mixed | low | 60.0 [30.0, 90.0] (3/10 unparseable) |'


def test_sweep_recommends_best_and_cheapest_within_its_ci():
    rows = [SweepRow('low-200704', 200704, 40.0, 35.0, 45.0, 100, 256),
            SweepRow('low-1003520', 1003520, 44.0, 39.5, 48.5, 100, 1280),
            SweepRow('native', None, 45.0, 40.0, 50.0, 100, 3000)]
    best, cheapest = recommend(rows)
    assert best.setting == 'native' and cheapest.setting == 'low-200704'   # 45 is inside [35, 45]
    rows[0] = SweepRow('low-200704', 200704, 30.0, 25.0, 35.0, 100, 256)
    assert recommend(rows)[1].setting == 'low-1003520'


def test_a_cell_is_keyed_by_content_so_edits_refuse_the_cached_result(tmp_path):
    """Editing the inference recipe (temperature), the registry entry (prompt), the flags after --
    or the checkpoint's files makes a finished cell refuse to be reused; unchanged, it is reused."""
    import json
    import os
    import shutil

    from swift_plugins.data.registry import BUILTIN_DIR, get_entry
    from swift_plugins.eval.grid import make_spec, run_cell
    from swift_plugins.settings import Settings
    from swift_plugins.train.recipes import RECIPES_DIR

    recipe = tmp_path / 'native.yaml'
    shutil.copyfile(RECIPES_DIR / 'infer' / 'native.yaml', recipe)
    registry = tmp_path / 'registry'
    registry.mkdir()
    shutil.copyfile(BUILTIN_DIR / 'vqa-rad.yaml', registry / 'vqa-rad.yaml')
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / 'model.safetensors').write_bytes(b'0' * 10)
    settings = Settings(registry_dirs=(registry,))

    def spec(extra=()):
        entry = get_entry('vqa-rad', settings.registry_dirs)
        return make_spec('native', str(ckpt), entry, 'test', 'native', recipe, {'MEDRES_RESOLUTION': 'native'},
                         extra, 'strict')

    cell = tmp_path / 'cell'
    cell.mkdir()
    score = {'primary': 'closed_accuracy', 'metrics': {'closed_accuracy': {'value': 50.0}}}
    (cell / 'done.json').write_text(json.dumps({'spec': spec().as_record(), 'score': score}))
    assert run_cell(spec(), cell, env={}, settings=settings).cached

    def refused(match, extra=()):
        with pytest.raises(GridError, match=match):
            run_cell(spec(extra), cell, env={}, settings=settings)

    refused('the flags passed to swift infer', extra=('--max_new_tokens', '16'))

    original = recipe.read_text()
    recipe.write_text(original.replace('temperature: 0 ', 'temperature: 0.2 '))
    refused("the inference recipe's contents")
    recipe.write_text(original)

    entry_file = registry / 'vqa-rad.yaml'
    original = entry_file.read_text()
    entry_file.write_text(original.replace('system: You are a biomedical expert.', 'system: You are a radiologist.'))
    os.utime(entry_file, ns=(1, 1))   # a different mtime even on coarse file systems
    refused('the registry entry')
    entry_file.write_text(original)

    (ckpt / 'model.safetensors').write_bytes(b'1' * 11)   # retrained into the same folder
    refused("the checkpoint's files")
