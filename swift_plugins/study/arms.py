"""Train a study's arms: one `medres train <recipe>` run per (dataset, training resolution).

An arm is `recipes/train/<model>-<tuning>-<resolution>.yaml` launched by the same launcher as
`medres train` (the batch arithmetic, ms-swift's torchrun path), with only the dataset, the output
folder and what the user passes after `--` added. It lives in `<workdir>/arms/<dataset>/<arm>/`:
`train/` (ms-swift's output), `sft.log`, `train_tokens.jsonl` (per-sample visual tokens) and
`arm.json`, written last, which marks it finished and records its content key. A finished arm with
the same key is reused; one trained with other settings is refused with what changed (`--redo`
retrains it). A killed arm restarts, from its last full checkpoint (weights and optimizer) when it
has one.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from ..errors import StudyError
from ..eval.grid import checkpoint_fingerprint, sha256_text
from ..train.swift_run import last_checkpoint, run_logged, run_swift
from ..vocabulary import Env

MARKER = 'arm.json'
STARTED = 'arm.started.json'

# How a changed part of an arm's key is named to the user.
_CHANGE_NAMES = {
    'recipe_sha256': "the training recipe's contents", 'recipe': 'the training recipe',
    'entry_sha256': 'the registry entry', 'model': 'the base model', 'model_fingerprint': "the base model's files",
    'command': 'the training flags (launcher or swift sft flags)', 'policy': 'the resolution policy overrides',
    'data': 'where the data is read from', 'tuning': 'the tuning',
}


class ArmFiles:
    """Where an arm's logs are, beside its `train/` folder."""
    folder: Path

    @property
    def log(self) -> Path:
        return self.folder / 'sft.log'

    @property
    def token_log(self) -> Path:
        return self.folder / 'train_tokens.jsonl'


@dataclass
class ArmJob(ArmFiles):
    """Everything that determines one arm's training run."""
    dataset: str
    arm: str
    recipe: Path
    folder: Path
    launcher: list[str]          # `medres train <recipe> --nproc-per-node ... --micro-batch ...`
    swift_args: list[str]        # after `--`
    env: dict[str, str]          # the run's complete environment, less its token log
    key_parts: dict              # what the content key is made of
    max_steps: Optional[int] = None
    merge_lora: bool = False

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.key_parts, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def train_dir(self) -> Path:
        return self.folder / 'train'

    def command(self, resume: Optional[Path] = None) -> list[str]:
        extra = ['--resume_from_checkpoint', str(resume)] if resume else []
        return [sys.executable, '-m', 'swift_plugins.cli.main', *self.launcher, '--', *self.swift_args, *extra]


def make_job(*, dataset: str, arm: str, recipe: Path, folder: Path, launcher: Sequence[str], swift_args: Sequence[str],
             env: Mapping[str, str], model: str, entry_sha256: str, policy: Mapping[str, str], data: Mapping[str, str],
             tuning: str, max_steps: Optional[int] = None) -> ArmJob:
    parts = {'recipe': str(recipe), 'recipe_sha256': sha256_text(recipe), 'entry_sha256': entry_sha256,
             'model': model, 'model_fingerprint': checkpoint_fingerprint(model), 'tuning': tuning,
             'command': [*launcher, '--', *swift_args], 'policy': dict(sorted(policy.items())),
             'data': dict(sorted(data.items()))}
    return ArmJob(dataset, arm, recipe, Path(folder), list(launcher), list(swift_args), dict(env), parts, max_steps,
                  merge_lora=tuning == 'lora')


@dataclass
class ArmResult(ArmFiles):
    dataset: str
    arm: str
    checkpoint: Path
    folder: Path
    seconds: float
    losses: list[float] = field(default_factory=list)
    cached: bool = False
    resumed_from: Optional[str] = None


def recorded(job: ArmJob) -> Optional[dict]:
    path = job.folder / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


def check_finished(job: ArmJob, redo: bool = False) -> Optional[ArmResult]:
    """The finished arm when its key matches; None when it has to be trained; refuses a changed one."""
    done = recorded(job)
    if done is None:
        return None
    if done['key'] == job.key and not Path(done['checkpoint']).is_dir():
        return None   # its checkpoint was deleted: train it again
    if done['key'] != job.key:
        if redo:
            return None
        old = done.get('key_parts', {})
        changed = sorted(k for k in set(old) | set(job.key_parts) if old.get(k) != job.key_parts.get(k))
        what = '; '.join(_CHANGE_NAMES.get(k, k) for k in changed)
        raise StudyError(f'{job.folder}: the {job.arm} arm on {job.dataset} was trained with other settings: {what} '
                         'changed since. --redo retrains it (or use another --workdir)')
    return ArmResult(job.dataset, job.arm, Path(done['checkpoint']), job.folder, done['seconds'],
                     done.get('losses', []), cached=True, resumed_from=done.get('resumed_from'))


def losses(output_dir: Path) -> list[float]:
    path = output_dir / 'logging.jsonl'
    if not path.is_file():
        return []
    return [float(r['loss']) for r in map(json.loads, filter(str.strip, path.read_text().splitlines())) if 'loss' in r]


def logged_step(output_dir: Path) -> int:
    """The last global step ms-swift logged under `output_dir` (0 before the first log line)."""
    path = output_dir / 'logging.jsonl'
    if not path.is_file():
        return 0
    for line in reversed(path.read_text().splitlines()):
        done = json.loads(line).get('global_step/max_steps', '') if line.strip() else ''
        if done:
            return int(str(done).split('/')[0])
    return 0


def resumable_checkpoint(job: ArmJob) -> Optional[Path]:
    """The last checkpoint of a killed run of the same key that holds its optimizer state."""
    started = job.folder / STARTED
    if not started.is_file() or json.loads(started.read_text()).get('key') != job.key:
        return None
    ckpts = sorted(job.train_dir.glob('checkpoint-*'), key=lambda p: int(p.name.rsplit('-', 1)[-1])
                   if p.name.rsplit('-', 1)[-1].isdigit() else -1)
    for ckpt in reversed(ckpts):
        if (ckpt / 'trainer_state.json').is_file() and any(ckpt.glob('global_step*')) | any(ckpt.glob('optimizer*')):
            return ckpt
    return None


def train(job: ArmJob, *, on_step: Callable[[int], None] = lambda step: None) -> ArmResult:
    """Train one arm (the caller checked it is not finished); returns its checkpoint and logs."""
    job.folder.mkdir(parents=True, exist_ok=True)
    (job.folder / MARKER).unlink(missing_ok=True)
    resume = resumable_checkpoint(job)
    if resume is None:
        for stale in (job.train_dir, job.folder / 'merged'):
            shutil.rmtree(stale, ignore_errors=True)   # a killed or outdated attempt: start over
        job.token_log.unlink(missing_ok=True)           # the template appends
    (job.folder / STARTED).write_text(json.dumps({'key': job.key, 'key_parts': job.key_parts}, indent=1))
    env = {**job.env, Env.TOKEN_LOG: str(job.token_log)}
    seconds = run_logged(job.command(resume), log_path=job.log, env=env, name=f'medres train ({job.arm} arm, {job.dataset})',
                         cwd=job.folder, poll=lambda: on_step(logged_step(job.train_dir)))
    ckpt = last_checkpoint(job.train_dir)
    if job.merge_lora:
        merged = job.folder / 'merged'
        shutil.rmtree(merged, ignore_errors=True)
        seconds += run_swift('export', ['--adapters', str(ckpt), '--merge_lora', 'true', '--output_dir', str(merged)],
                             env=job.env, log_path=job.folder / 'merge.log', spinner=False,
                             title=f'swift export (merge the {job.arm} arm\'s LoRA)')
        ckpt = merged
    record = {'key': job.key, 'key_parts': job.key_parts, 'checkpoint': str(ckpt), 'seconds': round(seconds, 1),
              'losses': losses(job.train_dir), 'resumed_from': str(resume) if resume else None}
    tmp = job.folder / (MARKER + '.tmp')
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(job.folder / MARKER)   # last: the arm is finished only now
    (job.folder / STARTED).unlink(missing_ok=True)
    return ArmResult(job.dataset, job.arm, ckpt, job.folder, seconds, record['losses'], cached=False,
                     resumed_from=record['resumed_from'])
