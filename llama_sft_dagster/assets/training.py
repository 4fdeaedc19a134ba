"""Training group: sft_dataset (templated rows + masking checks) -> train_adapter (LoRA SFT) -> merged_model.

dagster asset materialize -m llama_sft_dagster.definitions --select 'sft_dataset*'
"""

import json
from pathlib import Path

import dagster as dg

from llama_sft_dagster.assets._versioned import profiled_check, versioned_asset
from llama_sft_dagster.assets.adapter_training import train_adapter_into
from llama_sft_dagster.assets.model_paths import BASE_TOKENIZER_ASSET, FORMAT_FILE, base_tokenizer_dir
from llama_sft_dagster.config.k8s import K8S_CONFIG_TAG, training_step_k8s_config
from llama_sft_dagster.config.training import MergeCheckConfig, SftDatasetConfig, TrainConfig
from llama_sft_dagster.core.data.storage import read_parquet, write_parquet
from llama_sft_dagster.core.report.tidy import tidy
from llama_sft_dagster.core.versions import fingerprint, folder_version, table_version
from llama_sft_dagster.housekeeping.pool_guard import GpuPoolGuard
from llama_sft_dagster.launch.train import REPORT_FILE
from llama_sft_dagster.resources.artifacts import ArtifactStore
from llama_sft_dagster.resources.gpu import GpuResource
from llama_sft_dagster.resources.tracking import MlflowTracking

SPLITS = {"train": "train_pairs", "validation": "validation_pairs"}
LINEAGE_FILE = "lineage.json"  # in a merged_model version: the adapter version it was merged from


def load_sft(artifacts: ArtifactStore, consumer: str) -> tuple[dict, list[dict], list[dict]]:
    """(format settings, train rows, validation rows) as written by sft_dataset."""
    import pyarrow.parquet as pq

    from llama_sft_dagster.core.training.tokenized import sft_columns

    fmt = json.loads(artifacts.upstream("sft_dataset", consumer, FORMAT_FILE).read_text())
    # with the token columns sft_dataset stored, the trainer does not tokenize again (core/training/tokenized.py)
    rows = [
        read_parquet(path, columns=sft_columns(fmt["dataset_format"], pq.read_schema(path).names)).to_pylist()
        for path in (artifacts.upstream("sft_dataset", consumer, f"{s}.parquet") for s in SPLITS)
    ]
    return fmt, rows[0], rows[1]


def row_sources(artifacts: ArtifactStore, consumer: str) -> dict[str, list[str] | None]:
    """Source of every sft_dataset row ("bitext" / "multiwoz", from its pair_id), per trainer split name
    (None for a file without pair_id: the masking check then spreads its batches without sources)."""
    import pyarrow.parquet as pq

    out = {}
    for split, name in (("train", "train"), ("validation", "eval")):
        path = artifacts.upstream("sft_dataset", consumer, f"{split}.parquet")
        ids = read_parquet(path, columns=["pair_id"]) if "pair_id" in pq.read_schema(path).names else None
        out[name] = None if ids is None else [p.split(":", 1)[0] for p in ids.column(0).to_pylist()]
    return out


def context_metadata(table) -> dict:
    """Multi-turn samples (context='earlier_turns'): how many have earlier turns, kept and cut (budget)."""
    if "context_turns" not in table.column_names:
        return {}
    kept, cut = table.column("context_turns").to_pylist(), table.column("context_turns_cut").to_pylist()
    return {
        "samples_with_context": sum(1 for n in kept if n),
        "context_turns": sum(kept),
        "context_turns_cut": sum(cut),
    }


class EmptySftSplitError(ValueError):
    """A split of sft_dataset has no rows: training could not start (or evaluate) on it."""


def empty_split_message(split: str, upstream: str, counts, max_length: int) -> str:
    if counts.rows_in == 0:
        return (
            f"sft_dataset: {upstream} has 0 rows, so there is no {split} data; add data or change "
            "SplitConfig.validation_fraction (see the metadata of train_pairs / validation_pairs)"
        )
    return (
        f"sft_dataset: all {counts.rows_in} {split} rows were dropped ({dict(counts.dropped)}): every templated "
        f"sample is longer than max_length={max_length}; raise max_length or set filter_on_templated_length=False"
    )


def split_metadata(split: str, counts, lengths: list[int], max_length: int, context: dict) -> dict:
    """`<split>_<figure>`: the row accounting, the templated lengths and the multi-turn context of one split."""
    from llama_sft_dagster.core.training.masking import length_report

    report = length_report(lengths, max_length)
    # kept rows over max_length exist only when filtering is off: the trainer cuts them, counted here
    figures = {**counts.as_metadata(), **report, "truncated_samples": report["over_max_length"], **context}
    return {f"{split}_{k}": v for k, v in figures.items()}


@versioned_asset(
    group_name="training",
    kinds={"parquet"},
    deps=[*SPLITS.values(), BASE_TOKENIZER_ASSET],
    description="Train/validation pairs as chat rows (seed system prompt, Llama-3 template): conversational "
    "prompt/completion for completion-only loss, with each row's templated token count.",
)
def sft_dataset(
    context: dg.AssetExecutionContext, config: SftDatasetConfig, artifacts: ArtifactStore
) -> dg.MaterializeResult:
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.chat_format import sft_table

    tokenizer = AutoTokenizer.from_pretrained(artifacts.upstream(BASE_TOKENIZER_ASSET, "sft_dataset", "tokenizer"))
    out, metadata, rejects = artifacts.asset_dir("sft_dataset"), {}, []
    for split, upstream in SPLITS.items():
        table, rej, counts, lengths = sft_table(
            read_parquet(artifacts.upstream(upstream, "sft_dataset")),
            tokenizer,
            config.dataset_format,
            config.max_length,
            config.filter_on_templated_length,
            config.system_prompt,
            assistant_only_loss=config.assistant_only_loss,
            context=config.context,
            context_max_tokens=config.context_max_tokens,
            data_system_message=config.data_system_message,
            loss_turns=config.loss_turns,
        )
        if table.num_rows == 0:  # the trainer needs both: it trains on one and evaluates on the other
            raise EmptySftSplitError(empty_split_message(split, upstream, counts, config.max_length))
        write_parquet(table, out / f"{split}.parquet")
        rejects.append(rej)
        metadata.update(split_metadata(split, counts, lengths, config.max_length, context_metadata(table)))
    import pyarrow as pa

    write_parquet(pa.concat_tables(rejects), out / "rejects.parquet")
    (out / FORMAT_FILE).write_text(json.dumps(config.model_dump(), indent=2))
    version = fingerprint({s: table_version(out / f"{s}.parquet") for s in SPLITS}, config.model_dump())
    context.log.info(
        f"sft_dataset: {metadata['train_rows_out']} train, {metadata['validation_rows_out']} validation rows"
    )
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(out)), **metadata}, data_version=dg.DataVersion(version)
    )


@dg.asset_check(
    asset=sft_dataset,
    blocking=True,
    description="On the trainer's real processed dataset and collator: every label outside the supervised "
    "assistant reply (the last one, or every one with loss_turns='all') is -100, every such reply token and its "
    "<|eot_id|> is supervised. Reports token efficiency and padding share.",
)
def sft_dataset_label_masking(
    context: dg.AssetCheckExecutionContext, artifacts: ArtifactStore, gpu: GpuResource, pool_guard: GpuPoolGuard
) -> dg.AssetCheckResult:
    import tempfile

    from llama_sft_dagster.core.training.masking import format_options, verify_trainer_masking
    from llama_sft_dagster.core.training.trainer import prepare_data

    fmt, train_rows, eval_rows = load_sft(artifacts, "sft_dataset")
    sources, hp, plan = row_sources(artifacts, "sft_dataset"), TrainConfig(), gpu.plan()
    # the trainer's processed datasets and collator without the base model: nothing to place on the device
    tokenizer_dir = base_tokenizer_dir(artifacts)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = prepare_data(tokenizer_dir, train_rows, eval_rows, hp, fmt, plan, tmp)
        reports = {
            s: verify_trainer_masking(
                trainer,
                max_batches=8,
                split=s,
                sources=sources[s],
                **format_options(fmt),
            )
            for s in ("train", "eval")
        }
    # named for the sample it measures: 8 batches spread over each split (train_adapter reports the whole run's)
    sampled = {"token_efficiency", "padding_share"}
    metadata = tidy(
        {
            f"{s}_{k}{'_sampled_batches' if k in sampled else ''}": v
            for s, r in reports.items()
            for k, v in r.metrics().items()
        }
    )
    problems = [e for r in reports.values() for e in r.examples]
    if problems:
        metadata["first_problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:5]))
    return dg.AssetCheckResult(passed=all(r.ok for r in reports.values()), metadata=metadata)


@dg.asset_check(
    asset=sft_dataset,
    description="WARN when templated train samples exceed max_length (the trainer "
    "would truncate them silently; set filter_on_templated_length to drop them with a reason instead).",
)
def sft_dataset_templated_length(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from llama_sft_dagster.core.training.masking import length_report

    fmt = json.loads(artifacts.path("sft_dataset", FORMAT_FILE).read_text())
    lengths = (
        read_parquet(artifacts.path("sft_dataset", "train.parquet"), columns=["templated_tokens"]).column(0).to_pylist()
    )
    report = length_report(lengths, fmt["max_length"])
    return dg.AssetCheckResult(
        passed=report["over_max_length"] == 0, severity=dg.AssetCheckSeverity.WARN, metadata=report
    )


@versioned_asset(
    group_name="training",
    kinds={"pytorch", "peft"},
    deps=["sft_dataset", "base_model"],
    pool="gpu",
    op_tags={K8S_CONFIG_TAG: training_step_k8s_config()},
    description="LoRA adapter (safetensors) of the best checkpoint by eval_loss: TRL SFTTrainer, completion-only "
    "loss, seed hyperparameters (full) or a short CPU run (demo). Resumes an interrupted run of the same config. "
    "Each run writes a new version folder; earlier ones are kept (ArtifactStore.keep_versions, champions "
    "always).",
)
def train_adapter(
    context: dg.AssetExecutionContext,
    config: TrainConfig,
    artifacts: ArtifactStore,
    gpu: GpuResource,
    pool_guard: GpuPoolGuard,
    tracking: MlflowTracking,
) -> dg.MaterializeResult:
    # a child job through Dagster Pipes: `accelerate launch` of 1..N ranks (assets/adapter_training.py)
    out = artifacts.new_version("train_adapter", context.run.run_id)
    # checkpoints stay outside the version folder: a rerun after a kill is a new run, and must find them;
    # TensorBoard too, so `make tensorboard` shows every run side by side
    shared = artifacts.asset_dir("train_adapter")
    metadata = train_adapter_into(
        context,
        config,
        artifacts,
        gpu,
        tracking,
        out,
        checkpoints_dir=shared / "checkpoints",
        tensorboard_dir=shared / "tensorboard",
    )
    removed = artifacts.publish("train_adapter", out)
    return dg.MaterializeResult(
        metadata={**metadata, "version": out.name, "versions_removed": ", ".join(removed)},
        data_version=dg.DataVersion(folder_version(out / "adapter")),
    )


@dg.asset_check(
    asset=train_adapter,
    description="WARN when the gradient norm stays above 1.5 over the last quarter of the logged steps "
    "(the walkthrough's advice: then halve the learning rate); shows the figure either way.",
)
def train_adapter_grad_norm(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from llama_sft_dagster.core.training.advice import grad_norm_advice

    report = json.loads(artifacts.path("train_adapter", REPORT_FILE).read_text())
    advice = grad_norm_advice(report.get("grad_norm") or [])
    if advice is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no grad_norm was logged (no optimizer step)"})
    return dg.AssetCheckResult(
        passed=not advice.high,
        severity=dg.AssetCheckSeverity.WARN,
        description=advice.message,
        metadata=tidy(
            {
                "grad_norm_tail_median": advice.tail_median,
                "grad_norm_last": advice.last,
                "steps": f"{advice.tail_steps[0]}-{advice.tail_steps[1]}",
                "advice": advice.message,
            }
        ),
    )


@versioned_asset(
    group_name="training",
    kinds={"safetensors"},
    deps=["train_adapter"],
    description="Base model with the adapter merged in (CPU, PeftModel.merge_and_unload), safetensors + "
    "tokenizer; one version folder per run, like train_adapter.",
)
def merged_model(context: dg.AssetExecutionContext, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from llama_sft_dagster.assets.model_card import card_facts, write_card
    from llama_sft_dagster.core.training.merge import base_identity, merge_lora

    adapter = artifacts.upstream("train_adapter", "merged_model", "adapter")
    version = artifacts.new_version("merged_model", context.run.run_id)
    out = merge_lora(adapter, version / "model")
    # lineage by file: the champion asset marks this adapter version too, so retention keeps both
    (version / LINEAGE_FILE).write_text(json.dumps({"adapter": str(adapter)}, indent=2))
    data_version = folder_version(out)  # of the weights and tokenizer: champion_model rewrites the card
    write_card(card_facts(context, artifacts, adapter), out)
    removed = artifacts.publish("merged_model", version)
    base, revision = base_identity(adapter)
    context.log.info(f"merged {adapter} into {base} -> {out}")
    metadata = tidy(
        {
            "path": dg.MetadataValue.path(str(out)),
            "base": base,
            "revision": revision,
            "adapter": dg.MetadataValue.path(str(adapter)),
            "version": version.name,
            "versions_removed": ", ".join(removed),
        }
    )
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(data_version))


# blocking: run_report (downstream) reads its result, and a merge that disagrees must not be reported as done
@profiled_check(
    asset=merged_model,
    blocking=True,
    description="Merged = base + adapter: layer-wise on every LoRA projection (any host), and on probe logits "
    "when the model fits in RAM (<= 1e-4 in fp32; in bf16 <= 1% of the largest logit), differing from the base "
    "model's.",
)
def merged_model_logits(config: MergeCheckConfig, artifacts: ArtifactStore) -> dg.AssetCheckResult:
    import psutil
    from transformers import AutoTokenizer

    from llama_sft_dagster.core.training.merge import base_identity, probe_logits
    from llama_sft_dagster.core.training.merge_check import model_bytes, plan_merge_check, weight_check

    merged = artifacts.path("merged_model", "model")
    # the adapter this version was merged from (train_adapter may have a newer version by now)
    adapter = Path(json.loads(artifacts.path("merged_model", LINEAGE_FILE).read_text())["adapter"])
    plan = plan_merge_check(config.mode, model_bytes(merged, config.probe_dtype), psutil.virtual_memory().available)
    metadata = {"checks_run": plan["reason"], **weight_check(adapter, merged, Path(base_identity(adapter)[0]))}
    passed = metadata["weights_passed"]
    if plan["logits"]:
        _, _, eval_rows = load_sft(artifacts, "merged_model")
        tok = AutoTokenizer.from_pretrained(merged)
        prompts = [
            tok.apply_chat_template(
                r["prompt"] if "prompt" in r else r["messages"][:-1], tokenize=False, add_generation_prompt=True
            )
            for r in eval_rows[: config.probes]
        ]
        r = probe_logits(adapter, merged, prompts, config.probe_dtype)
        # fp32: summation-order differences only (measured ~1e-6 on the demo model); bf16 rounds W + BA to
        # 8 mantissa bits (relative step 2**-8 ~ 0.4%), so the bound is relative to the logit scale
        bound = 1e-4 if config.probe_dtype == "float32" else 1e-2 * r["max_abs_logit"]
        agree, differs = r["max_abs_diff_merged_vs_adapter"] <= bound, r["max_abs_diff_merged_vs_base"] > 10 * bound
        metadata.update({**r, "bound": bound, "agrees_with_adapter": agree, "differs_from_base": differs})
        passed = passed and agree and differs
    return dg.AssetCheckResult(passed=passed, metadata=tidy(metadata))


@dg.asset_check(
    asset=merged_model,
    blocking=True,
    description="The merged model stops where the fine-tuning "
    "taught it to: its tokenizer's eos and its generation config's eos ids include <|eot_id|>, and it "
    "does not pad with it.",
)
def merged_model_stops_on_eot(artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from llama_sft_dagster.core.training.template_check import stop_token_problems

    problems, metadata = stop_token_problems(artifacts.path("merged_model", "model"))
    if problems:
        metadata["problems"] = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))
    return dg.AssetCheckResult(passed=not problems, metadata=tidy(metadata))
