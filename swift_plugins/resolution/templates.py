"""ms-swift templates that apply the resolution policy per sample and check the token count.

`register_templates()` re-registers the stock template types of each supported family
(qwen2_vl, internvl2_5, internvl_hf, llava_onevision_hf, ...) with a subclass that, when
`MEDRES_RESOLUTION` is set, resizes each image once with the policy's filter to a size the
family's processor keeps, sets the family's knob so the processor does not resize again, and
after encoding compares the visual tokens actually produced with the policy's prediction: a
mismatch (an image resized twice, a knob ignored) raises instead of training on something else.
The subclass decodes each image itself, straight to its plan (`image_cache.load_policy_image`:
EXIF orientation, reduced-size JPEG decoding, `MEDRES_IMAGE_CACHE`), before ms-swift's own load
would decode it at full size. With `MEDRES_RESOLUTION` unset the subclass behaves exactly like
the stock template.
Under an inference engine (vLLM) the knob travels with each request, the engine is sized at start
for the largest planned image, and the check runs on the prompt the engine reports (`engine.py`).
`MEDRES_TOKEN_LOG=<file>` appends one JSON line per encoded sample (id, decision, sizes,
predicted and actual tokens).
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
from copy import copy
from typing import Any, Optional

from PIL import Image
from swift.utils import get_logger

from ..errors import PolicyError, TokenMismatchError
from ..settings import Settings
from ..vocabulary import EPOCH_CALLBACK, Env
from .engine import ENGINE_MODES, engine_kwargs, install_vllm_check, refuse_engine
from .epoch import callback_active, callback_requested, current_epoch
from .families import TEMPLATE_FAMILY, Family, set_run_template
from .image_cache import ImageCache, load_policy_image
from .mixing import MixSlot
from .policy import ResolutionPolicy

logger = get_logger()


class ResolutionTemplateMixin:
    """Mixed into a stock template class; see the module docstring."""

    def init_env_args(self):
        # The ms-swift boundary: ms-swift builds templates itself, so the policy comes from the
        # environment here (as its own knobs do, e.g. MAX_NUM), read once per template.
        super().init_env_args()
        set_run_template(self)
        self.medres_policy = ResolutionPolicy.from_env()
        settings = Settings.from_env()
        log = settings.token_log
        self.medres_token_log = str(log) if log else None
        self.medres_cache = ImageCache(settings.image_cache, int(settings.image_cache_gb * 1e9)) \
            if settings.image_cache and self.medres_policy is not None else None
        self._medres_family: Optional[Family] = None
        self._medres_warned = False

    @property
    def medres_family(self) -> Family:
        if self._medres_family is None:
            self._medres_family = TEMPLATE_FAMILY[self.template_meta.template_type].from_template(self)
        return self._medres_family

    def _medres_epoch(self, policy: ResolutionPolicy) -> int:
        if not (policy.redraw and self.is_training):
            return 0
        if not callback_active():
            # ms-swift encodes a preview sample before training starts (and the callback with it);
            # only a run that never asked for the callback is an error.
            if callback_requested():
                return 0
            raise PolicyError(f'{Env.MIX_REDRAW}=1 needs the epoch callback: add `--callbacks {EPOCH_CALLBACK}`')
        return current_epoch()

    def _preprocess_inputs(self, inputs) -> None:
        inputs.medres_plans = None
        if self.medres_policy is None:
            return super()._preprocess_inputs(inputs)
        # Before ms-swift loads the images: a row without a medres id is known by its content.
        inputs.medres_content_id = content_id(inputs.messages, inputs.images)
        # Decode each image once, straight to the plan (drafted JPEG, cache), before ms-swift's own
        # load would decode it at full size; images only super() finds (`<img>` tags), and rows with
        # grounding objects (their boxes are normalised to the original size), take the stock load.
        early = bool(inputs.images) and not inputs.objects
        if early:
            self._medres_apply(inputs)
        super()._preprocess_inputs(inputs)
        if not early and inputs.images:
            self._medres_apply(inputs)

    def _medres_apply(self, inputs) -> None:
        policy = self.medres_policy
        if self.max_pixels is not None:
            raise PolicyError(f'--max_pixels (MAX_PIXELS) pre-shrinks every image and would override '
                              f'{Env.RESOLUTION}: unset one of them')
        meta = (inputs.chat_template_kwargs or {}).get('medres') or {}
        slot = MixSlot(**meta['mix']) if meta.get('mix') else None
        if policy.mode == 'mixed' and policy.balance != 'none' and slot is None and not self._medres_warned:
            self._medres_warned = True
            logger.warning('medres: rows without a balanced mix slot (not from a medres registry dataset, or '
                           'streamed) are drawn independently at the mix ratio, without balance')
        epoch = self._medres_epoch(policy)
        sid = meta.get('id') or inputs.medres_content_id
        decision = policy.decide(sid, slot, epoch)
        plans, cached = [], []
        for i, image in enumerate(inputs.images):
            data = None if isinstance(image, Image.Image) else _image_bytes(image)
            try:
                if data is not None:
                    inputs.images[i], plan, hit = load_policy_image(data, policy, decision, self.medres_family,
                                                                    self.medres_cache)
                else:
                    if not isinstance(image, Image.Image):
                        image = self._load_image(image, True)
                    inputs.images[i], plan = policy.apply(image, decision, self.medres_family)
                    hit = None
            except PolicyError as e:
                raise PolicyError(f'sample {sid} image {i}: {e}') from None
            plans.append(plan)
            cached.append(hit)
        inputs.medres_plans = plans
        inputs.medres_cached = cached
        inputs.medres_meta = meta
        inputs.medres_epoch = epoch
        if self.mode in ENGINE_MODES:
            # ms-swift's engine branch skips `_encode` (and its knobs): the knob goes with the request.
            refuse_engine(self.mode, policy)
            install_vllm_check()  # normally done at engine start; also for engines built around it
            self.medres_family.engine_knobs(self, inputs, [p.size for p in plans])

    def prepare_engine_kwargs(self) -> dict[str, Any]:
        # Called once by ms-swift's VllmEngine before the engine starts.
        kwargs = super().prepare_engine_kwargs()
        if self.medres_policy is None:
            return kwargs
        install_vllm_check()
        kwargs = engine_kwargs(self.medres_policy, self.medres_family, kwargs)
        logger.info(f'medres: vLLM engine settings for {self.medres_policy.mode} ({self.medres_family.name}): '
                    f'mm_processor_kwargs={kwargs.get("mm_processor_kwargs")}')
        return kwargs

    def medres_engine_check(self, inputs, prompt_token_ids: list[int]) -> None:
        """The engine answered `inputs`: check (and log) the visual tokens in the prompt it ran."""
        token_id = self.tokenizer.convert_tokens_to_ids(self.medres_family.image_token)
        self._medres_record(inputs, inputs.medres_plans, sum(1 for t in prompt_token_ids if t == token_id))

    def _encode(self, inputs) -> dict[str, Any]:
        plans = getattr(inputs, 'medres_plans', None)
        if not plans:
            return super()._encode(inputs)
        with self.medres_family.apply_knobs(self, inputs, [p.size for p in plans]):
            encoded = super()._encode(inputs)
        self._medres_check(inputs, plans, encoded)
        return encoded

    def _medres_check(self, inputs, plans, encoded) -> None:
        token_id = self.tokenizer.convert_tokens_to_ids(self.medres_family.image_token)
        self._medres_record(inputs, plans, sum(1 for t in encoded['input_ids'] if t == token_id))

    def _medres_record(self, inputs, plans, actual: int) -> None:
        family = self.medres_family
        predicted = sum(p.tokens for p in plans)
        meta = getattr(inputs, 'medres_meta', {}) or {}
        if self.medres_token_log:
            record = {'id': meta.get('id'), 'dataset': meta.get('dataset'), 'split': meta.get('split'),
                      'template': self.template_meta.template_type, 'family': family.name,
                      'mode': self.mode, 'training': bool(self.is_training), 'epoch': getattr(inputs, 'medres_epoch', 0),
                      'policy': self.medres_policy.mode,
                      'decision': plans[0].decision, 'source': [list(p.source) for p in plans],
                      'size': [list(p.size) for p in plans], 'align': [p.align for p in plans],
                      'cache_hit': getattr(inputs, 'medres_cached', None),
                      'predicted_tokens': predicted, 'actual_tokens': actual}
            with open(self.medres_token_log, 'a') as f:
                f.write(json.dumps(record) + '\n')
        if actual != predicted:
            who = f'the {self.mode} engine ({family.name})' if self.mode in ENGINE_MODES else f'{family.name} template'
            raise TokenMismatchError(
                f'{meta.get("id", "sample")}: {who} produced {actual} visual tokens, the '
                f'resolution policy planned {predicted} for sizes {[p.size for p in plans]}: the image was '
                f'resized again after the policy, so the run would not be at the resolution it claims')


def content_id(messages, images) -> str:
    """A stable id for a row that is not from the registry (a plain ms-swift jsonl): a hash of its
    prompt turns (a trailing answer left out, which `swift infer` removes) and its image references
    (paths as given, or a hash of the bytes), so training and inference draw the same decision."""
    turns = list(messages or [])
    if turns and turns[-1].get('role') == 'assistant':
        turns = turns[:-1]
    refs = []
    for image in images or []:
        if isinstance(image, dict):
            image = image.get('path') or image.get('bytes')
        if isinstance(image, Image.Image):
            image = image.tobytes()
        refs.append(hashlib.sha256(image).hexdigest() if isinstance(image, (bytes, bytearray)) else str(image))
    blob = json.dumps([[t.get('role'), t.get('content')] for t in turns] + refs, ensure_ascii=False, default=str)
    return 'content/' + hashlib.sha256(blob.encode()).hexdigest()[:16]


def _image_bytes(image) -> Optional[bytes]:
    """The encoded bytes of an image reference as ms-swift resolves it (bytes, {'bytes', 'path'}, a
    path under ROOT_IMAGE_DIR, a URL, base64); None for anything else (decoded by the stock path)."""
    from swift.template.vision_utils import load_file

    if isinstance(image, dict):
        image = image.get('bytes') or image.get('path')
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, str):
        f = load_file(image)
        return f.getvalue() if isinstance(f, io.BytesIO) else None
    return None


def _subclass(base: type) -> type:
    name = f'Medres{base.__name__}'
    module = sys.modules[__name__]
    cls = getattr(module, name, None)
    if cls is None:
        cls = type(name, (ResolutionTemplateMixin, base), {'__module__': __name__})
        setattr(module, name, cls)  # importable by name, so templates pickle into worker processes
    return cls


def register_templates() -> list[str]:
    """Wrap every installed template type of the supported families; idempotent."""
    from swift.template import TEMPLATE_MAPPING, register_template

    done = []
    for template_type in TEMPLATE_FAMILY:
        meta = TEMPLATE_MAPPING.get(template_type)
        if meta is None:
            continue
        if not issubclass(meta.template_cls, ResolutionTemplateMixin):
            new_meta = copy(meta)
            new_meta.template_cls = _subclass(meta.template_cls)
            register_template(new_meta, exist_ok=True)
        done.append(template_type)
    return done
