"""The training epoch, for per-epoch re-draws of the mixed-resolution assignment.

`swift sft ... --callbacks medres_epoch` installs the callback. It runs in the trainer process
before each epoch's dataloader workers are started, so the workers (forked then) and in-process
encoding both see the current epoch. Persistent workers would keep a stale copy: refused.
"""
from __future__ import annotations

from swift.callbacks import TrainerCallback

from ..errors import PolicyError
from ..vocabulary import EPOCH_CALLBACK, Env

# `requested`: the run's --callbacks name this callback (set from ms-swift's parsed arguments).
_STATE = {'epoch': 0, 'active': False, 'requested': False}


def current_epoch() -> int:
    return _STATE['epoch']


def callback_active() -> bool:
    return _STATE['active']


def callback_requested() -> bool:
    return _STATE.get('requested', False)


def note_requested(callbacks) -> None:
    """Record whether the run asked for the callback (before training starts, it is not active yet)."""
    _STATE['requested'] = EPOCH_CALLBACK in (callbacks or [])


class MedresEpochCallback(TrainerCallback):

    def on_train_begin(self, args, state, control, **kwargs):
        if getattr(args, 'dataloader_persistent_workers', False) and getattr(args, 'dataloader_num_workers', 0):
            raise PolicyError(f'{Env.MIX_REDRAW} re-draws in the dataloader workers each epoch; '
                             'persistent workers would keep epoch 0: set --dataloader_persistent_workers false')
        _STATE['active'] = True
        _STATE['epoch'] = int(round(state.epoch or 0))

    def on_epoch_begin(self, args, state, control, **kwargs):
        _STATE['epoch'] = int(round(state.epoch or 0))


def register_epoch_callback() -> None:
    from swift.callbacks import callbacks_map
    callbacks_map[EPOCH_CALLBACK] = MedresEpochCallback
