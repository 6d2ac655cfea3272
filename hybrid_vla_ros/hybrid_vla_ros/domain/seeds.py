"""Seed split: demonstrations/training use seeds below ``EVAL_SEED_START``, evaluation uses
seeds from ``EVAL_SEED_START`` on (scenes never seen in training, with held-out phrasings)."""

EVAL_SEED_START = 1_000_000


def is_eval_seed(seed: int) -> bool:
    """True for evaluation seeds (``seed >= EVAL_SEED_START``)."""
    return int(seed) >= EVAL_SEED_START


def eval_seeds(n: int, offset: int = 0) -> range:
    """``n`` evaluation seeds, starting ``offset`` past ``EVAL_SEED_START``."""
    return range(EVAL_SEED_START + int(offset), EVAL_SEED_START + int(offset) + int(n))
