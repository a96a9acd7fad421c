"""What each `swift sft` / `swift infer` run records about the resolution policy it ran under.

ms-swift saves its arguments (`args.json`) beside a run's outputs, but the policy travels in
`MEDRES_*` variables, which it does not see. Once ms-swift has parsed a run's arguments, this
logs the effective policy once, writes it beside the outputs (`<output_dir>/medres_policy.json`
for training, `<result_path stem>.medres_policy.json` for inference), warns about misspelled
`MEDRES_*` names, and refuses flag combinations that cannot work, before any data is loaded.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Optional

from ..errors import PolicyError
from ..settings import env_warnings
from ..vocabulary import ENV_PREFIX, EPOCH_CALLBACK, Env
from .engine import refuse_engine
from .epoch import note_requested
from .policy import ResolutionPolicy

POLICY_FILE = 'medres_policy.json'


def policy_record(policy: Optional[ResolutionPolicy], command: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    try:
        medres_version = version('medres')
    except PackageNotFoundError:
        medres_version = 'unknown'
    return {
        'command': command,
        'policy': policy.as_dict() if policy else None,
        'describe': policy.describe() if policy else f'none ({Env.RESOLUTION} unset: images are left to ms-swift)',
        'env': {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIX)},
        'medres_version': medres_version,
    }


def policy_path(args, command: str) -> Optional[Path]:
    if command == 'sft':
        return Path(args.output_dir) / POLICY_FILE
    result = getattr(args, 'result_path', None)
    return Path(result).with_suffix('.' + POLICY_FILE) if result else None


def check_run(args, policy: Optional[ResolutionPolicy], command: str) -> None:
    """Refuse what would silently run at another resolution than the policy's."""
    if policy is None:
        return
    if getattr(args, 'max_pixels', None) is not None:
        raise PolicyError(f'--max_pixels (MAX_PIXELS) pre-shrinks every image and would override '
                          f'{Env.RESOLUTION}={policy.mode}: unset one of them')
    if command == 'infer':
        refuse_engine(str(getattr(args, 'infer_backend', 'transformers')), policy)
    if command == 'sft' and policy.redraw and EPOCH_CALLBACK not in (getattr(args, 'callbacks', None) or []):
        raise PolicyError(f'{Env.MIX_REDRAW}=1 needs the epoch callback: add `--callbacks {EPOCH_CALLBACK}`')


def on_arguments(args, command: str) -> None:
    from swift.utils import get_logger, is_master
    logger = get_logger()
    policy = ResolutionPolicy.from_env()
    for warning in env_warnings():
        logger.warning(f'medres: {warning}')
    check_run(args, policy, command)
    if command == 'sft':
        note_requested(getattr(args, 'callbacks', None))
    record = policy_record(policy, command)
    logger.info(f'medres: resolution policy for this swift {command}: {record["describe"]}')
    path = policy_path(args, command)
    if path is not None and is_master():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + '\n')


def command_of(args) -> Optional[str]:
    from swift.arguments import InferArguments, SftArguments
    return 'sft' if isinstance(args, SftArguments) else 'infer' if isinstance(args, InferArguments) else None


def register_argument_hooks() -> None:
    """Run `on_arguments` once per run, when ms-swift first builds the run's template.

    The plugin is imported while ms-swift is still parsing the arguments, so the hook sits on
    `get_template`, which `swift sft` and `swift infer` call after parsing and before loading data.
    """
    from swift.arguments import BaseArguments
    original = BaseArguments.get_template
    if getattr(original, '_medres', False):
        return

    @functools.wraps(original)
    def get_template(self, *a, **kw):
        command = command_of(self)
        if command and not getattr(self, '_medres_recorded', False):
            self._medres_recorded = True
            on_arguments(self, command)
        return original(self, *a, **kw)

    get_template._medres = True
    BaseArguments.get_template = get_template
