"""What a person reads after a run: tidy metadata, the funnel, dropped-row samples, the inline loss
curve, MLflow metric families and the training progress line (pure logic, no Dagster)."""

import io
import math
from collections import Counter
from datetime import UTC
from types import SimpleNamespace

import pytest

from llama_sft_dagster.core.report.funnel import (
    StageRows,
    funnel_markdown,
    one_line,
    sample_drops,
    samples_table,
    top_reasons,
)
from llama_sft_dagster.core.report.sparkline import INLINE_LIMIT, inline_markdown, loss_sketch_png
from llama_sft_dagster.core.report.tidy import round_float, tidy
from llama_sft_dagster.core.training.monitoring import mlflow_families


@pytest.mark.parametrize(
    "value,expected",
    [
        (7.952795028686523, 7.953),
        (0.00020000001, 0.0002),
        (12345.678, 12346.0),
        (0.5361234, 0.5361),
        (0.0, 0.0),
        (-3.14159, -3.142),
    ],
)
def test_round_float_keeps_four_significant_digits(value, expected):
    assert round_float(value) == expected


def test_tidy_rounds_and_leaves_out_empty_values():
    tidied = tidy(
        {
            "loss": 7.952795028686523,
            "resumed_from": None,
            "revision": "",
            "steps": 40,
            "ok": False,
            "nan": math.nan,
            "tags": [],
        }
    )
    assert list(tidied) == ["loss", "steps", "ok", "nan"]
    assert tidied["loss"] == 7.953 and tidied["steps"] == 40 and tidied["ok"] is False and math.isnan(tidied["nan"])


def test_top_reasons_orders_by_count_and_says_how_many_more():
    assert top_reasons({"a": 1, "b": 5, "c": 3, "d": 2}, 2) == "b 5, c 3 (+2 more)"
    assert top_reasons({"zero": 0}) == ""


def test_stage_line_and_funnel_state_units():
    raw = StageRows("raw_pairs", 6350, 4954, Counter({"blank_response": 9}), "pairs", "rows+turns")
    line = one_line(raw, 0.64)
    assert "6,350 rows+turns ->   4,954 pairs" in line and "blank_response 9" in line and line.endswith("[0.6 s]")
    table = funnel_markdown([raw, StageRows("word_count_filtered", 4954, 4846, Counter(short_response=108))])
    assert "| raw_pairs | 6,350 rows+turns | 4,954 pairs | blank_response 9 |" in table
    assert "| word_count_filtered | 4,954 | 4,846 pairs | short_response 108 |" in table
    assert len(table) < INLINE_LIMIT


def test_drop_samples_per_reason_with_the_kept_twin():
    rejects = [
        {"pair_id": f"b:{i}", "instruction": f"ask {i}", "response": f"reply {i}", "reason": reason, "detail": detail}
        for i, (reason, detail) in enumerate(
            [
                ("near_duplicate", "duplicate_of=b:100"),
                ("near_duplicate", "duplicate_of=b:101"),
                ("near_duplicate", "duplicate_of=b:102"),
                ("too_many_tokens", "tokens=812"),
            ]
        )
    ]
    kept = {"b:100": {"pair_id": "b:100", "instruction": "the original ask", "response": "the original reply"}}
    samples = sample_drops(rejects, per_reason=2, kept_by_id=kept)
    assert [s["pair_id"] for s in samples["near_duplicate"]] == ["b:0", "b:1"]  # two per reason
    assert samples["near_duplicate"][0]["kept_twin"]["instruction"] == "the original ask"
    assert "kept_twin" not in samples["near_duplicate"][1]  # its twin was not looked up: nothing invented
    table = samples_table(samples)
    assert [(r["reason"], r["row"], r["pair_id"]) for r in table] == [
        ("near_duplicate", "dropped", "b:0"),
        ("near_duplicate", "kept twin", "b:100"),
        ("near_duplicate", "dropped", "b:1"),
        ("too_many_tokens", "dropped", "b:3"),
    ]
    assert table[1]["response"] == "the original reply" and table[3]["detail"] == "tokens=812"


def test_near_duplicate_samples_keep_the_words_that_differ():
    """A near-duplicate differs from its twin late in the text: the table keeps whole sentences."""
    twin = "please help me cancel the order I placed yesterday for the blue running shoes in size ten, thanks"
    dropped = twin.replace("size ten", "size nine")
    rows = [
        {
            "pair_id": "b:1",
            "instruction": dropped,
            "response": "ok",
            "reason": "near_duplicate",
            "detail": "duplicate_of=b:0",
        }
    ]
    samples = sample_drops(rows, 2, {"b:0": {"pair_id": "b:0", "instruction": twin, "response": "ok"}})
    table = samples_table(samples)
    assert table[0]["instruction"] == dropped and table[1]["instruction"] == twin


def test_loss_sketch_is_a_png_small_enough_to_show_inline():
    from PIL import Image

    train = [(s, 8 * math.exp(-s / 30) + 0.2 * math.sin(s)) for s in range(1, 1001)]  # a long, noisy full run
    png = loss_sketch_png(train, [(200, 3.0), (400, 2.0), (1000, 1.5)])
    assert Image.open(io.BytesIO(png)).size == (240, 64)
    markdown = inline_markdown(png, "loss curve")
    assert markdown is not None and markdown.startswith("![loss curve](data:image/png;base64,")
    assert len(markdown) < INLINE_LIMIT
    assert inline_markdown(png * 10, "too big") is None
    with pytest.raises(ValueError, match="no loss values"):
        loss_sketch_png([], [])


def test_mlflow_gets_one_series_per_family():
    metrics = {
        "grad_norm/q_proj": 1.0,
        "grad_norm/v_proj": 3.0,
        "grad_norm/lora_total": 5.0,
        "stable_rank/q_proj": 2.0,
        "act_norm/layer_0": 4.0,
        "act_norm/layer_3": 6.0,
        "monitor/token_efficiency": 0.4,
        "memory/rss_gb": 1.5,
    }
    assert mlflow_families(metrics) == {
        "grad_norm/mean_over_modules": 2.0,
        "grad_norm/lora_total": 5.0,
        "stable_rank/mean_over_modules": 2.0,
        "act_norm/mean_over_layers": 5.0,
        "monitor/token_efficiency": 0.4,
        "memory/rss_gb": 1.5,
    }


def test_progress_line_every_n_steps_and_after_each_evaluation():
    from llama_sft_dagster.core.training.progress import ProgressLine

    lines = []
    progress = ProgressLine(lines.append, every=10, tokens_seen=lambda: 5000)
    state = SimpleNamespace(global_step=0, max_steps=40)
    progress.on_train_begin(None, state, None)
    for step in range(2, 41, 2):
        state.global_step = step
        progress.on_log(None, state, None, logs={"loss": 10.0 - step / 10})
        if step % 20 == 0:
            progress.on_log(None, state, None, logs={"eval_loss": 9.0 - step / 10})
    progress.on_log(None, state, None, logs={"train_runtime": 12.0, "train_loss": 8.0})  # the closing summary
    assert [line.split("  ")[0] for line in lines] == [
        "train step 10/40",
        "train step 20/40",
        "train step 20/40",
        "train step 30/40",
        "train step 40/40",
        "train step 40/40",
    ]
    assert "loss 9" in lines[0] and "tokens/s" in lines[0] and "ETA" in lines[0]
    assert "eval_loss 7" in lines[2] and "loss 8" not in lines[2]
    # train logs every 2 steps, progress every 5: the first train log past each multiple of 5
    lines.clear()
    progress = ProgressLine(lines.append, every=5)
    state.global_step = 0
    progress.on_train_begin(None, state, None)
    for step in range(2, 13, 2):
        state.global_step = step
        progress.on_log(None, state, None, logs={"loss": 1.0})
    assert [line.split("  ")[0] for line in lines] == ["train step 6/40", "train step 10/40"]
    with pytest.raises(ValueError):
        ProgressLine(lines.append, every=0)


def test_tensorboard_run_folder_name_is_readable():
    from datetime import datetime
    from pathlib import Path

    from llama_sft_dagster.core.training.progress import tensorboard_run_dir

    folder = tensorboard_run_dir(
        Path("tb"), "4e65c4c3-d042-4860", 64, 2e-4, -1, now=datetime(2026, 11, 29, 6, 37, 2, tzinfo=UTC)
    )
    assert folder == Path("tb/2026-11-29_063702_r64_lr0.0002_epochs_4e65c4c3")
