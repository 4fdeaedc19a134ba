"""Resume rules of train_adapter's checkpoints folder (the kill-resume test drives these through a real run)."""

import json

from llama_sft_dagster.core.training.trainer import RUN_CONFIG, resume_checkpoint


def _interrupted(folder, fp, steps=(10, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_CONFIG).write_text(json.dumps({"fingerprint": fp, "completed": False}))
    for s in steps:
        (folder / f"checkpoint-{s}").mkdir()
        (folder / f"checkpoint-{s}" / "trainer_state.json").write_text("{}")  # written last: a complete checkpoint


def test_same_config_resumes_latest_checkpoint(tmp_path):
    _interrupted(tmp_path / "ck", "abc")
    assert resume_checkpoint(tmp_path / "ck", "abc") == str(tmp_path / "ck" / "checkpoint-20")


def test_other_config_starts_fresh_and_clears(tmp_path):
    _interrupted(tmp_path / "ck", "abc")
    assert resume_checkpoint(tmp_path / "ck", "xyz") is None
    assert not list((tmp_path / "ck").glob("checkpoint-*"))
    assert json.loads((tmp_path / "ck" / RUN_CONFIG).read_text()) == {"fingerprint": "xyz", "completed": False}


def test_completed_run_is_not_resumed(tmp_path):
    _interrupted(tmp_path / "ck", "abc")
    (tmp_path / "ck" / RUN_CONFIG).write_text(json.dumps({"fingerprint": "abc", "completed": True}))
    assert resume_checkpoint(tmp_path / "ck", "abc") is None and not list((tmp_path / "ck").glob("checkpoint-*"))


def test_unowned_folder_and_no_checkpoint(tmp_path):
    (tmp_path / "ck" / "checkpoint-5").mkdir(parents=True)  # no run_config.json: unknown owner
    assert resume_checkpoint(tmp_path / "ck", "abc") is None
    assert resume_checkpoint(tmp_path / "ck", "abc") is None  # owned now, but nothing to resume
