"""Load the Bitext customer-support dataset into one raw table, faithful to the source rows.

Two published schemas are accepted (see shared/data/README.md):
- v11 (2023-09, the current hub dataset): flags, instruction, category, intent, response;
- the 2023-08 release: context, role, instruction, intent, entity_type, entity_value,
  start_offset, end_offset, category, tags, response (`tags` holds what v11 calls `flags`).
The raw table keeps only the v11 columns plus provenance (`source_file`, `row_index`). Empty cells
stay as they are ("" in CSV, null in Parquet); `core.pairs.extract_pairs` drops them with a reason.

`BitextReader` (end of the module) is the source's settings with `load()` and `version()`; its row in
assets/source_table.py makes it the `bitext` resource.

    python -c "from llama_sft_dagster.core.sources.bitext import load_bitext_file as f; print(f('x.csv'))"
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from llama_sft_dagster.config.profiles import profiled, shared_data
from llama_sft_dagster.core.data.accounting import partition
from llama_sft_dagster.core.data.pairs import STAGE, PairExtractor, strip_control
from llama_sft_dagster.core.data.schema import PAIR_SCHEMA
from llama_sft_dagster.core.sources.errors import RawDataError, decode_text
from llama_sft_dagster.core.sources.files import file_kind, read_bytes
from llama_sft_dagster.core.sources.versions import (
    HUB_PREFIX,
    NO_SOURCE,
    fixed_version,
    hub_location_version,
    local_version,
)

BITEXT_COLUMNS = ["flags", "instruction", "category", "intent", "response"]
# The training text: never converted from another type (the other columns only where lossless).
TEXT_COLUMNS = ("instruction", "response")
# The 2023-08 release calls the flags column `tags`.
EARLIER_RELEASE_RENAMES = {"tags": "flags"}

RAW_BITEXT_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in BITEXT_COLUMNS]
    + [pa.field("source_file", pa.string(), nullable=False), pa.field("row_index", pa.int64(), nullable=False)]
)
# Schema metadata keys: which published schema was read and which input columns were ignored.
META_SCHEMA_VARIANT = b"bitext_schema_variant"
META_IGNORED_COLUMNS = b"bitext_ignored_columns"


def ignored_columns(table: pa.Table) -> list[str]:
    """Input columns that `normalise_bitext_table` dropped (reported as asset metadata)."""
    meta = table.schema.metadata or {}
    return json.loads(meta.get(META_IGNORED_COLUMNS, b"[]"))


def schema_variant(table: pa.Table) -> str:
    return (table.schema.metadata or {}).get(META_SCHEMA_VARIANT, b"unknown").decode()


def delimiter_hint(header: list[str]) -> str:
    """' (the header splits on ';' into ...)' when a one-column header is really another delimiter's."""
    if len(header) != 1:
        return ""
    for sep, label in ((";", "semicolon"), ("\t", "tab")):
        parts = [p.strip().strip('"') for p in header[0].split(sep)]
        if set(BITEXT_COLUMNS) - {"flags"} <= set(parts) and ({"flags", "tags"} & set(parts)):
            return (
                f"; the header splits on {label}s into {parts}: the file looks {label}-separated, "
                "but Bitext CSV files must be comma-separated (re-export it with ',')"
            )
    return ""


def _as_text(col: pa.ChunkedArray, name: str, shown: str) -> pa.ChunkedArray:
    """The column as strings, refusing any conversion that would change what a cell says."""
    t = col.type
    if pa.types.is_string(t):
        return col
    # the same strings in another layout: a lossless cast
    values = t.value_type if pa.types.is_dictionary(t) else t
    stringy = (
        pa.types.is_string(values)
        or pa.types.is_large_string(values)
        or pa.types.is_string_view(values)
        or pa.types.is_null(t)
    )
    # integers and booleans have one spelling per value; floats do not (113542617735902 -> 1.13542617735902e+14)
    lossless = name not in TEXT_COLUMNS and (pa.types.is_integer(t) or pa.types.is_boolean(t))
    if not (stringy or lossless):
        allowed = "a string column" if name in TEXT_COLUMNS else "a string, integer or boolean column"
        raise RawDataError(
            f"{shown}: column {name!r} has type {t}, not text; it is not converted because that "
            f"could change its values (write it as {allowed})"
        )
    return pc.cast(col, pa.string())


def normalise_bitext_table(table: pa.Table, source_file: str, shown: str | None = None) -> pa.Table:
    """Map either published schema onto RAW_BITEXT_SCHEMA; name what is missing or ignored.

    `source_file` is recorded in every row; `shown` (default: `source_file`) names the input in messages."""
    shown = shown or source_file
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RawDataError(f"{shown}: duplicate column(s) {dupes}; columns found: {names}")
    variant = "v11"
    if "flags" not in names and "tags" in names:
        variant = "2023-08"
        table = table.rename_columns([EARLIER_RELEASE_RENAMES.get(n, n) for n in names])
    missing = [c for c in BITEXT_COLUMNS if c not in table.column_names]
    if missing:
        hint = " (the 2023-08 release's `tags` is accepted for `flags`)" if "flags" in missing else ""
        raise RawDataError(
            f"{shown}: missing required column(s) {missing}{hint}; columns found: {names}{delimiter_hint(names)}"
        )
    if table.num_rows == 0:
        raise RawDataError(f"{shown}: no data rows (header only)")
    extra = [n for n in names if EARLIER_RELEASE_RENAMES.get(n, n) not in BITEXT_COLUMNS]
    columns = [_as_text(table.column(name), name, shown) for name in BITEXT_COLUMNS]
    n = table.num_rows
    columns.append(pa.array([source_file] * n, type=pa.string()))
    columns.append(pa.array(range(n), type=pa.int64()))
    meta = {META_SCHEMA_VARIANT: variant.encode(), META_IGNORED_COLUMNS: json.dumps(extra).encode()}
    return pa.Table.from_arrays(columns, schema=RAW_BITEXT_SCHEMA.with_metadata(meta))


def _bad_record_line(text: str, width: int) -> tuple[int, int] | None:
    """(first line, field count) of the first record whose field count differs from the header's."""
    reader = csv.reader(io.StringIO(text))
    start = 1
    for record in reader:
        if record and len(record) != width:
            return start, len(record)
        start = reader.line_num + 1
    return None


def _read_csv(data: bytes, name: str) -> pa.Table:
    text = decode_text(data, name)  # by its byte-order mark (a spreadsheet's UTF-16 export), else strict UTF-8
    data = text.encode("utf-8")  # what Arrow reads: the text without its mark, in UTF-8
    # The header is parsed with the csv module so quoted names are handled, then every column is
    # read as text: Bitext fields are quoted multi-line strings, never numbers.
    header = next(csv.reader(io.StringIO(text)))
    try:
        return pacsv.read_csv(
            pa.BufferReader(data),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        bad = _bad_record_line(text, len(header))
        if bad is None:  # the csv module reads it fine: keep Arrow's own words
            raise RawDataError(f"{name}: malformed CSV: {exc}{delimiter_hint(header)}") from exc
        line, fields = bad
        raise RawDataError(
            f"{name}: malformed CSV at line {line}: expected {len(header)} columns as in the "
            f"header, found {fields}{delimiter_hint(header)}"
        ) from exc


def load_bitext_file(path: str | Path, source_file: str | None = None) -> pa.Table:
    """Read a local Bitext .csv or .parquet file (optionally .gz/.zst-compressed) into RAW_BITEXT_SCHEMA.

    `source_file` is recorded in every row (default: the file name, so no machine path is stored);
    messages name the path as given.
    """
    name = str(path)
    path = Path(path)
    if not path.is_file():
        raise RawDataError(f"{path}: Bitext file not found")
    suffix, _ = file_kind(path)
    if suffix not in (".csv", ".parquet"):
        raise RawDataError(f"{name}: unsupported file type; expected .csv or .parquet, optionally .gz or .zst")
    data = read_bytes(path, name)
    if not data.strip():
        raise RawDataError(f"{name}: empty file")
    if suffix == ".csv":
        table = _read_csv(data, name)
    else:
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise RawDataError(f"{name}: not a readable Parquet file: {exc}") from exc
    return normalise_bitext_table(table, source_file or path.name, name)


def load_bitext_hub(
    dataset_id: str, revision: str | None = None, split: str = "train", token: str | None = None
) -> tuple[pa.Table, str]:
    """Download one split from the hub at a pinned commit; return (raw table, commit sha).

    The revision (branch, tag or None for the default branch) is resolved to a commit sha first and
    the data is loaded at that sha, so the returned version names exactly the bytes that were read.
    """
    from datasets import load_dataset

    from llama_sft_dagster.core.sources.hub import hub_retrying
    from llama_sft_dagster.core.sources.versions import hub_revision

    sha = hub_revision(dataset_id, revision, token)  # timeout and retries
    # datasets keeps finished files in its cache and writes each one under a temporary name: a retry resumes
    dataset = hub_retrying(
        lambda: load_dataset(dataset_id, revision=sha, split=split, token=token), f"hub dataset {dataset_id}"
    )
    table = dataset.with_format("arrow")[:]
    return normalise_bitext_table(table, f"{dataset_id}@{sha[:12]}/{split}"), sha


# ---- pairs ---------------------------------------------------------------------------------------
# Each row is a pair, dropped as `repeated_header` when its cells are the column names (two exports
# concatenated), else as `blank_instruction` / `blank_response` when a cell is null or only whitespace.
PAIR_REASONS = ("repeated_header", "blank_instruction", "blank_response")


def _repeated_header(bitext: pa.Table) -> pa.ChunkedArray:
    """Rows whose cells are the column names: a header repeated inside the data (two exports
    concatenated). `flags` may read `tags`, the 2023-08 release's name of that column."""
    same = pc.is_in(bitext.column("flags"), pa.array(["flags", "tags"]))
    for name in ("instruction", "category", "intent", "response"):
        same = pc.and_(same, pc.equal(bitext.column(name), name))
    return pc.fill_null(same, False)


def bitext_pairs(name: str, bitext: pa.Table, max_chars: int = 0) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    """Pairs of a RAW_BITEXT_SCHEMA table (`max_chars` is for dialogue turns: a Bitext row has no cap here)."""
    instruction, mask_ins = strip_control(bitext.column("instruction"))
    response, mask_resp = strip_control(bitext.column("response"))
    blank_ins = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(instruction), ""), True)
    blank_resp = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(response), ""), True)
    reasons = pc.if_else(
        _repeated_header(bitext),
        "repeated_header",
        pc.if_else(blank_ins, "blank_instruction", pc.if_else(blank_resp, "blank_response", None)),
    )
    n = bitext.num_rows
    source_file, row_index = bitext.column("source_file"), bitext.column("row_index")
    nulls = pa.nulls(n, pa.string())
    columns = {
        "pair_id": pc.binary_join_element_wise(name, source_file, pc.cast(row_index, pa.string()), ":"),
        "source": pa.array([name] * n, pa.string()),
        "instruction": pc.fill_null(instruction, ""),
        "response": pc.fill_null(response, ""),
        "intent": bitext.column("intent"),
        "category": bitext.column("category"),
        "services": nulls,
        "flags": bitext.column("flags"),
        "source_file": source_file,
        "row_index": row_index,
        "dialogue_id": nulls,
        "turn_index": pa.nulls(n, pa.int64()),
        "context": nulls,
        "turn_depth": pa.array([0] * n, pa.int64()),
    }
    table = pa.Table.from_arrays([columns[f] for f in PAIR_SCHEMA.names], schema=PAIR_SCHEMA)
    kept, rejects, counts = partition(table, reasons.to_pylist(), STAGE)
    out = {
        "in": n,
        "pairs_out": kept.num_rows,
        "control_characters_stripped": pc.sum(pc.or_(mask_ins, mask_resp)).as_py() or 0,
    }
    out.update({f"dropped_{r}": counts.dropped.get(r, 0) for r in PAIR_REASONS})
    return kept, rejects, out


PAIRS = PairExtractor(unit="rows", units_per_pair=1, extract=bitext_pairs)


# ---- the source's settings (the `bitext` resource's fields) -----------------------------------------------------
BITEXT_HUB_ID = "bitext/Bitext-customer-support-llm-chatbot-training-dataset"
# the rehearsal's real sample (../shared/data/README.md): the first 5,000 rows of Bitext v11
REHEARSAL_BITEXT = "bitext/Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.head5000.csv"


class BitextReader(BaseModel):
    """Bitext customer-support pairs (v11 or the 2023-08 schema)."""

    location: str = profiled(
        demo="demo",
        full=f"{HUB_PREFIX}{BITEXT_HUB_ID}",
        rehearsal=shared_data(REHEARSAL_BITEXT),
        description="'demo', 'hf://<dataset id>', a local .csv/.parquet path, or 'none' (no Bitext rows); "
        "rehearsal: the real 5,000-row sample in ../shared/data.",
    )
    revision: str | None = Field(None, description="Hub revision (commit/tag); None = latest.")
    hf_token: str | None = Field(
        None,
        description="Hub token; pass dg.EnvVar('HF_TOKEN'), never a literal. Not needed for the public Bitext dataset.",
    )
    demo_seed: int = Field(13, description="Seed of the generated demo corpus.")
    revision_check_interval_s: int = Field(
        900,
        ge=0,
        description="How long a resolved hub revision is reused before the hub is asked again, so "
        "the raw-data sensor and sft-materialize-stale do not hit the network on every tick (0: always ask).",
    )

    def load(self) -> pa.Table:
        from llama_sft_dagster.core.demo import corpus as demo_corpus

        if self.location == "demo":
            return demo_corpus.generate_bitext_rows(seed=self.demo_seed)
        if self.location == NO_SOURCE:
            return RAW_BITEXT_SCHEMA.empty_table()
        if self.location.startswith(HUB_PREFIX):
            table, _revision = load_bitext_hub(self.location[len(HUB_PREFIX) :], self.revision, token=self.hf_token)
            return table
        return load_bitext_file(self.location)

    def version(self) -> str:
        if fixed := fixed_version(self.location, self.demo_seed):
            return fixed
        if self.location.startswith(HUB_PREFIX):
            return hub_location_version(self.location, self.revision, self.hf_token, self.revision_check_interval_s)
        return f"file:{local_version(self.location)}"
