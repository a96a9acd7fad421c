"""The resolution policy under an inference engine (`swift infer --infer_backend vllm`).

In engine modes ms-swift encodes only the prompt (one placeholder per image) and the engine's own
processor turns each image into visual tokens, so the transformers-mode check (count the tokens
in the encoded ids) sees nothing. Under vLLM medres instead
- sets the family's knob per request where engine-mode encoding reads it (`Family.engine_knobs`:
  Qwen2-VL's min/max pixels, InternVL's tile budget in `mm_processor_kwargs`);
- sizes the engine at start for the largest image the policy can plan (`engine_kwargs`), since
  vLLM allocates its encoder cache for the processor's defaults and a larger request overflows it;
- checks, when the engine answers, the visual tokens in the prompt token ids vLLM actually ran
  against the plan, writes the token log, and raises `TokenMismatchError` naming the row.
lmdeploy and sglang report no expanded prompt (ms-swift returns its own input ids) and take no
per-request processor settings from ms-swift, so a policy under them is refused, not run unchecked.
"""
from __future__ import annotations

import functools
from typing import Any

from ..errors import PolicyError
from ..vocabulary import Env
from .families import Family
from .policy import ResolutionPolicy

ENGINE_MODES = frozenset({'vllm', 'lmdeploy', 'sglang'})
CHECKED_ENGINES = frozenset({'vllm'})


def refuse_engine(backend: str, policy: ResolutionPolicy) -> None:
    """Raise unless medres can apply and check the policy under `backend`."""
    if backend in ENGINE_MODES and backend not in CHECKED_ENGINES:
        raise PolicyError(
            f'{Env.RESOLUTION}={policy.mode} with --infer_backend {backend}: medres cannot pass the model '
            f"family's resolution setting to {backend} nor read back the visual tokens it produces, so the "
            f'run could be at another resolution than the policy says; use --infer_backend vllm or transformers')


def largest_pixels(policy: ResolutionPolicy) -> int:
    """The most pixels an image planned by `policy` can have (low by a pixel budget: that budget;
    otherwise the native cap, which also bounds a low image by scale unless the source is huge)."""
    if policy.mode == 'low' and policy.low_scale is None and not policy.upsample_from_low:
        return min(policy.low_pixels, policy.native_max_pixels)
    return policy.native_max_pixels


def engine_kwargs(policy: ResolutionPolicy, family: Family, base: dict) -> dict:
    """vLLM engine arguments at start: `base` (the template's own) with the family's processor
    budgets for the largest planned image merged into `mm_processor_kwargs`."""
    settings = family.engine_settings(largest_pixels(policy))
    if not settings:
        return base
    return {**base, 'mm_processor_kwargs': {**(base.get('mm_processor_kwargs') or {}), **settings}}


def install_vllm_check() -> None:
    """Make ms-swift's VllmEngine hand each answered request's prompt token ids to its template's
    `medres_engine_check` (idempotent). The requests are remembered by id when added, so streamed
    answers, which carry no inputs, are checked too."""
    try:
        from swift.infer_engine.vllm_engine import VllmEngine
    except ImportError:  # no vLLM installed: no engine can answer, nothing to hook
        return
    if getattr(VllmEngine, '_medres_checked', False):
        return
    add, full, stream = (VllmEngine._add_request, VllmEngine._create_chat_completion_response,
                         VllmEngine._create_chat_completion_stream_response)

    def check(engine: Any, request_id: str, result: Any) -> None:
        template_inputs = engine.__dict__.get('_medres_pending', {}).pop(request_id, None)
        if template_inputs is not None:
            engine.template.medres_engine_check(template_inputs, list(result.prompt_token_ids))

    @functools.wraps(add)
    def _add_request(self, inputs, generation_config, request_id, *args, **kwargs):
        template_inputs = inputs.get('template_inputs')
        if getattr(template_inputs, 'medres_plans', None):
            self.__dict__.setdefault('_medres_pending', {})[request_id] = template_inputs
        return add(self, inputs, generation_config, request_id, *args, **kwargs)

    @functools.wraps(full)
    def _create_chat_completion_response(self, result, inputs, request_config, request_id, *args, **kwargs):
        check(self, request_id, result)
        return full(self, result, inputs, request_config, request_id, *args, **kwargs)

    @functools.wraps(stream)
    def _create_chat_completion_stream_response(self, result, request_config, request_id, *args, **kwargs):
        check(self, request_id, result)
        return stream(self, result, request_config, request_id, *args, **kwargs)

    VllmEngine._add_request = _add_request
    VllmEngine._create_chat_completion_response = _create_chat_completion_response
    VllmEngine._create_chat_completion_stream_response = _create_chat_completion_stream_response
    VllmEngine._medres_checked = True
