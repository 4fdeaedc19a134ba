"""The raw sources, declared once: one row per source, everything that lists sources derives from `SOURCES`.

A row gives the source's name (its resource key, the `<name>_source` observable asset, the `<name>_raw`
asset, the `source` column of its pairs and the prefix of its counts), its reader (the settings class of
core/sources/<module>.py, with `load()` and `version()`; the row's resource is built from it by
resources/data_sources.py's `source_resource`), its pair extractor (the module's `PAIRS`) and its descriptions.
Built from it: the source and raw assets (assets/sources.py, assets/raw.py), raw_pairs and its accounting
check, the run report's funnel, the raw-data sensor, `sft-materialize-stale`, `make demo` and the
resources of `definitions.build_resources`.

Adding a source: a module in core/sources/ with its loader, `PAIRS` (a `PairExtractor`) and a reader with
`load()` and `version()`, and one row below (README "Adding a source").

A team's own conversations (core/sources/conversations.py) are one row per name in
`SFT_CONVERSATION_SOURCES` (comma-separated, read when the code location loads; default one,
`conversations`): two product lines' exports are two sources, each with its own resource, raw asset,
version and counts. Each is off (`location: none`) until configured.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pyarrow as pa
from pydantic import BaseModel

from llama_sft_dagster.core.data.pairs import PairExtractor
from llama_sft_dagster.core.sources import bitext, conversations, multiwoz
from llama_sft_dagster.core.sources.multiwoz_files import skipped_files
from llama_sft_dagster.resources.data_sources import source_resource

CONVERSATION_SOURCES_ENV = "SFT_CONVERSATION_SOURCES"
DEFAULT_CONVERSATION_SOURCES = "conversations"


def _distinct(column: str) -> Callable[[pa.Table], int]:
    return lambda table: len(set(table.column(column).to_pylist()))


def bitext_metadata(table: pa.Table) -> dict:
    return {"intents": _distinct("intent")(table)}


def multiwoz_metadata(table: pa.Table) -> dict:
    skipped = skipped_files(table)  # every file of the folder not read, with the reason
    return {
        "dialogues": _distinct("dialogue_id")(table),
        "skipped_files": len(skipped),
        "skipped_files_list": dg.MetadataValue.json(skipped),
    }


def conversations_metadata(table: pa.Table) -> dict:
    return {"dialogues": _distinct("dialogue_id")(table), "files": _distinct("source_file")(table)}


@dataclass(frozen=True)
class RawSource:
    name: str
    reader: type[BaseModel]  # core/sources/<module>.py's settings with load() and version()
    pairs: PairExtractor  # raw table -> pairs, rejects, counts (in `pairs.unit`)
    description: str  # the raw asset's
    source_description: str  # the observable source asset's
    metadata: Callable[[pa.Table], dict]  # extra metadata of the raw asset

    @property
    def resource(self) -> type[dg.ConfigurableResource]:
        return source_resource(self.reader)

    def version(self, resource) -> str:  # the observable source asset's data version
        return resource.version()

    def load(self, resource) -> pa.Table:  # the raw asset's table
        return resource.load()

    @property
    def source_asset(self) -> str:
        return f"{self.name}_source"

    @property
    def raw_asset(self) -> str:
        return f"{self.name}_raw"


def conversation_source(name: str) -> RawSource:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"{CONVERSATION_SOURCES_ENV}: {name!r} is not a source name (lowercase letters, digits, _)")
    return RawSource(
        name,
        conversations.ConversationsReader,
        conversations.PAIRS,
        f"Turns of the {name} resource's conversations (chat messages, ShareGPT or instruction/response records), "
        "one row per turn, with file and record/line; off until its location is set.",
        f"Where the {name} conversations come from (files, a folder, a glob, or a hub dataset); its data version "
        "is the content hash or the hub commit sha, with the field mapping.",
        conversations_metadata,
    )


def conversation_names(value: str | None = None) -> list[str]:
    value = os.environ.get(CONVERSATION_SOURCES_ENV, DEFAULT_CONVERSATION_SOURCES) if value is None else value
    return [n.strip() for n in value.split(",") if n.strip()]


def source_table(conversation_sources: list[str] | None = None) -> tuple[RawSource, ...]:
    rows = (
        RawSource(
            "bitext",
            bitext.BitextReader,
            bitext.PAIRS,
            "Bitext customer-support rows as published (v11 schema; 2023-08 'tags' mapped to 'flags'), "
            "with file and row index.",
            "Where Bitext rows come from (demo corpus, local file, or hub dataset); its data version is the file's "
            "content hash or the hub commit sha.",
            bitext_metadata,
        ),
        RawSource(
            "multiwoz",
            multiwoz.MultiwozReader,
            multiwoz.PAIRS,
            "MultiWOZ 2.2 turns, one row per turn, with dialogue id, split file and turn index.",
            "Where MultiWOZ 2.2 dialogues come from (demo corpus, local folder, or the published archive); its data "
            "version is the content hash or the pinned archive URL.",
            multiwoz_metadata,
        ),
        *(
            conversation_source(n)
            for n in (conversation_names() if conversation_sources is None else conversation_sources)
        ),
    )
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be distinct: {names} (check {CONVERSATION_SOURCES_ENV})")
    return rows


SOURCES = source_table()
SOURCE_NAMES = [s.name for s in SOURCES]
# the source whose resource also loads dialogues never trained on (MultiWOZ dev/test), for adapter_evaluation
HELD_OUT_SOURCE = next(s for s in SOURCES if hasattr(s.resource, "load_held_out"))


def with_source_resources(fn: Callable, sources: tuple[RawSource, ...] | list[RawSource]) -> Callable:
    """`fn(..., **resources)` shown to Dagster with one typed resource parameter per source (named by the
    source's resource key), so each source's resource is injected as its own parameter."""
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, annotation=s.resource) for s in sources]
    fn.__signature__ = inspect.Signature(params)
    return fn


def source_resources(profile: str) -> dict:
    """{resource key: resource} of every source with `profile`'s defaults."""
    from llama_sft_dagster.config.profiles import profile_defaults

    return {s.name: s.resource(**profile_defaults(s.resource, profile)) for s in SOURCES}
