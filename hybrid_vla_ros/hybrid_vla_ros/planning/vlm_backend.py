"""Optional step proposer: any local Hugging Face vision-language model folder a user configures.

The VLM sees the camera image and a chat prompt (the instruction, the allow-listed skills, the
scene's objects and one worked example) and is asked for the sub-goal list as JSON. Its answer is
only ever *parsed* with the same parser as the LLM backend (``llm_backend.parse_llm_plan``) and
validated against the skill allow-list and the scene's objects; it is never executed. A missing
folder, a folder that holds no VLM, malformed JSON, unknown skills or objects all raise
``PlanningError`` (``VLMUnavailableError`` for the loading problems).

Loading uses ``transformers`` (``AutoProcessor`` + ``AutoModelForImageTextToText``, or
``AutoModelForVision2Seq`` on older versions) with ``local_files_only=True``: nothing is ever
downloaded. Decoding is greedy with a token cap.

Use: ``StrategicPlanner.from_checkpoint(backend=HFVLMBackend('/path/to/vlm'))`` or
``StrategicPlanner.from_checkpoint(backend='hf_vlm', vlm_path='/path/to/vlm')``.
"""
from __future__ import annotations

import json
from pathlib import Path
import time

import numpy as np

from .llm_backend import _EXAMPLE, LLMUnavailableError, parse_llm_plan, system_prompt
from .skills import PlanningError

DEFAULT_MAX_NEW_TOKENS = 256


class VLMUnavailableError(PlanningError, LLMUnavailableError):
    """The configured VLM folder is missing, is not a vision-language model, or cannot be
    loaded (a ``PlanningError``: the planner refuses instead of acting)."""


def vlm_prompt(instruction: str, scene_objects=None) -> str:
    """Text part of the VLM's user turn (the image comes first in the same turn): the shared
    task statement, one worked example and the instruction."""
    return (f'{system_prompt(scene_objects)}\n'
            'Example: for "put the red cube on the blue pad" answer '
            f'{json.dumps(_EXAMPLE)}\n'
            f'Instruction: {instruction}\nAnswer:')


def build_vlm_messages(instruction: str, scene_objects=None) -> list:
    """One user turn: the camera image then the prompt text (a single user turn is what every
    VLM chat template supports; some reject a system role)."""
    return [{'role': 'user', 'content': [
        {'type': 'image'}, {'type': 'text', 'text': vlm_prompt(instruction, scene_objects)}]}]


def _auto_model_class():
    import transformers
    cls = getattr(transformers, 'AutoModelForImageTextToText', None) or \
        getattr(transformers, 'AutoModelForVision2Seq', None)
    if cls is None:
        raise VLMUnavailableError(f'transformers {transformers.__version__} has neither '
                                  'AutoModelForImageTextToText nor AutoModelForVision2Seq')
    return cls


def _as_rgb(image):
    """(H, W, 3) uint8 numpy array (or PIL image) -> PIL RGB image; PlanningError otherwise."""
    from PIL import Image
    if isinstance(image, Image.Image):
        return image.convert('RGB')
    a = np.asarray(image) if image is not None else None
    if a is None or a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise PlanningError('the VLM backend needs the camera image as (H, W, 3) uint8 RGB, got '
                            f'{None if a is None else (a.shape, str(a.dtype))}')
    return Image.fromarray(np.ascontiguousarray(a), 'RGB')


class HFVLMBackend:
    """Step proposer that shows the camera image to a local Hugging Face VLM and parses its JSON.

    ``model_path``: a local folder saved with ``save_pretrained`` (config, weights, processor
    with an image processor, tokenizer and chat template). ``max_new_tokens`` caps the answer;
    ``scene_objects`` (optional) restricts the allowed objects when ``propose`` gets none.
    """

    name = 'hf_vlm'
    uses_image = True     # StrategicPlanner.plan passes the raw camera image and scene objects

    def __init__(self, model_path: str | Path, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 scene_objects=None, torch_dtype=None) -> None:
        if not model_path:
            raise VLMUnavailableError('no VLM folder configured (set vlm_path to a local '
                                      'Hugging Face model directory)')
        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise VLMUnavailableError(f'VLM folder {path} does not exist (nothing is '
                                      'downloaded: save the model there with save_pretrained)')
        if not (path / 'config.json').is_file():
            raise VLMUnavailableError(f'{path} is not a Hugging Face model folder (no '
                                      'config.json)')
        try:
            import transformers  # noqa: F401
        except ImportError as exc:
            raise VLMUnavailableError('pip install transformers to use the VLM planner') from exc
        from transformers import AutoConfig, AutoProcessor
        kwargs = {'local_files_only': True}
        try:
            config = AutoConfig.from_pretrained(str(path), **kwargs)
        except Exception as exc:  # unknown model_type, broken JSON, ...
            raise VLMUnavailableError(f'cannot read the model config in {path}: {exc}') from exc
        if getattr(config, 'vision_config', None) is None:
            raise VLMUnavailableError(f'{path} holds a {config.model_type!r} model without a '
                                      'vision tower: not a vision-language model (use the LLM '
                                      'backend for text-only models)')
        try:
            self.processor = AutoProcessor.from_pretrained(str(path), **kwargs)
        except Exception as exc:
            raise VLMUnavailableError(f'cannot load the processor in {path}: {exc}') from exc
        if getattr(self.processor, 'image_processor', None) is None:
            raise VLMUnavailableError(f'the processor in {path} has no image processor: not a '
                                      'vision-language model')
        if not getattr(self.processor, 'chat_template', None):
            raise VLMUnavailableError(f'the processor in {path} has no chat template '
                                      '(chat_template.jinja / chat_template.json)')
        if torch_dtype is not None:
            kwargs['dtype'] = torch_dtype
        try:
            self.model = _auto_model_class().from_pretrained(str(path), **kwargs).eval()
        except VLMUnavailableError:
            raise
        except Exception as exc:
            raise VLMUnavailableError(f'cannot load a vision-language model from {path}: '
                                      f'{exc}') from exc
        self.path = path
        self.max_new_tokens = int(max_new_tokens)
        self.scene_objects = scene_objects
        self.last_output = ''
        self.last_timing_ms: dict = {}

    @property
    def tokenizer(self):
        return getattr(self.processor, 'tokenizer', self.processor)

    def generate(self, instruction: str, image, scene_objects=None) -> str:
        """Greedy answer of the VLM (decoded text of the new tokens only)."""
        import torch
        if not isinstance(instruction, str) or not instruction.strip():
            raise PlanningError('instruction must be a non-empty string')
        pil = _as_rgb(image)
        t0 = time.perf_counter()
        msgs = build_vlm_messages(instruction, scene_objects or self.scene_objects)
        prompt = self.processor.apply_chat_template(msgs, add_generation_prompt=True,
                                                    tokenize=False)
        inputs = self.processor(images=[pil], text=[prompt], return_tensors='pt')
        tok = self.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        t1 = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens,
                                      do_sample=False, pad_token_id=pad)
        t2 = time.perf_counter()
        n = inputs['input_ids'].shape[1]
        self.last_output = tok.decode(out[0, n:], skip_special_tokens=True)
        self.last_timing_ms = {'prepare': 1e3 * (t1 - t0), 'generate': 1e3 * (t2 - t1),
                               'new_tokens': int(out.shape[1] - n)}
        return self.last_output

    def parse(self, answer: str, scene_objects=None) -> list:
        """The VLM's answer -> validated ``SymbolicStep`` s (the LLM backend's parser and the
        shared validation); ``PlanningError`` naming the problem otherwise."""
        try:
            return parse_llm_plan(answer, scene_objects or self.scene_objects)
        except PlanningError as exc:
            short = answer[:120] + ('...' if len(answer) > 120 else '') \
                if isinstance(answer, str) else answer
            raise PlanningError(f'VLM answer rejected ({exc}); answer was {short!r}') from exc

    def propose(self, instruction: str, text=None, image=None, scene_objects=None) -> tuple:
        """``(steps, confidences)`` for ``instruction`` in the scene of the raw camera ``image``
        (``text`` = frozen text features, unused). Confidence 0.5: a VLM gives no calibrated
        one."""
        steps = self.parse(self.generate(instruction, image, scene_objects), scene_objects)
        return steps, [0.5] * len(steps)


__all__ = ['HFVLMBackend', 'VLMUnavailableError', 'build_vlm_messages', 'vlm_prompt']
