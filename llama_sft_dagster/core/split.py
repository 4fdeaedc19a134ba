"""Train/validation split decided per sample by a seeded hash of its content.

Stable as data grows: a sample's side depends only on its own text and the seed, so adding raw rows
never moves an existing sample to the other side (a shuffled 95/5 cut would).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence


def validation_score(instruction: str, response: str, seed: int) -> float:
    """A uniform number in [0, 1) derived from the sample's content and the seed."""
    digest = hashlib.blake2b(f"{seed}\x00{instruction}\x00{response}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_validation(instructions: Sequence[str], responses: Sequence[str], validation_fraction: float, seed: int) -> list[bool]:
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    return [validation_score(i, r, seed) < validation_fraction for i, r in zip(instructions, responses)]
