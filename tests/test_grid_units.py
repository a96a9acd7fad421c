"""Grid and sweep pieces that need no model: cell specs, layout, paper column, recommendation."""
import pytest

from swift_plugins.grid import CellResult, CellSpec, GridConfig, GridError, markdown_table, table_rows
from swift_plugins.sweep import SweepRow, recommend


def result(train, inference, dataset, value, low=None, high=None):
    spec = CellSpec(train, 'ckpt', dataset, 'test', inference, 'r.yaml', {'MEDRES_RESOLUTION': inference})
    metric = {'value': value, 'ci_low': low, 'ci_high': high, 'n': 10}
    return CellResult(spec, None, {'primary': 'closed_accuracy', 'metrics': {'closed_accuracy': metric}}, 5.0, False)


def test_cells_record_the_effective_policy_and_refuse_unknown_splits(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_FILTER', 'bicubic')   # the user's shell setting reaches every cell
    cfg = GridConfig(tmp_path, {'native': '/ckpt'}, ['vqa-rad', 'slake:validation'], ['low', 'native'],
                     policy_overrides={'MEDRES_LOW_PIXELS': '4096'})
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
    assert md[2] == '| none | low | 40.0 [35.0, 45.0] (paper 39.25) | - |'
    assert md[3] == '|  | native | 42.5 (paper 39.65) | - |'
    assert md[4] == '| native | native | 50.0 (paper 42.49) | 61.0 (paper 60.23) |'


def test_sweep_recommends_best_and_cheapest_within_its_ci():
    rows = [SweepRow('low-200704', 200704, 40.0, 35.0, 45.0, 100, 256),
            SweepRow('low-1003520', 1003520, 44.0, 39.5, 48.5, 100, 1280),
            SweepRow('native', None, 45.0, 40.0, 50.0, 100, 3000)]
    best, cheapest = recommend(rows)
    assert best.setting == 'native' and cheapest.setting == 'low-200704'   # 45 is inside [35, 45]
    rows[0] = SweepRow('low-200704', 200704, 30.0, 25.0, 35.0, 100, 256)
    assert recommend(rows)[1].setting == 'low-1003520'
