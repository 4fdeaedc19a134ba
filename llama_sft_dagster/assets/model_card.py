"""The merged model's card (README.md in its folder, Hugging Face format), from the files and events of the run.

merged_model writes it at merge time: base model and licence, data lineage (each source's data version and the
row funnel), the training config, intended use and limits. champion_model rewrites it once adapter_evaluation has
measured the model and the registry has given it a version (the evaluation table, the version, the decision),
then logs it to MLflow with that version: as the version's description and as `model_card/README.md` among the
artifacts of the run the version points at (the training run). The rendering is core/report/model_card.py.

    cat .sft_state/artifacts/merged_model/current/model/README.md
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg

from llama_sft_dagster.assets.model_paths import BASE_TOKENIZER_ASSET, FORMAT_FILE, SOURCE_FILE
from llama_sft_dagster.assets.source_table import SOURCES
from llama_sft_dagster.config.evaluation import ChampionConfig
from llama_sft_dagster.core.report.model_card import CardFacts, model_card
from llama_sft_dagster.launch.job import JOB_FILE
from llama_sft_dagster.resources.artifacts import ArtifactStore

CARD_FILE = "README.md"  # the hub reads a model's card from README.md at the root of its folder
DATA_VERSION_TAG = "dagster/data_version"  # a materialization's data version, among its tags
LOCAL_BASES = {
    "demo": "demo: a tiny Llama-architecture model built and briefly pretrained here (not Llama 3.1)",
    "rehearsal": "rehearsal: a tiny Llama-3.1-shaped model built here with the Llama 3.1 tokenizer",
}


def source_lineage(context: dg.AssetExecutionContext) -> tuple[list[dict], list[str]]:
    """(per source: where it was read, the source version its raw asset was built from, the raw table's data
    version; the hub dataset ids among them: the front matter's `datasets` names only sources read from
    `hf://<id>`) from the raw assets' latest materializations."""
    rows, datasets = [], []
    for source in SOURCES:
        event = context.instance.get_latest_materialization_event(dg.AssetKey(source.raw_asset))
        if event is None or event.asset_materialization is None:
            continue  # a source that was never materialized fed no rows
        location = str(getattr(event.asset_materialization.metadata.get("source"), "value", ""))
        if location == "none":
            continue  # a source switched off (a team's conversations by default)
        provenance = context.get_asset_provenance(dg.AssetKey(source.raw_asset))
        observed = provenance.input_data_versions.get(dg.AssetKey(source.source_asset)) if provenance else None
        rows.append(
            {
                "source": source.name,
                "read from": location,
                # Dagster's INITIAL: the run read the source without an observation of it first
                "source version": observed.value if observed and observed.value != "INITIAL" else "not observed",
                "raw data version": event.asset_materialization.tags.get(DATA_VERSION_TAG, ""),
            }
        )
        if location.startswith("hf://"):
            datasets.append(location[len("hf://") :])
    return rows, datasets


def funnel(artifacts: ArtifactStore) -> list[dict]:
    """The run report's funnel rows; one row saying which stage's file is missing when the data stages were not
    all run into this store (an adapter trained on hand-made splits), so the card says so instead of failing."""
    from llama_sft_dagster.assets.report import funnel_rows

    try:
        return funnel_rows(artifacts)
    except FileNotFoundError as exc:  # pyarrow names the file in its message only
        found = re.search(r"'([^']+)'", str(exc)) if exc.filename is None else None
        missing = Path(exc.filename or (found.group(1) if found else "")).parent.name or "a stage"
        return [{"stage": "(funnel not available)", "reason": f"{missing}'s file is not in the store"}]


def card_facts(context: dg.AssetExecutionContext, artifacts: ArtifactStore, adapter: Path) -> CardFacts:
    """What the card says before evaluation: base model, sources, funnel, training config and sample format."""
    base = json.loads(artifacts.path(BASE_TOKENIZER_ASSET, SOURCE_FILE).read_text())
    fmt = json.loads(artifacts.path("sft_dataset", FORMAT_FILE).read_text())
    job = json.loads((adapter.parent / "launch" / JOB_FILE).read_text())  # the TrainJob: the whole TrainConfig
    sources, datasets = source_lineage(context)
    return CardFacts(
        name=ChampionConfig().registered_model_name,
        version="",
        base_model=LOCAL_BASES.get(base["model_id"], base["model_id"]),
        base_revision=base.get("revision") or "",
        sources=sources,
        datasets=datasets,
        funnel=funnel(artifacts),
        training=job["config"],
        sample_format={k: v for k, v in fmt.items() if not isinstance(v, dict | list)},
        evaluation=[],
        losses={},
    )


def write_card(facts: CardFacts, model_dir: Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(model_card(facts))
    return path


def publish_card(context: dg.AssetExecutionContext, artifacts: ArtifactStore, registry, version, decision: str) -> Path:
    """champion_model: the card with the evaluation, the registered version and the decision, in the merged folder
    and in MLflow (the version's description; an artifact of the run the version points at)."""
    import pyarrow.parquet as pq

    from llama_sft_dagster.assets.evaluation import SUMMARY_FILE
    from llama_sft_dagster.core.evaluation.metrics import table_rows

    summary = json.loads(artifacts.path("adapter_evaluation", SUMMARY_FILE).read_text())
    metrics = pq.read_table(artifacts.path("adapter_evaluation", "metrics.parquet")).to_pylist()
    facts = card_facts(context, artifacts, Path(summary["adapter"]))
    facts.name, facts.version, facts.decision = registry.name, str(version.version), decision
    facts.evaluation = table_rows(metrics, kinds=("overall", "source", "category"))
    facts.losses = {k: v for k, v in summary.items() if "_loss_" in k}
    path = write_card(facts, Path(summary["tuned_model"]))
    registry.attach_card(version, path)
    return path
