"""The merged model's card (core/report/model_card.py): Hugging Face's front matter and the sections a reader
of a model page expects, read back as the hub would read them."""

import pytest

from llama_sft_dagster.core.report.model_card import CardFacts, model_card, split_front_matter


def facts(base="meta-llama/Llama-3.1-8B-Instruct") -> CardFacts:
    return CardFacts(
        name="llama-sft-merged",
        version="3",
        base_model=base,
        base_revision="0e9e39f",
        sources=[
            {
                "source": "bitext",
                "read from": "hf://bitext/x",
                "source version": "hub:abc123",
                "raw data version": "9f",
            },
            {
                "source": "multiwoz",
                "read from": "archive",
                "source version": "archive:etag-9",
                "raw data version": "1c",
            },
        ],
        datasets=["bitext/Bitext-customer-support-llm-chatbot-training-dataset"],
        funnel=[{"stage": "word_count_filtered", "in": 5000, "out": 4800, "top drop reasons": "short 200"}],
        training={"lora_r": 64, "lora_alpha": 128, "learning_rate": 0.0002, "num_train_epochs": 3},
        sample_format={"max_length": 580, "system_prompt": "You are a helpful support agent."},
        evaluation=[{"set": "validation", "group": "overall", "rows": 40, "loss_base": 1.2345, "loss_tuned": 0.61}],
        losses={"evaluation_loss_base": 1.3, "evaluation_loss_tuned": 0.8},
        decision="no champion yet; challenger evaluation_loss 0.8 beats base 1.3",
    )


def test_card_front_matter_and_sections():
    front, body = split_front_matter(model_card(facts()))
    assert front["base_model"] == "meta-llama/Llama-3.1-8B-Instruct" and front["license"] == "llama3.1"
    assert front["pipeline_tag"] == "text-generation" and "lora" in front["tags"]
    assert front["datasets"][0].startswith("bitext/")
    for heading in [
        "# llama-sft-merged v3",
        "## Base model and licence",
        "## Data lineage",
        "## Training",
        "## Evaluation",
        "## Intended use",
        "## Limits",
    ]:
        assert heading in body, heading
    assert "Llama 3.1 Community License" in body and "Built with Llama" in body
    assert "| bitext | hf://bitext/x | hub:abc123 | 9f |" in body and "| word_count_filtered | 5000 | 4800 |" in body
    assert "not from Llama 3.1's weights" not in body
    assert "| lora_r | 64 |" in body and "| max_length | 580 |" in body
    assert "| evaluation_loss | 1.3 | 0.8 |" in body and "| validation | overall | 40 | 1.234 | 0.61 |" in body


def test_a_local_base_is_not_labelled_llama_licensed():
    front, body = split_front_matter(model_card(facts(base="demo: tiny Llama built locally")))
    assert front["license"] == "other" and "base_model" not in front  # the hub takes only a model id there
    assert "not from Llama 3.1's weights" in body


def test_front_matter_is_required():
    with pytest.raises(ValueError, match="front matter"):
        split_front_matter("# no metadata\n")


def test_the_merge_time_card_says_it_is_not_evaluated_yet():
    """merged_model writes the card before any evaluation or registration: no empty tables, no version."""
    f = facts()
    f.version, f.evaluation, f.losses, f.decision = "", [], {}, ""
    front, body = split_front_matter(model_card(f))
    assert "# llama-sft-merged (merged, not registered yet)" in body
    assert "Not evaluated yet" in body and "| evaluation_loss |" not in body and "Champion decision" not in body
    assert front["base_model"] == "meta-llama/Llama-3.1-8B-Instruct" and front["base_model_relation"] == "finetune"
    assert "| multiwoz | archive | archive:etag-9 | 1c |" in body and "| lora_r | 64 |" in body  # lineage, config
