"""Generated MultiWOZ-shaped dev/test dialogues for the demo's evaluation: never in the training corpus.

Same generator as the demo's train dialogues (core/demo/dialogues.py) on a random stream of their own,
with ids "DEMO-DEV-00000.json" / "DEMO-TEST-00000.json", so no dialogue of the training corpus (ids
"DEMO00000.json"...) is among them. Deterministic by seed.

    python -c "from llama_sft_dagster.core.demo.held_out import held_out_turns; print(held_out_turns().num_rows)"
"""

from __future__ import annotations

import random

import pyarrow as pa

from llama_sft_dagster.core.demo.dialogues import dialogue
from llama_sft_dagster.core.sources.multiwoz import turns_from_dialogues

DEFAULT_HELD_OUT_DIALOGUES = 40  # per split: ~170 pairs each, enough for every one of the 5 domains
SOURCE_FILE = "demo/multiwoz_{split}_dialogues.json"


def held_out_turns(seed: int = 13, n_dialogues: int = DEFAULT_HELD_OUT_DIALOGUES) -> pa.Table:
    """Raw turns (multiwoz.TURN_SCHEMA) of `n_dialogues` dev and `n_dialogues` test dialogues."""
    rng = random.Random(seed + 2)  # the train dialogues use seed + 1, the Bitext rows seed
    tables = []
    for split in ("dev", "test"):
        dialogues = [dialogue(rng, f"DEMO-{split.upper()}-{i:05d}.json") for i in range(n_dialogues)]
        tables.append(turns_from_dialogues(dialogues, SOURCE_FILE.format(split=split), split))
    return pa.concat_tables(tables)
