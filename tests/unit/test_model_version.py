"""The base model's version is read from its stamp while the folder is unchanged, and re-hashed when not."""

import os

import pytest

from llama_sft_dagster.core import versions
from llama_sft_dagster.core.versions import folder_version


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(b"\x01" * 4096)
    versions.stamp_version(folder, "hub-sha-1")
    return folder


def _touch_later(path):
    # a rewrite moves mtime; force a visible step where the filesystem clock is coarse
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_unchanged_folder_uses_the_stamp_without_hashing(model_dir, monkeypatch):
    def no_hashing(*_):
        raise AssertionError("the weights were hashed")

    monkeypatch.setattr(versions, "folder_version", no_hashing)
    assert versions.model_folder_version(model_dir) == "hub-sha-1"


def test_rewritten_weights_same_size_invalidate(model_dir):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"\x02" * 4096)  # same size, other values: a re-initialised model
    _touch_later(weights)
    version = versions.model_folder_version(model_dir)
    assert version != "hub-sha-1" and version == folder_version(model_dir)
    assert versions.model_folder_version(model_dir) == version  # re-stamped: next run reads it


@pytest.mark.parametrize("change", ["add", "remove"])
def test_added_or_removed_file_invalidates(model_dir, change):
    if change == "add":
        (model_dir / "tokenizer.json").write_text("{}")
    else:
        (model_dir / "config.json").unlink()
    assert versions.model_folder_version(model_dir) == folder_version(model_dir) != "hub-sha-1"


def test_missing_or_broken_stamp_falls_back_to_the_content_hash(model_dir):
    versions.stamp_path(model_dir).write_text("not json")
    assert versions.model_folder_version(model_dir) == folder_version(model_dir)
    versions.stamp_path(model_dir).unlink()
    assert versions.model_folder_version(model_dir) == folder_version(model_dir)
