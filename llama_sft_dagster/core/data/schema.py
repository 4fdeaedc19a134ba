"""Column layout of the pair tables that flow from `raw_pairs` to the splits.

Every pair keeps its provenance (source, file, row or dialogue/turn) so that a dropped or trained
sample can be traced back to the raw row, and so later evaluation can group by intent/category.
"""

from __future__ import annotations

import pyarrow as pa

PAIR_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),  # stable id: "<source>:<file>:<row|dialogue#turn>"
        pa.field("source", pa.string(), nullable=False),  # the source's name in the sources table
        pa.field("instruction", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("intent", pa.string()),  # Bitext intent, or MultiWOZ active_intent of the user turn
        pa.field("category", pa.string()),  # Bitext category, or MultiWOZ domain of the user turn
        pa.field("services", pa.string()),  # MultiWOZ dialogue services, comma-joined; null for Bitext
        pa.field("flags", pa.string()),  # Bitext language-variation flags; null for MultiWOZ
        pa.field("source_file", pa.string()),
        pa.field("row_index", pa.int64()),  # Bitext: 0-based data row in source_file
        pa.field("dialogue_id", pa.string()),  # MultiWOZ
        pa.field("turn_index", pa.int64()),  # MultiWOZ: index of the USER turn in the dialogue
        # dialogues: the earlier turns as JSON [{"role", "content"}] (system messages included), for sft_dataset's
        # multi-turn option; null for a Bitext row. The filters judge instruction/response only, never this.
        pa.field("context", pa.string()),
        pa.field("turn_depth", pa.int64()),  # assistant replies before this pair's in its dialogue (0: the first)
    ]
)


# Rejected rows are the pair columns plus where and why they were dropped.
REJECT_SCHEMA = (
    PAIR_SCHEMA.append(pa.field("stage", pa.string(), nullable=False))
    .append(pa.field("reason", pa.string(), nullable=False))
    # evidence for the reason, e.g. "tokens=812", "detected=FRENCH", "duplicate_of=<pair_id>"
    .append(pa.field("detail", pa.string()))
)


# One row per turn of a dialogue or chat, as read (speaker label as written): the raw table of every
# conversation-shaped source; `core.data.pairs.turn_pairs` maps each label to a role and pairs the turns.
TURN_SCHEMA = pa.schema(
    [
        pa.field("dialogue_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),  # relative, e.g. "train/dialogues_001.json"
        pa.field("services", pa.string(), nullable=False),  # comma-joined dialogue services
        pa.field("turn_index", pa.int64(), nullable=False),  # position of the turn in its dialogue
        pa.field("turn_id", pa.string()),  # as written in the file (a chat export: its record/line number)
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("utterance", pa.string(), nullable=False),
        pa.field("active_intent", pa.string()),  # USER turns: first frame state's non-"NONE" intent
        pa.field("domain", pa.string()),  # service of that frame
    ]
)
