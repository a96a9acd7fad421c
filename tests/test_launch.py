"""`medres train` before it launches: the machine (no GPU, no DeepSpeed), the recipe by name, and the
too-few-steps warning with the rows counted from the data without loading it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from swift_plugins.data.counts import dataset_rows, file_rows, run_rows, split_rows
from swift_plugins.data.registry import get_entry
from swift_plugins.errors import LaunchError, RegistryError
from swift_plugins.settings import Settings
from swift_plugins.train.launch import (
    MIN_STEPS,
    Machine,
    batch_plan,
    effective,
    machine_flags,
    recipe_config,
    step_warning,
    swift_flag,
    train_rows,
)
from swift_plugins.train.recipes import RECIPES_DIR

MEDRES = str(Path(sys.executable).parent / 'medres')
RECIPE = RECIPES_DIR / 'train' / 'qwen2-vl-2b-full-mixed.yaml'
CFG = recipe_config(RECIPE)   # deepspeed zero2, bfloat16, 3 epochs, medres/vqa-rad
CPU, GPU_NO_DS, GPU = Machine(0, False), Machine(1, False), Machine(8, True)


def test_swift_flags_are_read_as_swift_reads_them():
    extra = ['--dataset', 'medres/a', 'medres/b:test', '--deepspeed', '', '--torch-dtype=float32', '--num_train_epochs', '2']
    assert swift_flag(extra, 'dataset') == ['medres/a', 'medres/b:test']
    assert swift_flag(extra, 'deepspeed') == ['']
    assert swift_flag(extra, 'torch_dtype') == ['float32']
    assert swift_flag(extra, 'max_steps') is None
    assert effective(CFG, extra, 'dataset') == ['medres/a', 'medres/b:test']
    assert effective(CFG, extra, 'num_train_epochs') == '2'
    assert effective(CFG, [], 'deepspeed') == 'zero2' and effective(CFG, [], 'dataset') == 'medres/vqa-rad'


def test_cpu_drops_deepspeed_and_bf16_and_says_so_in_one_line():
    flags, line = machine_flags(CFG, ['--model', 'tiny'], CPU)
    assert flags == ['--deepspeed', '', '--torch_dtype', 'float32']
    assert line.startswith('no CUDA GPU visible: running on CPU, without DeepSpeed and in float32')
    assert "added --deepspeed '' --torch_dtype float32" in line and '\n' not in line
    # What the user already turned off is not added again; the CPU is still said.
    flags, line = machine_flags(CFG, ['--deepspeed', '', '--torch_dtype', 'float32'], CPU)
    assert flags == [] and line.startswith('no CUDA GPU visible: running on CPU (')


def test_gpus_without_deepspeed_run_without_it_and_name_the_install():
    flags, line = machine_flags(CFG, [], GPU_NO_DS)
    assert flags == ['--deepspeed', ''] and 'DeepSpeed is not installed' in line and "pip install 'medres[deepspeed]'" in line
    assert machine_flags(CFG, [], GPU) == ([], None)
    assert machine_flags({**CFG, 'deepspeed': None}, [], GPU_NO_DS) == ([], None)


@pytest.mark.parametrize('machine, kwargs, extra, message', [
    (CPU, {'zero3': True}, [], 'drop --zero3 to run without it'),
    (GPU_NO_DS, {'zero3': True}, [], r"install it, or drop --zero3"),
    (GPU_NO_DS, {}, ['--deepspeed', 'zero3'], 'drop --deepspeed zero3'),
    (CPU, {}, ['--torch_dtype', 'bfloat16'], r'on CPU pass -- --torch_dtype float32'),
    (CPU, {'nproc_per_node': 8}, [], 'a CPU run is one process'),
    (Machine(2, True), {'nproc_per_node': 8}, [], r'more GPUs than this node shows \(2\)'),
])
def test_what_the_command_line_asks_for_and_the_machine_lacks_is_refused_with_the_fix(machine, kwargs, extra, message):
    with pytest.raises(LaunchError, match=message):
        machine_flags(CFG, extra, machine, **kwargs)


def test_few_optimizer_steps_warn_with_the_batch_that_gives_enough():
    plan = batch_plan(1, 1)   # 1 x 128
    warning = step_warning(40, plan, CFG, [])
    assert warning.startswith('this run makes 3 optimizer steps (40 training rows / batch 128 = 1 per epoch x 3 epochs)')
    assert warning.endswith('--global-batch 4 gives 30 steps')
    assert step_warning(40, batch_plan(4, 1, global_batch=4), CFG, []) is None           # the suggestion is enough
    assert step_warning(2000, plan, CFG, []) is None                                     # 16 per epoch x 3
    assert step_warning(40, plan, CFG, ['--max_steps', '5']) is None                     # steps chosen explicitly
    assert step_warning(None, plan, CFG, []) is None                                     # rows unknown
    # Too few rows for any batch: the epochs to add.
    assert step_warning(5, plan, CFG, []).endswith('--global-batch 1 -- --num_train_epochs 4')
    assert '1 per epoch x 10 epochs' in step_warning(40, plan, CFG, ['--num_train_epochs', '10'])
    # 8 GPUs x micro 2: each rank reads ceil(1000 / 8) = 125 rows, 63 micro-batches, 8 steps per epoch.
    assert step_warning(1000, batch_plan(2, 8), CFG, []) is None
    assert f'under ~{MIN_STEPS} steps' in step_warning(300, batch_plan(2, 8), CFG, [])


def test_rows_are_counted_from_the_files_without_loading(tmp_path):
    from swift_plugins.fixtures.toy_dataset import ToySpec, build_toy_vqa
    build_toy_vqa(tmp_path / 'data' / 'toy')
    build_toy_vqa(tmp_path / 'data' / 'toy-pq', ToySpec(layout='parquet'))
    reg = tmp_path / 'registry'
    reg.mkdir()
    for name, folder in (('toy', 'toy'), ('toy-pq', 'toy-pq')):
        (reg / f'{name}.yaml').write_text(
            f'name: {name}\ntitle: t\nmodality: radiology\ntask: {{kind: closed_vqa}}\nmetric: closed_accuracy\n'
            f'sources: {{local: ../data/{folder}}}\nsplits: {{train: {{hub_split: train}}, test: {{hub_split: test}}}}\n'
            'native_size: {width: 1, height: 1}\nlicense: x\ncitation: x\n')
    settings = Settings().with_registry([str(reg)])
    for name in ('toy', 'toy-pq'):
        entry = get_entry(name, settings.registry_dirs)
        assert (split_rows(entry, 'train', settings), split_rows(entry, 'test', settings)) == (40, 16)
    assert dataset_rows('medres/toy', settings) == 40                 # the default split
    assert dataset_rows('medres/toy:train/test', settings) == 56
    assert dataset_rows('medres/toy-pq:test#5', settings) == 5       # ms-swift samples #n rows
    assert dataset_rows('medres/vqa-rad:test', settings) == 451       # a hub source: the entry's rows
    assert dataset_rows('some/hub-id', settings) is None
    assert dataset_rows(str(tmp_path / 'data' / 'toy' / 'data' / 'train.jsonl'), settings) == 40
    assert run_rows(['medres/toy', 'medres/toy-pq:test'], settings) == 56
    assert run_rows(['medres/toy'], settings, split_ratio=0.1) == 36   # train_test_split rounds the held-out share up
    assert run_rows(['medres/toy', 'some/hub-id'], settings) is None
    assert train_rows(CFG, ['--dataset', 'medres/toy', '--split_dataset_ratio', '0.5'], settings) == 20
    assert train_rows(CFG, ['--dataset', 'medres/toy', '--split_dataset_ratio', '0.5', '--val_dataset', 'medres/toy:test'],
                      settings) == 40
    with pytest.raises(RegistryError):
        dataset_rows('medres/no-such-entry', settings)
    arr = tmp_path / 'rows.json'
    arr.write_text(json.dumps([{'a': 1}, {'a': 2}]))
    assert file_rows(arr) == 2 and file_rows(tmp_path / 'data' / 'toy' / 'images' / '0000.png') is None
    # Counting is advice: a broken file is left to the run's own loading to report.
    (tmp_path / 'broken.json').write_text('[{"a": ')
    (tmp_path / 'broken.parquet').write_bytes(b'not parquet')
    assert file_rows(tmp_path / 'broken.json') is None and file_rows(tmp_path / 'broken.parquet') is None


def test_cli_takes_a_shipped_recipe_by_name_and_refuses_an_unknown_one():
    out = subprocess.run([MEDRES, 'train', 'qwen2-vl-2b-full-mixed', '--dry-run'], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'qwen2-vl-2b-full-mixed.yaml' in out.stdout and '--gradient_accumulation_steps 128' in out.stdout
    assert 'medres train: warning' not in out.stderr   # VQA-RAD's 1,793 rows: 15 steps per epoch x 3
    bad = subprocess.run([MEDRES, 'train', 'qwen2-vl-2b-full-mixd', '--dry-run'], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith('medres: error: recipe not found: qwen2-vl-2b-full-mixd')
    assert 'medres recipes list' in bad.stderr
