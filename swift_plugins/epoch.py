"""The training epoch, for per-epoch re-draws of the mixed-resolution assignment.

`swift sft ... --callbacks medres_epoch` installs the callback. It runs in the trainer process
before each epoch's dataloader workers are started, so the workers (forked then) and in-process
encoding both see the current epoch. Persistent workers would keep a stale copy: refused.
"""
from __future__ import annotations

from swift.callbacks import TrainerCallback

CALLBACK_NAME = 'medres_epoch'
_STATE = {'epoch': 0, 'active': False}


def current_epoch() -> int:
    return _STATE['epoch']


def callback_active() -> bool:
    return _STATE['active']


class MedresEpochCallback(TrainerCallback):

    def on_train_begin(self, args, state, control, **kwargs):
        if getattr(args, 'dataloader_persistent_workers', False) and getattr(args, 'dataloader_num_workers', 0):
            raise ValueError('MEDRES_MIX_REDRAW re-draws in the dataloader workers each epoch; '
                             'persistent workers would keep epoch 0: set --dataloader_persistent_workers false')
        _STATE['active'] = True
        _STATE['epoch'] = int(round(state.epoch or 0))

    def on_epoch_begin(self, args, state, control, **kwargs):
        _STATE['epoch'] = int(round(state.epoch or 0))
