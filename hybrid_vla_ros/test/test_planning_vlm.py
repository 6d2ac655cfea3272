"""Optional Hugging Face VLM planner backend: loading, generation, parsing and validation.

No real VLM weights exist here and nothing may be downloaded, so the real code path
(``AutoProcessor`` + ``AutoModelForImageTextToText`` from a local folder, chat template with the
image, greedy generation, decoding, parsing, validation) runs on a tiny randomly initialised
LLaVA (1-layer CLIP vision tower on 32 px, 1-layer Llama text tower, a byte-level BPE tokenizer
trained offline on the prompt) that the module fixture saves with ``save_pretrained``. Its random
output must give a planning error, never an action; well-formed / malformed answers are injected
at the text level and go through the same parse + validation path.
"""
import json
import time

import numpy as np
import pytest
import torch

from hybrid_vla_ros.planning.skills import SKILL_ALLOW_LIST, PlanningError, validate_steps
from hybrid_vla_ros.planning.strategic_planner import DEFAULT_CHECKPOINT, StrategicPlanner

torch.set_num_threads(1)
transformers = pytest.importorskip('transformers')
pytest.importorskip('tokenizers')

from hybrid_vla_ros.planning.vlm_backend import (  # noqa: E402
    HFVLMBackend,
    VLMUnavailableError,
    build_vlm_messages,
    vlm_prompt,
)

SCENE = {'red cube', 'blue pad', 'green cylinder', 'yellow pad'}
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>"
                 "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
                 "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
                 "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}</s>"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
GOOD = json.dumps([
    {'skill': 'move_above', 'object': 'red cube'}, {'skill': 'descend', 'object': 'red cube'},
    {'skill': 'grasp', 'object': 'red cube'}, {'skill': 'lift', 'object': 'red cube'},
    {'skill': 'move_above', 'object': 'red cube', 'reference': 'blue pad'},
    {'skill': 'place', 'object': 'red cube', 'reference': 'blue pad'},
    {'skill': 'release', 'object': 'red cube'}, {'skill': 'retreat', 'object': 'red cube'}])


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    specials = ['<pad>', '<s>', '</s>', '<unk>', '<image>', '<|user|>', '<|assistant|>']
    tok = Tokenizer(models.BPE(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [vlm_prompt('put the red cube on the blue pad', SCENE), GOOD]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token='<s>', eos_token='</s>',
                                   unk_token='<unk>', pad_token='<pad>')
    fast.add_special_tokens({'additional_special_tokens': specials[4:]})
    return fast


def build_tiny_vlm(out, seed: int = 0):
    """A random tiny LLaVA + processor (image processor, tokenizer, chat template) in ``out``."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )
    tok = _tokenizer()
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={'shortest_edge': 32},
                                           crop_size={'height': 32, 'width': 32}),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy='default',
        chat_template=CHAT_TEMPLATE, image_token='<image>', num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, image_size=32, patch_size=8)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                       max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids('<image>'),
                         vision_feature_select_strategy='default', vision_feature_layer=-1)
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope='module')
def tiny_vlm_dir(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp('tiny_vlm'))


@pytest.fixture(scope='module')
def vlm(tiny_vlm_dir):
    return HFVLMBackend(tiny_vlm_dir, max_new_tokens=32)


@pytest.fixture(scope='module')
def scene_image():
    """A rendered sim scene (pick_place) as the camera image."""
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    sim = ArmSim()
    try:
        sim.reset('pick_place', 7)
        return sim.render(), sim.camera_info()
    finally:
        sim.close()


def test_vlm_loads_generates_greedily_and_refuses_random_output(vlm, scene_image):
    img, _ = scene_image
    t0 = time.perf_counter()
    text = vlm.generate('put the red cube on the blue pad', img, SCENE)
    dt = time.perf_counter() - t0
    assert isinstance(text, str) and vlm.last_timing_ms['new_tokens'] <= 32
    assert vlm.generate('put the red cube on the blue pad', img, SCENE) == text   # greedy
    print(f'tiny VLM: {dt * 1e3:.0f} ms for {vlm.last_timing_ms["new_tokens"]} new tokens')
    with pytest.raises(PlanningError, match='VLM answer rejected'):
        vlm.propose('put the red cube on the blue pad', None, img, scene_objects=SCENE)


def test_vlm_prompt_carries_image_instruction_skills_and_scene_objects(vlm):
    msgs = build_vlm_messages('put the red cube on the blue pad', SCENE)
    content = msgs[0]['content']
    assert content[0] == {'type': 'image'}
    prompt = content[1]['text']
    assert 'put the red cube on the blue pad' in prompt
    assert all(s in prompt for s in SKILL_ALLOW_LIST) and all(o in prompt for o in SCENE)
    rendered = vlm.processor.apply_chat_template(msgs, add_generation_prompt=True,
                                                 tokenize=False)
    assert '<image>' in rendered and rendered.endswith('<|assistant|>')


@pytest.mark.parametrize('make', ['missing', 'empty', 'text_only', 'not_a_model'])
def test_missing_folder_or_not_a_vlm_is_a_clear_error(tmp_path, make):
    path = tmp_path / 'model'
    if make == 'empty':
        path.mkdir()
    elif make == 'not_a_model':
        path.mkdir()
        (path / 'config.json').write_text('{"model_type": "no_such_architecture"}')
    elif make == 'text_only':
        from transformers import LlamaConfig, LlamaForCausalLM
        LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2)).save_pretrained(path)
    match = {'missing': 'does not exist', 'empty': 'no config.json',
             'text_only': 'not a vision-language model', 'not_a_model': 'cannot read'}[make]
    with pytest.raises(VLMUnavailableError, match=match) as info:
        HFVLMBackend(path)
    assert isinstance(info.value, PlanningError)
    with pytest.raises(PlanningError):
        HFVLMBackend('')


def _inject(vlm, monkeypatch, answer):
    monkeypatch.setattr(vlm, 'generate', lambda *a, **k: answer)


def test_well_formed_answer_is_parsed_and_validated(vlm, monkeypatch, scene_image):
    img, _ = scene_image
    _inject(vlm, monkeypatch, f'Here is the plan:\n```json\n{GOOD}\n```')
    steps, conf = vlm.propose('put the red cube on the blue pad', None, img, scene_objects=SCENE)
    assert [s.skill for s in steps][:3] == ['move_above', 'descend', 'grasp']
    assert steps[5].reference == 'blue pad' and len(conf) == len(steps)
    validate_steps(steps, SCENE)


@pytest.mark.parametrize('answer,match', [
    ('I see a red cube.', 'no valid JSON'),
    ('[{"skill": "move_above", "object": "red cube"', 'no valid JSON'),
    ('[{"skill": "self_destruct", "object": "red cube"}]', 'not allow-listed'),
    ('[{"skill": "move_above", "object": "purple cube"}]', 'not in the scene'),
    ('[{"skill": "grasp", "object": "pink elephant"}]', 'unknown object'),
    ('[{"skill": "place", "object": "red cube", "reference": "orange pad"}]', 'not in the scene'),
    ('[{"skill": "place", "object": "red cube"}]', 'needs a reference'),
    ('{"plan": "move_above red cube"}', 'non-empty list'),
    ('[]', 'non-empty list'),
])
def test_malformed_or_unknown_answers_are_planning_errors(vlm, monkeypatch, scene_image,
                                                          answer, match):
    img, _ = scene_image
    _inject(vlm, monkeypatch, answer)
    with pytest.raises(PlanningError, match=match):
        vlm.propose('put the red cube on the blue pad', None, img, scene_objects=SCENE)


def test_vlm_needs_a_real_image(vlm):
    for bad in (None, np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(PlanningError, match='camera image'):
            vlm.generate('put the red cube on the blue pad', bad)


HAS_CKPT = (DEFAULT_CHECKPOINT / 'grounding.safetensors').is_file()


@pytest.mark.skipif(not HAS_CKPT, reason=f'no planner checkpoint in {DEFAULT_CHECKPOINT}')
def test_strategic_planner_selects_the_vlm_backend_by_name(tiny_vlm_dir, monkeypatch):
    """``from_checkpoint(backend='hf_vlm', model_path=...)``: the grounded plan of an injected
    good answer validates; the tiny model's own random answer is refused (no action)."""
    from hybrid_vla_ros.sim.arm_sim import ArmSim
    from hybrid_vla_ros.sim.tasks import get_task
    planner = StrategicPlanner.from_checkpoint(backend='hf_vlm', model_path=tiny_vlm_dir,
                                               max_new_tokens=24)
    assert isinstance(planner.backend, HFVLMBackend)
    sim = ArmSim()
    try:
        sim.reset('pick_place', 3)
        img, cam = sim.render(), sim.camera_info()
        fields = get_task('pick_place').phrase_fields(sim.episode)
    finally:
        sim.close()
    text = f"put the {fields['obj']} on the {fields['pad']} pad"
    with pytest.raises(PlanningError):
        planner.plan(text, img, cam)
    answer = GOOD.replace('red cube', fields['obj']).replace('blue pad', f"{fields['pad']} pad")
    monkeypatch.setattr(planner.backend, 'generate', lambda *a, **k: answer)
    plan = planner.plan(text, img, cam)
    assert plan.backend == 'hf_vlm' and len(plan.subgoals) == 8
    assert plan.subgoals[5].reference == f"{fields['pad']} pad"
    with pytest.raises(ValueError, match='unknown planner backend'):
        StrategicPlanner.from_checkpoint(backend='gpt')
