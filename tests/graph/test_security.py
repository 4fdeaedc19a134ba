"""Security: the hub token never reaches disk, no remote code by default, safetensors for weights and
Parquet for data (the Trainer's resume state is the one documented exception), the web UI on 127.0.0.1.

Output paths from config cannot leave the artifact root: core `confined` is tested in
tests/unit/test_storage_accounting.py::test_paths_are_confined_to_the_root; the resource-level case is below.
"""

import re
import zipfile
from pathlib import Path

import pytest

from llama_sft_dagster.assets.data_chain import FIRST_INPUT, STAGE_NAMES
from llama_sft_dagster.config.training import TrainConfig
from llama_sft_dagster.core.data.storage import ArtifactPathError
from llama_sft_dagster.resources.artifacts import ArtifactStore
from support.demo_state import FAKE_TOKEN, build_demo_state
from support.paths import REPO

# What transformers' Trainer writes into checkpoint-N for resume (transformers 5.24 trainer.py:
# OPTIMIZER_NAME, SCHEDULER_NAME, SCALER_NAME, rng_state.pth, TRAINING_ARGS_NAME). They are torch pickles;
# the Trainer loads the first four with torch.load(weights_only=True) and never loads training_args.bin.
TRAINER_RESUME_FILES = {"optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth", "training_args.bin"}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy"}


@pytest.fixture(scope="module")
def demo_state(tmp_path_factory):
    return build_demo_state(tmp_path_factory)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file under `root` whose bytes contain `needle` (read in chunks; overlaps handled)."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        tail = b""
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                if needle in tail + chunk:
                    hits.append(path)
                    break
                tail = chunk[-len(needle) :]
    return hits


def test_grep_finds_a_planted_token(tmp_path):
    """The leak check below can fail: it finds the token in text, in binary and across a chunk boundary."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "clean.txt").write_text("nothing here")
    (tmp_path / "a" / "log.txt").write_text(f"token={FAKE_TOKEN}\n")
    (tmp_path / "blob.db").write_bytes(b"\x00" * ((1 << 20) - 5) + FAKE_TOKEN.encode() + b"\x00")
    assert files_containing(tmp_path, FAKE_TOKEN.encode()) == [tmp_path / "a" / "log.txt", tmp_path / "blob.db"]


@pytest.mark.slow
def test_hub_token_from_env_is_never_written(demo_state):
    """Whole graph (`make demo`'s command, raw -> champion_model) with a fake HF_TOKEN in the environment,
    which the code location gives HuggingFaceHub as dg.EnvVar("HF_TOKEN"), on a persistent Dagster instance:
    no file under the state folder holds it."""
    files = [p for p in demo_state.rglob("*") if p.is_file()]
    names = {p.relative_to(demo_state).parts[0] for p in files}
    assert {"artifacts", "dagster_home", "mlflow.db"} <= names, names  # every store was written
    assert any("checkpoint-" in str(p) for p in files) and any(
        p.suffix == ".db" for p in files if "dagster_home" in str(p)
    )
    assert list((demo_state / "artifacts" / "train_adapter").rglob("events.out.tfevents.*"))
    assert files_containing(demo_state, FAKE_TOKEN.encode()) == []
    assert files_containing(demo_state, FAKE_TOKEN[3:].encode()) == []  # nor without its hf_ prefix


def test_hub_token_sent_to_the_hub_is_never_written(isolated_state, monkeypatch):
    """The full profile's base_tokenizer (its first hub call) asks the hub (a local 127.0.0.1 stand-in
    answering as the hub does: the model's info, then 403 GatedRepo for the download) with HF_TOKEN from
    dg.EnvVar, on a persistent instance: the token goes out in the Authorization header only, and no file the
    run wrote holds it. The gpu resource allows the CPU, so the CPU refusal does not stop it first."""
    import dagster as dg
    import huggingface_hub.constants

    from llama_sft_dagster.config.profiles import profile_defaults
    from llama_sft_dagster.definitions import build_defs
    from llama_sft_dagster.resources.gpu import GpuResource
    from support.demo_state import instance_at
    from support.fake_hub import Reply, fake_hub, repo_info

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    full = build_defs("full")
    gpu = GpuResource(**{**profile_defaults(GpuResource, "full"), "allow_cpu_training": True})
    defs = dg.Definitions(assets=full.assets, resources={**full.resources, "gpu": gpu})
    job = defs.resolve_implicit_global_asset_job_def()
    model = "meta-llama/Llama-3.1-8B-Instruct"
    with fake_hub([repo_info(model, gated="manual")], default=Reply(403, "GatedRepo")) as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        with instance_at(isolated_state / "dagster_home") as instance:
            result = job.execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey("base_tokenizer")], raise_on_error=False
            )
            error = result.get_step_failure_events()[0].event_specific_data.error
    chain = []
    while error is not None:
        chain.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    assert not result.success and any(c.startswith("HubTokenMissing:") for c in chain), chain
    assert any("HF_TOKEN has no access" in c for c in chain)
    assert len(hub.asked) >= 2 and hub.tokens == [f"Bearer {FAKE_TOKEN}"] * len(hub.asked)  # the hub was asked
    files = [p for p in isolated_state.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)  # the run's event log is among the files scanned
    assert files_containing(isolated_state, FAKE_TOKEN.encode()) == []
    assert files_containing(isolated_state, FAKE_TOKEN[3:].encode()) == []


def test_trust_remote_code_is_off_by_default(tmp_path):
    from llama_sft_dagster.config.training import SftDatasetConfig
    from llama_sft_dagster.core.training.device import MachineFacts, plan_device
    from llama_sft_dagster.core.training.trainer import build_sft_config

    assert TrainConfig().trust_remote_code is False
    cpu = plan_device("cpu", MachineFacts(False))
    assert build_sft_config(tmp_path, TrainConfig(), SftDatasetConfig().model_dump(), cpu).trust_remote_code is False
    # no code path switches it on by itself
    literal = re.compile(r"trust_remote_code\s*=\s*True")
    offenders = [p for p in (REPO / "llama_sft_dagster").rglob("*.py") if literal.search(p.read_text())]
    assert offenders == []


class _Spy:
    """Stands in for a transformers Auto class: records from_pretrained kwargs, then calls the real one."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def from_pretrained(self, *args, **kwargs):
        self.calls.append(kwargs)
        return self.real.from_pretrained(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_reaches_every_model_load(demo_state, tmp_path, monkeypatch, trust):
    import transformers

    from llama_sft_dagster.core.training.device import MachineFacts, plan_device
    from llama_sft_dagster.core.training.merge import merge_lora
    from llama_sft_dagster.core.training.trainer import load_base

    model_spy, tok_spy = _Spy(transformers.AutoModelForCausalLM), _Spy(transformers.AutoTokenizer)
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", model_spy)
    monkeypatch.setattr(transformers, "AutoTokenizer", tok_spy)
    load_base(
        demo_state / "artifacts" / "base_model" / "model",
        plan_device("cpu", MachineFacts(cuda_available=False, device_name="cpu")),
        trust,
    )
    adapter = ArtifactStore(root=str(demo_state / "artifacts")).path("train_adapter", "adapter")
    merge_lora(adapter, tmp_path / "merged", trust_remote_code=trust)
    assert [c["trust_remote_code"] for c in model_spy.calls] == [trust, trust]  # load_base, merge_lora
    assert tok_spy.calls[0]["trust_remote_code"] is trust
    # the other tokenizer loads read our own saved folders and never pass trust_remote_code=True
    assert all(c.get("trust_remote_code", False) is False for c in tok_spy.calls[1:])


def _is_pickle(path: Path) -> bool:
    head = path.read_bytes()[:4]
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return True  # a pickle stream (protocol 2-5)
    if head == b"PK\x03\x04":  # torch.save's zip format holds data.pkl
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(".pkl") for n in z.namelist())
    return False


@pytest.mark.slow
def test_weights_are_safetensors_and_data_is_parquet(demo_state):
    root = demo_state / "artifacts"
    pickles = [p for p in root.rglob("*") if p.is_file() and (p.suffix in PICKLE_SUFFIXES or _is_pickle(p))]
    assert pickles, "the Trainer's checkpoints should hold its resume state; nothing found means the scan is broken"
    for p in pickles:
        rel = p.relative_to(root)
        assert rel.parts[:2] == ("train_adapter", "checkpoints") and re.fullmatch(r"checkpoint-\d+", rel.parts[2]), rel
        assert p.name in TRAINER_RESUME_FILES, rel
    store = ArtifactStore(root=str(root))  # train_adapter and merged_model are versioned: read through `current`
    for folder in (
        root / "base_model" / "model",
        store.path("train_adapter", "adapter"),
        store.path("merged_model", "model"),
    ):
        assert list(folder.glob("*.safetensors")), folder
    # every data asset holds Parquet only (sft_dataset also its format.json)
    data_assets = [
        "bitext_raw",
        "multiwoz_raw",
        FIRST_INPUT,
        *STAGE_NAMES,
        "train_pairs",
        "validation_pairs",
        "sft_dataset",
    ]
    for name in data_assets:
        suffixes = {p.suffix for p in (root / name).rglob("*") if p.is_file()}
        assert suffixes and suffixes <= {".parquet", ".json"}, (name, suffixes)


def test_web_ui_binds_to_localhost_unless_told(monkeypatch, tmp_path):
    from llama_sft_dagster.cli import ui

    launched = []
    monkeypatch.setattr(ui, "ensure_dagster_home", lambda: tmp_path)
    monkeypatch.setattr(ui.os, "execv", lambda exe, cmd: launched.append(cmd))
    monkeypatch.setattr(ui.signal, "signal", lambda *a: None)  # keep pytest's own handlers
    ui.main([])
    ui.main(["--host", "0.0.0.0", "--port", "3001"])
    host_of = [cmd[cmd.index("-h") + 1] for cmd in launched]
    assert host_of == ["127.0.0.1", "0.0.0.0"]
    assert launched[1][launched[1].index("-p") + 1] == "3001"
    assert re.search(r"^UI_HOST \?= 127\.0\.0\.1$", (REPO / "Makefile").read_text(), re.M)  # `make ui` too


@pytest.mark.parametrize("name", ["../outside", "a/../../b", "/etc"])
def test_artifact_store_paths_stay_under_the_root(tmp_path, name):
    store = ArtifactStore(root=str(tmp_path / "artifacts"))
    with pytest.raises(ArtifactPathError, match="escapes the artifact root"):
        store.path(name)
    with pytest.raises(ArtifactPathError, match="escapes the artifact root"):
        store.asset_dir(name)
