"""raw_pairs over the walkthrough's two sources, as the sources table runs it (assets/source_table.py)."""

import pyarrow as pa

from llama_sft_dagster.core.data.pairs import MAX_UTTERANCE_CHARS, extract_pairs
from llama_sft_dagster.core.sources import bitext, multiwoz


def seed_pairs(bitext_rows: pa.Table, turns: pa.Table, max_utterance_chars: int = MAX_UTTERANCE_CHARS):
    """(pairs, rejects, counts) of Bitext rows and MultiWOZ turns under the table's names."""
    return extract_pairs(
        [("bitext", bitext.PAIRS, bitext_rows), ("multiwoz", multiwoz.PAIRS, turns)], max_utterance_chars
    )
