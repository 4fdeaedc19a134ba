"""A full or read-only disk while training writes checkpoints, saves the adapter, or saves the merged model: the
error names the path, and the previous adapter / merged model stays whole. Real small tmpfs mounts (root only),
real tiny models."""

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from llama_sft_dagster.core.data.storage import ArtifactPathError
from llama_sft_dagster.core.training import merge
from llama_sft_dagster.core.training.trainer import fit, save_best_adapter
from support.adapters import make_adapter, tiny_base
from support.tiny_lora_training import pad_collate, random_examples, tiny_lora_model


def _mount(folder: Path, size: str, *options: str) -> None:
    opts = ",".join([f"size={size}", *options])
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")


@pytest.fixture
def small_disk(tmp_path):
    """mount(size) -> a fresh tmpfs folder of that size; all are unmounted at the end."""
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        _mount(folder, size)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_base(tmp_path_factory.mktemp("base"))  # ~650 KB of weights


def test_merge_on_a_full_disk_names_the_path_and_keeps_the_previous_model(base, tmp_path, small_disk):
    disk = small_disk("1000k")  # room for one merged model (~650 KB), not for the new one beside it
    first = merge.merge_lora(make_adapter(base, tmp_path / "a1", seed=1), disk / "merged")
    before = _digest(first)
    with pytest.raises(ArtifactPathError, match=rf"could not write '{disk / 'merged'}': No space left on device"):
        merge.merge_lora(make_adapter(base, tmp_path / "a2", seed=2), disk / "merged")
    assert _digest(first) == before
    assert json.loads((first / merge.MERGE_INFO).read_text())["adapter_digest"] == merge.adapter_digest(tmp_path / "a1")
    assert sorted(p.name for p in disk.iterdir()) == ["merged"]  # no temporary folder left


def test_merge_into_a_read_only_folder_names_it(base, tmp_path, small_disk):
    disk = small_disk("2m")
    first = merge.merge_lora(make_adapter(base, tmp_path / "a1", seed=1), disk / "merged")
    before = _digest(first)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    with pytest.raises(ArtifactPathError, match=rf"'{disk}' is not writable: Read-only file system"):
        merge.merge_lora(make_adapter(base, tmp_path / "a2", seed=2), disk / "merged")
    assert _digest(first) == before


def test_saving_the_adapter_on_a_full_disk_keeps_the_previous_one(base, tmp_path, small_disk):
    from transformers import AutoTokenizer

    disk = small_disk("120k")  # one adapter with its tokenizer (~45 KB + tokenizer), not two
    tokenizer = AutoTokenizer.from_pretrained(base)
    # the one-process view of a Trainer that save_best_adapter uses (it also runs under torchrun ranks)
    accelerator = SimpleNamespace(unwrap_model=lambda model: model, wait_for_everyone=lambda: None)
    trainer = SimpleNamespace(
        model=tiny_lora_model(seed=0),
        processing_class=tokenizer,
        accelerator=accelerator,
        is_world_process_zero=lambda: True,
    )
    save_best_adapter(trainer, disk / "adapter")
    before = _digest(disk / "adapter")
    trainer.model = tiny_lora_model(seed=1)
    with pytest.raises(ArtifactPathError, match=rf"could not write '{disk / 'adapter'}': No space left on device"):
        save_best_adapter(trainer, disk / "adapter")
    assert _digest(disk / "adapter") == before


def test_checkpoints_on_a_full_disk_name_the_folder(tmp_path, small_disk):
    from transformers import Trainer, TrainingArguments

    disk = small_disk("64k")  # less than one checkpoint (adapter + optimizer state)
    out = disk / "checkpoints"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        save_steps=1,
        save_strategy="steps",
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(model=tiny_lora_model(), args=args, train_dataset=random_examples(), data_collator=pad_collate)
    with pytest.raises(ArtifactPathError, match=rf"could not write checkpoints to '{out}': No space left on device"):
        fit(trainer, out, "fingerprint")
