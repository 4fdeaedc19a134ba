"""A small real data graph for the orchestration tests: the project's raw, filter, dedup and split
assets and checks over small local source files (so "new raw data" is a file edit), a stand-in
`base_tokenizer` (a byte-level BPE) (the training assets are not needed to
test data staleness), and a real Dagster instance."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from llama_sft_dagster import automation
from llama_sft_dagster.assets import checks, filters, raw, sources, split
from llama_sft_dagster.assets.data_chain import FIRST_INPUT, STAGE_NAMES
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.core.demo import corpus as demo_corpus
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource

BITEXT_ROWS = 400
DIALOGUES = 30
CHAIN = ["bitext_raw", FIRST_INPUT, *STAGE_NAMES, "train_pairs", "validation_pairs"]


@dg.asset(
    group_name="model",
    code_version="test-tokenizer-1",
    deps=["raw_pairs"],
    description="Test stand-in: a byte-level BPE tokenizer (all token_limit_filtered reads).",
)
def base_tokenizer(artifacts: ArtifactStore) -> dg.MaterializeResult:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        ["customer support order refund account delivery"] * 20,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    folder = artifacts.asset_dir("base_tokenizer") / "tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>").save_pretrained(folder)
    return dg.MaterializeResult(data_version=dg.DataVersion("test-tokenizer-1"))


def write_sources(folder: Path, bitext_rows: int = BITEXT_ROWS, seed: int = 13) -> tuple[Path, Path]:
    bitext = folder / "bitext.parquet"
    table = demo_corpus.generate_bitext_rows(seed=seed, n_rows=bitext_rows).drop_columns(["source_file", "row_index"])
    pq.write_table(table, bitext)
    multiwoz = demo_corpus.write_published_layout(
        demo_corpus.generate_multiwoz_dialogues(seed, DIALOGUES), folder / "multiwoz"
    )
    return bitext, multiwoz


def build_defs(root: Path, bitext: Path, multiwoz: Path, assets_map=None) -> dg.Definitions:
    """The data graph with its real code versions; `assets_map` may rewrite assets (e.g. bump a code version)."""
    # filters.data_stage_assets is read at call time: a test may reload the module after changing a default
    assets = [
        *sources.raw_sources,
        base_tokenizer,
        *dg.load_assets_from_modules([raw, split]),
        *filters.data_stage_assets,
    ]
    if assets_map is not None:
        assets = [assets_map(a) for a in assets]
    return dg.Definitions(
        assets=assets,
        asset_checks=checks.accounting_checks,
        jobs=automation.jobs,
        schedules=automation.schedules,
        sensors=automation.sensors,
        resources={
            **{s.name: s.resource() for s in SOURCES},  # a team's conversations: off
            "artifacts": ArtifactStore(root=str(root / "artifacts")),
            "bitext": BitextSource(location=str(bitext)),
            "multiwoz": MultiwozSource(location=str(multiwoz)),
        },
    )


def bump_code_version(name: str, version: str):
    def rewrite(asset):
        if isinstance(asset, dg.AssetsDefinition) and dg.AssetKey(name) in asset.keys:
            return asset.map_asset_specs(
                lambda s: s.replace_attributes(code_version=version) if s.key == dg.AssetKey(name) else s
            )
        return asset

    return rewrite


def data_versions(instance: dg.DagsterInstance, names=CHAIN) -> dict[str, str]:
    out = {}
    for name in names:
        record = instance.get_latest_materialization_event(dg.AssetKey(name))
        out[name] = record.asset_materialization.tags["dagster/data_version"] if record else None
    return out
