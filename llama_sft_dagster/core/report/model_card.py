"""The merged model's card: README.md in Hugging Face's format (YAML front matter, then Markdown sections).

merged_model writes it into the merged model's folder (`model/README.md`) when it merges, without figures of
evaluation; champion_model rewrites it once the model is evaluated and registered (the evaluation table, the
version, the decision) and logs it to MLflow with that version (assets/model_card.py). Pure logic here:

    text = model_card(CardFacts(...))
    front, body = split_front_matter(text)    # front: the YAML metadata as a dict
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import yaml

LLAMA_HUB_PREFIX = "meta-llama/"
# the attribution the Llama 3.1 Community License asks of a redistributed derivative (its section 1.b.i-iii)
LLAMA_NOTICE = (
    "Llama 3.1 is licensed under the Llama 3.1 Community License, Copyright © Meta Platforms, Inc. "
    "All Rights Reserved. Built with Llama. Use of this model is governed by the Llama 3.1 Community "
    "License and Meta's Acceptable Use Policy; a copy of the license must accompany any redistribution."
)
LOCAL_BASE_NOTE = (
    "This base was built here, not from Llama 3.1's weights: the notice below is what a model fine-tuned from "
    "meta-llama/Llama-3.1-8B-Instruct (the full profile) carries, and it covers the Llama 3.1 tokenizer where "
    "one is used (the rehearsal profile)."
)
NOT_EVALUATED = (
    "Not evaluated yet: adapter_evaluation scores this model against its base, and champion_model rewrites "
    "this card with the figures when it registers the model."
)


@dataclass
class CardFacts:
    name: str  # the registered model name
    version: str  # its registered version ("" before champion_model registers it)
    base_model: str  # hub id (meta-llama/...) or a local description (the demo's tiny Llama)
    base_revision: str
    sources: Sequence[Mapping]  # per source: where it was read, its observed version, its raw table's data version
    datasets: Sequence[str]  # the published datasets among them, as the hub names them (front matter `datasets`)
    funnel: Sequence[Mapping]  # stage (with its unit unless pairs), in, out, top drop reasons
    training: Mapping[str, object]  # TrainConfig fields as trained
    sample_format: Mapping[str, object]  # sft_dataset's settings (template, max_length, system prompt)
    evaluation: Sequence[Mapping]  # set, group, rows, loss_base, loss_tuned, accuracy_base, accuracy_tuned
    losses: Mapping[str, float]  # glossary names -> value (evaluation_loss_tuned ...)
    decision: str = ""
    extra_tags: list[str] = field(default_factory=list)


def _table(rows: Sequence[Mapping]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])

    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows)])


def front_matter(facts: CardFacts) -> dict:
    llama = facts.base_model.startswith(LLAMA_HUB_PREFIX)
    # the hub links base_model to a model page: only a hub id goes there (the demo's local base is described below)
    hub = {"base_model": facts.base_model, "base_model_relation": "finetune"} if "/" in facts.base_model else {}
    return {
        **hub,
        "library_name": "transformers",
        "license": "llama3.1" if llama else "other",
        "language": ["en"],
        "pipeline_tag": "text-generation",
        "datasets": list(facts.datasets),
        "tags": ["llama-3.1", "lora", "sft", "trl", "peft", "customer-support", "dagster", *facts.extra_tags],
    }


def model_card(facts: CardFacts) -> str:
    from llama_sft_dagster.core.report.losses import GLOSSARY

    meta = yaml.safe_dump(front_matter(facts), sort_keys=False, allow_unicode=True).strip()
    llama = facts.base_model.startswith(LLAMA_HUB_PREFIX)
    title = f"{facts.name} v{facts.version}" if facts.version else f"{facts.name} (merged, not registered yet)"
    lora = {k: v for k, v in facts.training.items() if k.startswith("lora_")}
    hp = {k: v for k, v in facts.training.items() if not k.startswith("lora_")}
    losses = [
        {"loss": n, "base": facts.losses.get(f"{n}_base", ""), "tuned": facts.losses.get(f"{n}_tuned", "")}
        for n in ("validation_loss", "held_out_loss", "evaluation_loss")
    ]
    sections = [
        f"---\n{meta}\n---",
        f"# {title}",
        "A LoRA fine-tune of the base model below for customer-support replies, merged into the base weights "
        "(safetensors, with the tokenizer and its Llama 3 chat template). Built by llama-sft-dagster.",
        "## Base model and licence",
        f"- Base model: `{facts.base_model}` (revision `{facts.base_revision or 'local'}`)",
        *([] if llama else [LOCAL_BASE_NOTE]),
        f"- {LLAMA_NOTICE}",
        "## Data lineage",
        "Sources and the data versions this model was trained on:",
        _table(facts.sources),
        "Row funnel, stage by stage (rows in -> out, top drop reasons):",
        _table(facts.funnel),
        "## Training",
        "LoRA (PEFT) with TRL's SFTTrainer, loss on the assistant reply and its `<|eot_id|>` only.",
        _table([{"setting": k, "value": v} for k, v in {**lora, **hp, **facts.sample_format}.items()]),
        "## Evaluation",
        *(
            [
                "Mean cross-entropy per supervised reply token (token-weighted), base vs this model on the same rows:",
                _table(losses),
                "\n".join(f"- `{n}`: {GLOSSARY[n]}" for n in ("validation_loss", "held_out_loss", "evaluation_loss")),
                _table(facts.evaluation),
            ]
            if facts.losses
            else [NOT_EVALUATED]
        ),
        *([f"Champion decision: {facts.decision}"] if facts.decision else []),
        "## Intended use",
        "Drafting replies in English customer-support conversations (orders, refunds, accounts, shipping, "
        "bookings) with the system prompt it was trained with, reviewed by a person before they reach a "
        "customer.",
        "## Limits",
        "- Trained on Bitext's synthetic customer-support pairs and MultiWOZ 2.2 dialogues: it knows no real "
        "company's policies, prices or order data and will invent plausible ones; ground it in your data.\n"
        "- English only (other languages were filtered out); replies longer than the training max_length "
        "were never seen.\n"
        "- Loss figures above measure fit to the reference replies, not helpfulness or safety; evaluate on "
        "your own conversations before use.\n"
        "- The Llama 3.1 Acceptable Use Policy applies.",
    ]
    return "\n\n".join(sections) + "\n"


def split_front_matter(text: str) -> tuple[dict, str]:
    """(the YAML metadata, the Markdown body) of a model card; a clear error when the front matter is missing."""
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise ValueError("a model card starts with YAML front matter between two '---' lines")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body
