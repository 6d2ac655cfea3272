"""Programmatic paraphrases of the training instructions (decoder training augmentation).

The task suite ships a handful of training phrasings per task (``Task.train_phrases``); a decoder
trained on them alone learns their word order (e.g. "the colour right before 'pad' is the pad")
and fails on other sentence shapes. This module generates many more phrasings from a small
hand-written grammar per task: synonym substitution (verbs, prepositions, object/pad nouns),
different clause orders (destination first, object first, the upper block named before the lower
one, ...), polite prefixes and filler words.

Honesty rules (checked by ``forbidden_words`` / ``paraphrases`` and by the tests):

- the grammar was written from the training phrasings and general English, never from the
  held-out phrasings (``Task.held_out_phrases``), and no paraphrase contains a word that appears
  in a held-out phrasing but in no training phrasing (``forbidden_words()``: e.g. "drop",
  "grab", "crown", "bottom", "with"); a grammar entry using such a word raises ``ValueError``;
- a held-out phrasing itself is never produced (checked for every scene).

Everything is seeded: ``paraphrases(task, fields, n, seed)`` returns the same list every time.
"""
from __future__ import annotations

from functools import lru_cache
import re

import numpy as np

from ..sim.tasks import TASK_TYPES as TASKS

_WORD = re.compile(r'[a-z]+')


def _words(text: str) -> set:
    """Lower-case words of a phrase template (``{field}`` placeholders removed)."""
    return set(_WORD.findall(re.sub(r'\{[a-z_]+\}', ' ', text.lower())))


@lru_cache(maxsize=1)
def training_words() -> frozenset:
    """Every word of every task's training phrasings."""
    return frozenset().union(*(_words(p) for t in TASKS.values() for p in t.train_phrases))


@lru_cache(maxsize=1)
def forbidden_words() -> frozenset:
    """Words that occur in a held-out phrasing but in no training phrasing: the augmentation
    must never use them (it would leak the held-out vocabulary into training)."""
    held = frozenset().union(*(_words(p) for t in TASKS.values() for p in t.held_out_phrases))
    return held - training_words()


# ----------------------------------------------------------------------------- grammar
# Alternatives are picked uniformly; '' means "leave out". {obj}, {a}, {b}: "<colour> <shape>";
# {pad}: pad colour. Placeholders in [] are filled from the slot tables below.
_SLOTS = {
    'please': ('', '', '', 'please', 'now', 'can you', 'would you', 'i want you to',
               'kindly', 'go ahead and', 'next,', 'robot,', 'ok,'),
    'tail': ('', '', '', '', ' please', ' now', ' carefully', ' gently', ' for me',
             ' when you are ready', ' quickly', ' thanks'),
    'put': ('put', 'place', 'set', 'move', 'transfer', 'bring', 'carry', 'relocate', 'deliver',
            'lay', 'shift', 'deposit', 'get', 'take', 'rest', 'stand'),
    'pick': ('pick up', 'take', 'lift', 'grasp', 'grip', 'seize', 'fetch', 'get', 'collect',
             'hold', 'raise', 'pick'),
    'on': ('on', 'onto', 'on top of', 'to', 'upon', 'over to', 'over onto', 'into'),
    'on_obj': ('on', 'onto', 'on top of', 'upon', 'atop'),
    'then': ('then', 'and then', 'after that', 'afterwards', 'next', 'and', 'followed by',
             'and after that'),
    'touch': ('touch', 'tap', 'press', 'pat', 'nudge', 'prod', 'knock on', 'put a finger on',
              'put your fingertips on', 'place the gripper on', 'rest the fingertips on',
              'bring the fingertips to', 'reach out and touch', 'briefly touch'),
    'any': ('a', 'any', 'one', 'some', 'one of the', 'any of the', 'a single', 'just one'),
    'reach_verb': ('move', 'bring', 'send', 'guide', 'take', 'drive', 'put', 'get', 'carry',
                   'direct', 'go', 'head'),
    'tool': ('the gripper', 'the tool', 'the end effector', 'your fingertips', 'the arm',
             'the wrist tool', 'the fingers', 'the robot'),
    'marker': ('the green marker', 'the green target', 'the green ball', 'the green sphere',
               'the target', 'the marker', 'the target marker', 'the goal', 'the green goal',
               'the floating green ball', 'the green point'),
    'wall': ('the wall', 'the obstacle', 'the grey block', 'the grey wall', 'the block in the '
             'middle', 'the obstacle in between', 'the grey obstacle'),
}

# pick & place: {obj} -> {pad} pad
_PICK_PLACE = (
    '[please] [put] the {obj} [on] the {pad} pad[tail]',
    '[please] [pick] the {obj} and [put] it [on] the {pad} pad[tail]',
    '[please] [pick] the {obj}, [then] [put] it [on] the {pad} pad[tail]',
    '[please] [put] the {obj} so that it ends up on the {pad} pad[tail]',
    '[please] get the {obj} over to the {pad} pad[tail]',
    '[please] [on] the {pad} pad, [put] the {obj}[tail]',
    'the {obj} goes on the {pad} pad[tail]',
    'the {obj} belongs on the {pad} pad[tail]',
    'the {pad} pad is where the {obj} should go[tail]',
    'i want the {obj} on the {pad} pad[tail]',
    '[please] [put] the {obj} from the table [on] the {pad} pad[tail]',
    '[please] move the {obj} across to the {pad} pad[tail]',
    '{obj} to the {pad} pad',
    '{obj} on {pad} pad',
    '[please] use the {pad} pad as the destination for the {obj}[tail]',
    '[please] [pick] the {obj} up and [put] it [on] the {pad} pad[tail]',
    'target the {pad} pad: [put] the {obj} there[tail]',
    'your task: the {obj} onto the {pad} pad',
    '[please] [put] the {obj} in the middle of the {pad} pad[tail]',
    'once you have the {obj}, [put] it [on] the {pad} pad[tail]',
)

# stack: {a} on the {pad} pad, {b} on {a}
_STACK = (
    '[please] [put] the {a} [on] the {pad} pad, [then] [put] the {b} [on_obj] the {a}[tail]',
    '[please] [put] the {a} [on] the {pad} pad and stack the {b} [on_obj] it[tail]',
    '[please] stack the {b} [on_obj] the {a} once the {a} is on the {pad} pad[tail]',
    '[please] on the {pad} pad, stack the {b} [on_obj] the {a}[tail]',
    'the {a} goes on the {pad} pad and the {b} goes on the {a}[tail]',
    '[please] build a tower on the {pad} pad: the {a} first, the {b} second[tail]',
    '[please] build a tower on the {pad} pad, {a} under the {b}[tail]',
    '[please] stack the {a} and the {b} on the {pad} pad, the {a} lowest[tail]',
    '[please] stack the {b} and the {a} on the {pad} pad, the {b} on top[tail]',
    'the {b} should end up on the {a}, and the {a} on the {pad} pad[tail]',
    '[please] first [put] the {a} [on] the {pad} pad, [then] the {b} [on_obj] it[tail]',
    '[please] [pick] the {a} and [put] it [on] the {pad} pad, [then] [pick] the {b} and '
    '[put] it [on_obj] the {a}[tail]',
    '[please] [put] the {b} [on_obj] the {a}, after you [put] the {a} [on] the {pad} pad'
    '[tail]',
    'on the {pad} pad: the {a} beneath, the {b} on top[tail]',
    '[please] put the {a} under and the {b} over it, on the {pad} pad[tail]',
    '[please] pile the {b} on the {a} after placing the {a} on the {pad} pad[tail]',
    '{a} on the {pad} pad, {b} on the {a}',
    '[please] use the {pad} pad as the base: the {a} there, the {b} [on_obj] the {a}[tail]',
    '[please] the {a} is the lower block and the {b} the upper block of a tower on the {pad} '
    'pad[tail]',
    '[please] stack the {b} [on_obj] the {a}, which sits on the {pad} pad[tail]',
)

# multimodal: touch one of two red blocks (no colour/shape fields)
_MULTIMODAL = (
    '[please] [touch] [any] red block[tail]',
    '[please] [touch] [any] red cube[tail]',
    '[please] [touch] one of the red blocks[tail]',
    '[please] [touch] whichever red block is closer[tail]',
    '[please] [touch] the top of a red cube[tail]',
    'there are red blocks on the table: [touch] one of them',
    'any red cube will do: [touch] it[tail]',
    'a red block, [touch] it[tail]',
    '[please] pick a red block and [touch] it[tail]',
    '[please] [touch] the nearer or the farther red cube[tail]',
)

_REACH = (
    '[please] [reach_verb] [tool] to [marker][tail]',
    '[please] [reach_verb] [tool] over to [marker][tail]',
    '[please] reach [marker][tail]',
    '[please] go to [marker][tail]',
    '[please] put [tool] at [marker][tail]',
    '[marker] is the goal: [reach_verb] [tool] there',
)

_DETOUR = (
    '[please] [reach_verb] [tool] to [marker] without hitting [wall][tail]',
    '[please] go around [wall] to [marker][tail]',
    '[please] avoid [wall] and [reach_verb] [tool] to [marker][tail]',
    '[please] reach [marker] behind [wall][tail]',
    '[please] get to [marker] while avoiding [wall][tail]',
    '[please] move around [wall] and reach [marker][tail]',
    '[marker] is behind [wall]: go around it[tail]',
    '[please] [reach_verb] [tool] to [marker], do not touch [wall][tail]',
)

# Development phrasings for model choices (augmentation size, decoder options): new sentence
# shapes written by hand, never trained on and not produced by the grammar, so the held-out
# phrasings stay untouched by every choice.
DEV_PHRASES = {
    'reach': ('move your gripper onto the green ball',
              'the green marker is floating there, go to it'),
    'pick_place': ('the {pad} pad needs the {obj} on it',
                   'lift the {obj} and set it onto the {pad} pad, thank you',
                   'i would like you to carry the {obj} over to the {pad} pad'),
    'stack': ('first the {a} goes onto the {pad} pad, and the {b} goes on that',
              'on the {pad} pad build a tower whose base is the {a} and whose top is the {b}',
              'the {b} must sit on the {a}, and the {a} must sit on the {pad} pad'),
    'multimodal': ('put a fingertip on some red block', 'a red cube, any of them: touch it'),
    'detour': ('without touching the wall, go to the green ball',
               'the target is behind a wall; reach it by going around'),
}

GRAMMAR = {'reach': _REACH, 'pick_place': _PICK_PLACE, 'stack': _STACK,
           'multimodal': _MULTIMODAL, 'detour': _DETOUR}

# object nouns a user may say for a shape (the normaliser in skills.py accepts them too)
_SHAPE_SYNONYMS = {'cube': ('cube', 'cube', 'cube', 'block', 'box'),
                   'cylinder': ('cylinder', 'cylinder', 'cylinder', 'can')}


def _check_grammar() -> None:
    """Raise ``ValueError`` if any grammar entry uses a forbidden (held-out-only) word."""
    bad = forbidden_words()
    entries = [e for tpl in GRAMMAR.values() for e in tpl]
    entries += [a for alts in _SLOTS.values() for a in alts]
    entries += [a for alts in _SHAPE_SYNONYMS.values() for a in alts]
    for e in entries:
        leak = _words(re.sub(r'\[[a-z_]+\]', ' ', e)) & bad
        if leak:
            raise ValueError(f'paraphrase grammar entry {e!r} uses held-out-only word(s) '
                             f'{sorted(leak)}')


def _fill(template: str, fields: dict, rng: np.random.Generator) -> str:
    def slot(m):
        alts = _SLOTS[m.group(1)]
        return alts[int(rng.integers(len(alts)))]

    def noun(name: str) -> str:
        colour, shape = name.split()
        alts = _SHAPE_SYNONYMS.get(shape, (shape,))
        return f'{colour} {alts[int(rng.integers(len(alts)))]}'

    text = re.sub(r'\[([a-z_]+)\]', slot, template)
    vals = {k: (noun(v) if k in ('obj', 'a', 'b') else v) for k, v in fields.items()}
    text = text.format(**vals)
    return ' '.join(text.replace(' ,', ',').split())


def paraphrases(task: str, fields: dict, n: int, seed: int) -> list:
    """``n`` distinct (when possible) seeded paraphrases of ``task``'s instruction for a scene
    with phrase fields ``fields`` (``Task.phrase_fields``). Never a held-out phrasing and never
    a word from ``forbidden_words()``; training phrasings themselves are skipped too."""
    _check_grammar()
    t = TASKS[task]
    grammar = GRAMMAR[task]
    skip = {p.format(**fields) for p in t.held_out_phrases + t.train_phrases
            + DEV_PHRASES[task]}
    bad = forbidden_words()
    rng = np.random.default_rng([int(seed), sum(map(ord, task)), 31])
    out: list = []
    for _ in range(20 * max(1, n)):
        if len(out) >= n:
            break
        text = _fill(grammar[int(rng.integers(len(grammar)))], fields, rng)
        if text in skip or text in out or set(_WORD.findall(text)) & bad:
            continue
        out.append(text)
    return out


__all__ = ['DEV_PHRASES', 'GRAMMAR', 'forbidden_words', 'paraphrases', 'training_words']
