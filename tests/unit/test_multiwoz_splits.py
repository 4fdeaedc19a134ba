"""MultiWOZ splits are a config choice (default train only, as the seed); the real excerpts in the
published layout (../shared/data/multiwoz_2.2/hf_dummy_fixtures: 17 train, 2 dev, 2 test dialogues)."""

import pytest
from pydantic import ValidationError

from llama_sft_dagster.resources.data_sources import MultiwozSource
from support.paths import shared_file


def test_default_reads_train_only():
    folder = shared_file("multiwoz_2.2/hf_dummy_fixtures")
    table = MultiwozSource(location=str(folder)).load()
    assert set(table.column("split").to_pylist()) == {"train"}
    assert len(set(table.column("dialogue_id").to_pylist())) == 17


def test_dev_and_test_only_when_asked():
    folder = shared_file("multiwoz_2.2/hf_dummy_fixtures")
    table = MultiwozSource(location=str(folder), splits=["train", "dev", "test"]).load()
    assert sorted(set(table.column("split").to_pylist())) == ["dev", "test", "train"]
    assert len(set(table.column("dialogue_id").to_pylist())) == 21


def test_unknown_split_is_refused_naming_the_choices():
    with pytest.raises(ValidationError, match="choose one or more of"):
        MultiwozSource(location="demo", splits=["validation"])


def test_choosing_other_splits_is_a_new_source_version():
    folder = str(shared_file("multiwoz_2.2/hf_dummy_fixtures"))
    train = MultiwozSource(location=folder).version()
    assert train != MultiwozSource(location=folder, splits=["train", "dev"]).version()
    assert train == MultiwozSource(location=folder).version()
