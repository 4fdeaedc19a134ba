"""A team's own conversations: chat `messages`, ShareGPT, or instruction/response records (Dagster-free).

Record forms (`ChatFormat.form`, "auto" picks per record by the fields present):
- `messages`: `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}` (OpenAI /
  Hugging Face chat form); a content given as a list of parts keeps its text parts;
- `sharegpt`: `{"conversations": [{"from": "human"|"gpt"|"system", "value": "..."}, ...]}`;
- `pairs`: one instruction/response record with any column names (`instruction_field`, `response_field`,
  optional `system_field`).
Field names and role labels are configurable; labels are matched whatever their case through `roles`
(default `DEFAULT_ROLES`); a label outside it is kept as written and dropped in raw_pairs as
`unknown_speaker` (counted, with samples). In a CSV file a `messages`/`conversations` cell may hold the list
as JSON text.

Files: JSONL, JSON, CSV or Parquet, optionally .gz/.zst, one file, a folder or a glob (`files.py`); or a
hub dataset (`hf://<id>`, with split and revision). The output is one row per turn (TURN_SCHEMA): the
dialogue id is the record's id field, else `<file>@<line|record|row>N`; `turn_id` is where the record is.

`ConversationsReader` (end of the module) is the source's settings with `load()` and `version()`; each name in
SFT_CONVERSATION_SOURCES gets a row in assets/source_table.py, so a resource, of it.

    python -c "from llama_sft_dagster.core.sources.conversations import *; print(load_conversations('chats.jsonl'))"
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field, field_validator

from llama_sft_dagster.core.data.pairs import PairExtractor, role_mapper, turn_pairs
from llama_sft_dagster.core.data.schema import TURN_SCHEMA
from llama_sft_dagster.core.sources.errors import RawDataError, parse_json
from llama_sft_dagster.core.sources.files import Record, expand, read_records
from llama_sft_dagster.core.sources.versions import HUB_PREFIX, NO_SOURCE, glob_version, hub_location_version
from llama_sft_dagster.core.versions import fingerprint

FORMS = ("auto", "messages", "sharegpt", "pairs")
META_ROLES = b"chat_roles"
# label (any case) -> role; OpenAI/HF chat, ShareGPT (human/gpt) and Gemma's "model"
DEFAULT_ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}


@dataclass(frozen=True)
class ChatFormat:
    form: str = "auto"
    messages_field: str = "messages"
    role_key: str = "role"
    content_key: str = "content"
    sharegpt_field: str = "conversations"
    from_key: str = "from"
    value_key: str = "value"
    instruction_field: str = "instruction"
    response_field: str = "response"
    system_field: str | None = None
    id_field: str | None = None
    intent_field: str | None = None
    category_field: str | None = None
    roles: dict[str, str] = field(default_factory=dict)  # added to / overriding DEFAULT_ROLES

    def role_map(self) -> dict[str, str]:
        return {**DEFAULT_ROLES, **{k.casefold(): v for k, v in self.roles.items()}}


def _form_of(data: dict, fmt: ChatFormat, where: str) -> str:
    if fmt.form != "auto":
        return fmt.form
    if fmt.messages_field in data:
        return "messages"
    if fmt.sharegpt_field in data:
        return "sharegpt"
    if fmt.instruction_field in data and fmt.response_field in data:
        return "pairs"
    raise RawDataError(
        f"{where}: not a chat record: expected a {fmt.messages_field!r} list, a {fmt.sharegpt_field!r} list, or "
        f"{fmt.instruction_field!r} and {fmt.response_field!r} fields; found {sorted(data)[:10]} "
        "(set the source's field names to map other columns)"
    )


def _text(value: object, where: str) -> str:
    if value is None:
        return ""  # an empty message: dropped as empty_utterance, counted
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: [{"type": "text", "text": "..."}, ...]
        return "".join(p.get("text") or "" for p in value if isinstance(p, dict) and p.get("type", "text") == "text")
    raise RawDataError(f"{where}: text must be a string, found {type(value).__name__}")


def _message_list(data: dict, key: str, where: str) -> list:
    value = data.get(key)
    if isinstance(value, str):  # a CSV cell holding the list as JSON
        value = parse_json(value, f"{where}, field {key!r}", list, "text, but not a JSON list of messages")
    if not isinstance(value, list):
        raise RawDataError(f"{where}: field {key!r} must be a list of messages, found {type(value).__name__}")
    return value


def record_turns(data: dict, fmt: ChatFormat, where: str) -> list[tuple[str, str]]:
    """(speaker label as written, text) of each turn of one record, in order."""
    form = _form_of(data, fmt, where)
    if form == "pairs":
        missing = [f for f in (fmt.instruction_field, fmt.response_field) if f not in data]
        if missing:
            raise RawDataError(f"{where}: missing field(s) {missing}; found {sorted(data)[:10]}")
        system = _text(data.get(fmt.system_field), where) if fmt.system_field else ""
        turns = [("system", system)] if system.strip() else []
        return turns + [
            ("user", _text(data[fmt.instruction_field], f"{where}, field {fmt.instruction_field!r}")),
            ("assistant", _text(data[fmt.response_field], f"{where}, field {fmt.response_field!r}")),
        ]
    key, label_key, text_key = (
        (fmt.messages_field, fmt.role_key, fmt.content_key)
        if form == "messages"
        else (fmt.sharegpt_field, fmt.from_key, fmt.value_key)
    )
    turns = []
    for index, message in enumerate(_message_list(data, key, where)):
        at = f"{where}, {key}[{index}]"
        if not isinstance(message, dict):
            raise RawDataError(f"{at}: must be an object, found {type(message).__name__}")
        label = message.get(label_key)
        if not isinstance(label, str | int) or isinstance(label, bool):
            raise RawDataError(f"{at}: missing {label_key!r}; found {sorted(message)}")
        turns.append((str(label), _text(message.get(text_key), at)))
    return turns


def turns_table(records: Iterable[tuple[str, str, Record]], fmt: ChatFormat) -> pa.Table:
    """TURN_SCHEMA rows of (file name recorded, file name shown in messages, record)."""
    rows: dict[str, list] = {name: [] for name in TURN_SCHEMA.names}
    seen: dict[str, str] = {}
    for rel, shown, record in records:
        where = f"{shown}: {record.where}"
        if fmt.id_field and record.data.get(fmt.id_field) not in (None, ""):
            dialogue_id = str(record.data[fmt.id_field])
        else:
            dialogue_id = f"{rel}@{record.where.replace(' ', '')}"
        if dialogue_id in seen:
            raise RawDataError(f"duplicate conversation id {dialogue_id!r}: {seen[dialogue_id]} and {where}")
        seen[dialogue_id] = where
        intent = record.data.get(fmt.intent_field) if fmt.intent_field else None
        category = record.data.get(fmt.category_field) if fmt.category_field else None
        for index, (label, text) in enumerate(record_turns(record.data, fmt, where)):
            for name, value in (
                ("dialogue_id", dialogue_id),
                ("split", "train"),
                ("source_file", rel),
                ("services", ""),
                ("turn_index", index),
                ("turn_id", record.where),
                ("speaker", label),
                ("utterance", text),
                ("active_intent", None if intent is None else str(intent)),
                ("domain", None if category is None else str(category)),
            ):
                rows[name].append(value)
    # the role mapping travels with the turns (Parquet keeps schema metadata) to raw_pairs, which applies it
    return pa.table(rows, schema=TURN_SCHEMA.with_metadata({META_ROLES: json.dumps(fmt.role_map()).encode()}))


def load_conversations(location: str, fmt: ChatFormat | None = None) -> pa.Table:
    """Every record of a file, a folder or a glob, as turns."""
    files = expand(location)
    shown_root = location.rstrip("/")

    def records():
        for path, rel in files:
            shown = str(path) if len(files) == 1 and rel == path.name else f"{shown_root}/{rel}"
            for record in read_records(path, shown):
                yield rel, shown, record

    return turns_table(records(), fmt or ChatFormat())


def load_conversations_hub(
    dataset_id: str, fmt: ChatFormat | None = None, split: str = "train", revision: str | None = None, token=None
) -> tuple[pa.Table, str]:
    """One split of a hub dataset at the commit `revision` resolves to: (turns, commit sha)."""
    from datasets import load_dataset

    from llama_sft_dagster.core.sources.hub import hub_retrying
    from llama_sft_dagster.core.sources.versions import hub_revision

    sha = hub_revision(dataset_id, revision, token)
    dataset = hub_retrying(
        lambda: load_dataset(dataset_id, revision=sha, split=split, token=token), f"hub dataset {dataset_id}"
    )
    rel = f"{dataset_id}@{sha[:12]}/{split}"
    rows = dataset.with_format("arrow")[:].to_pylist()
    return turns_table(((rel, rel, Record(f"row {i}", r)) for i, r in enumerate(rows)), fmt or ChatFormat()), sha


def conversation_pairs(name: str, turns: pa.Table, max_chars: int):
    """User turn -> the assistant turn right after it (core/data/pairs.py), labels mapped by the roles the
    loader recorded in the table's metadata (DEFAULT_ROLES for a table without them)."""
    roles = json.loads((turns.schema.metadata or {}).get(META_ROLES, b"null")) or DEFAULT_ROLES
    return turn_pairs(name, turns, role_mapper(roles), max_chars)


PAIRS = PairExtractor(unit="turns", units_per_pair=2, extract=conversation_pairs)


# ---- the source's settings (the fields of each conversations resource) ------------------------------------------
class ConversationsReader(BaseModel):
    """A team's own conversations: chat `messages`, ShareGPT or instruction/response records, from
    JSONL/JSON/CSV/Parquet files (optionally .gz/.zst) or the hub."""

    location: str = Field(
        NO_SOURCE,
        description="'none' (off, the default), a file, a folder, a glob such as 'exports/*.jsonl.gz', or "
        "'hf://<dataset id>'.",
    )
    form: Literal["auto", "messages", "sharegpt", "pairs"] = Field(
        "auto", description="Record form; 'auto' picks per record from the fields present."
    )
    messages_field: str = Field("messages", description="Field of the chat message list (role/content form).")
    role_key: str = Field("role", description="Key of a message's role.")
    content_key: str = Field("content", description="Key of a message's text.")
    sharegpt_field: str = Field("conversations", description="Field of the ShareGPT turn list (from/value form).")
    from_key: str = Field("from", description="Key of a ShareGPT turn's speaker.")
    value_key: str = Field("value", description="Key of a ShareGPT turn's text.")
    instruction_field: str = Field("instruction", description="Column of the user's message (pairs form).")
    response_field: str = Field("response", description="Column of the reply (pairs form).")
    system_field: str | None = Field(None, description="Column of a system message (pairs form), if any.")
    id_field: str | None = Field(None, description="Field of a conversation id (default: file and line/row).")
    intent_field: str | None = Field(None, description="Field grouped as `intent` in the evaluation, if any.")
    category_field: str | None = Field(None, description="Field grouped as `category`, if any.")
    roles: dict[str, str] = Field(
        default_factory=dict,
        description="Extra speaker labels -> user/assistant/system, any case, e.g. {'agent': 'assistant', "
        "'customer': 'user'}; added to system/user/human/assistant/gpt/model.",
    )
    split: str = Field("train", description="Hub dataset split.")
    revision: str | None = Field(None, description="Hub revision (commit/tag); None = latest.")
    hf_token: str | None = Field(None, description="Hub token for a private dataset; pass dg.EnvVar('HF_TOKEN').")
    revision_check_interval_s: int = Field(900, ge=0, description="Reuse of a resolved hub revision (s).")

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        from llama_sft_dagster.core.data.pairs import ROLES

        bad = {k: v for k, v in value.items() if v not in ROLES}
        if bad:
            raise ValueError(f"roles {bad}: each label must map to one of {list(ROLES)}")
        return value

    def chat_format(self) -> ChatFormat:
        names = [f for f in ChatFormat.__dataclass_fields__ if f != "roles"]
        return ChatFormat(**{f: getattr(self, f) for f in names}, roles=dict(self.roles))

    def load(self) -> pa.Table:
        if self.location == NO_SOURCE:
            return TURN_SCHEMA.empty_table()
        if self.location.startswith(HUB_PREFIX):
            dataset_id = self.location[len(HUB_PREFIX) :]
            table, _ = load_conversations_hub(dataset_id, self.chat_format(), self.split, self.revision, self.hf_token)
            return table
        return load_conversations(self.location, self.chat_format())

    def version(self) -> str:
        """The data's version plus how it is read: another field mapping is new raw data."""
        if self.location == NO_SOURCE:
            return NO_SOURCE
        reading = fingerprint(self.model_dump(exclude={"hf_token", "revision_check_interval_s"}))
        if self.location.startswith(HUB_PREFIX):
            hub = hub_location_version(self.location, self.revision, self.hf_token, self.revision_check_interval_s)
            return f"{hub}:{self.split}:{reading}"
        return f"file:{glob_version(self.location)}:{reading}"
