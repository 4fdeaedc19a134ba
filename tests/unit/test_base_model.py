"""Demo base model: deterministic, offline-loadable, Llama-3 special tokens and template; hub resolver."""

import pytest

from llama_sft_dagster.core.training import base_model as bm
from llama_sft_dagster.core.versions import folder_version

TEXTS = [
    f"I need help with order {i}, the parcel did not arrive. Sorry to hear that, let me check." for i in range(300)
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return bm.build_demo_base_model(TEXTS, tmp_path_factory.mktemp("base"), seed=0, vocab_size=600)


def test_deterministic(built, tmp_path):
    again = bm.build_demo_base_model(iter(TEXTS), tmp_path / "again", seed=0, vocab_size=600)
    assert folder_version(again) == folder_version(built)
    other = bm.build_demo_base_model(TEXTS, tmp_path / "seed1", seed=1, vocab_size=600)
    assert folder_version(other) != folder_version(built)


def test_files_are_safetensors_and_load_offline(built, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoTokenizer

    assert (built / "model.safetensors").exists() and not list(built.glob("*.bin"))
    tok = AutoTokenizer.from_pretrained(built)
    config = AutoConfig.from_pretrained(built)
    assert (
        config.model_type,
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.num_key_value_heads,
    ) == ("llama", 64, 2, 4, 2)
    assert config.vocab_size == len(tok)
    ids = tok("order parcel").input_ids
    assert ids[0] == tok.convert_tokens_to_ids(bm.BEGIN) and ids.count(ids[0]) == 1
    for special in bm.SPECIAL_TOKENS:
        assert len(tok(special, add_special_tokens=False).input_ids) == 1, special
    assert tok.pad_token == bm.PAD and tok.pad_token_id not in (tok.eos_token_id, tok.bos_token_id)
    assert tok.eos_token == bm.EOT


def test_template_has_generation_markers_and_assistant_mask(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    msgs = [{"role": "user", "content": "order"}, {"role": "assistant", "content": "parcel"}]
    out = tok.apply_chat_template(msgs, return_assistant_tokens_mask=True, return_dict=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "parcel<|eot_id|>"


def test_hub_resolver_pins_the_commit_and_fetches_safetensors_only(monkeypatch, tmp_path):
    """The hub cannot be reached here: huggingface_hub is replaced by a recorder (allowed mock) whose download
    writes the real Llama-3.1 tokenizer (no pad token, as on the hub)."""
    import shutil

    import huggingface_hub
    from transformers import AutoTokenizer

    from support.paths import shared_file

    tokenizer_dir = shared_file("llama31_tokenizer")
    calls = {}

    class Api:
        def model_info(self, model_id, revision=None, timeout=None, token=None):
            calls["info"] = (model_id, revision, token, timeout)
            return type("Info", (), {"sha": "a" * 40, "gated": "manual"})()

    def snapshot_download(repo_id, **kw):
        calls["download"] = (repo_id, kw)
        shutil.copytree(tokenizer_dir, kw["local_dir"], dirs_exist_ok=True)
        return str(kw["local_dir"])

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    path, sha = bm.resolve_hub_base_model("meta-llama/Llama-3.1-8B-Instruct", None, "tok", tmp_path)
    assert sha == "a" * 40 and path == tmp_path and calls["info"][2] == "tok" and calls["info"][3] > 0
    assert AutoTokenizer.from_pretrained(path).pad_token == "<|finetune_right_pad_id|>"  # never <|eot_id|>
    repo, kw = calls["download"]
    assert kw["revision"] == sha and not any(p.endswith((".bin", ".pt", ".pth")) for p in kw["allow_patterns"])
    assert "*.safetensors" in kw["allow_patterns"]
