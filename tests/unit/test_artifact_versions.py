"""Versioned asset folders: a new materialization never overwrites an earlier one, readers follow
`current`, retention keeps the newest N and every promoted version."""

import shutil

from llama_sft_dagster.resources.artifacts import CURRENT, ArtifactStore


def _publish(store: ArtifactStore, run_id: str, text: str):
    folder = store.new_version("train_adapter", run_id)
    (folder / "adapter").mkdir()
    (folder / "adapter" / "w.txt").write_text(text)
    return folder, store.publish("train_adapter", folder)


def test_versions_current_and_retention(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"), keep_versions=2)
    first, _ = _publish(store, "run-aaaaaaaa", "one")
    assert store.path("train_adapter", "adapter/w.txt") == first / "adapter" / "w.txt"
    store.mark_promoted(first, "llama-sft-merged v1")
    second, _ = _publish(store, "run-bbbbbbbb", "two")
    third, removed = _publish(store, "run-cccccccc", "three")
    assert removed == []  # first is promoted, second and third are the newest two
    fourth, removed = _publish(store, "run-dddddddd", "four")
    assert removed == [second.name]
    assert [p.name for p in store.versions("train_adapter")] == [first.name, third.name, fourth.name]
    assert (first / "adapter" / "w.txt").read_text() == "one"  # the promoted one survives every retraining
    assert store.upstream("train_adapter", "merged_model", "adapter/w.txt").read_text() == "four"
    assert (tmp_path / "artifacts" / "train_adapter" / CURRENT).is_symlink()


def test_copied_store_follows_its_own_current(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "a" / "artifacts"))
    _publish(store, "run-aaaaaaaa", "one")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    copy = ArtifactStore(root=str(tmp_path / "b" / "artifacts"))
    assert copy.path("train_adapter", "adapter/w.txt").is_relative_to(tmp_path / "b")


def test_unversioned_assets_keep_their_layout(tmp_path):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    assert store.path("sft_dataset", "train.parquet") == tmp_path / "artifacts" / "sft_dataset" / "train.parquet"
