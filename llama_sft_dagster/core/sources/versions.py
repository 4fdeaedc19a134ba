"""Versions of the raw sources, so new upstream data makes the chain stale (Dagster-free).

- a local file or folder: a hash of its bytes (and, for a folder, its file names); a glob: of what it matches;
- a hub dataset: the commit sha its revision resolves to (needs the network);
- a published archive: its URL, which the project pins to a commit (core/sources/multiwoz.py), so it names the bytes;
- the generated demo corpus: its seed and the generator's source code.
"""

from pathlib import Path

from llama_sft_dagster.core.versions import file_version, fingerprint, folder_version

# the generator of the demo corpus: its code is part of the demo data's identity
DEMO_GENERATOR_DIR = Path(__file__).parents[1] / "demo"
DEMO_GENERATOR_FILES = ("corpus.py", "dialogues.py", "text.py")


def local_version(path: str | Path) -> str:
    """Content hash of a local source file or folder; a clear error when it does not exist."""
    path = Path(path)
    if path.is_file():
        return file_version(path)
    if path.is_dir():
        return folder_version(path)
    raise FileNotFoundError(f"raw source {str(path)!r} does not exist")


def glob_version(location: str) -> str:
    """`local_version` of a file or folder; for a glob pattern, a hash of the names and bytes it matches."""
    from llama_sft_dagster.core.sources.files import expand

    if Path(location).exists():
        return local_version(location)
    return fingerprint({str(path): file_version(path) for path, _ in expand(location)})


def demo_version(seed: int) -> str:
    """The demo corpus is a pure function of its seed and its generator's code."""
    return fingerprint(
        {"seed": seed, **{name: file_version(DEMO_GENERATOR_DIR / name) for name in DEMO_GENERATOR_FILES}}
    )


def hub_revision(dataset_id: str, revision: str | None, token: str | None = None, api=None, sleep=None) -> str:
    """Commit sha that `revision` (None = default branch) of a hub dataset resolves to (timeout, retries;
    `sleep` waits out the backoff, time.sleep unless given)."""
    from huggingface_hub import HfApi

    from llama_sft_dagster.core.sources.hub import HUB_TIMEOUT_S, hub_retrying

    api = api or HfApi()
    return hub_retrying(
        lambda: api.dataset_info(dataset_id, revision=revision, token=token, timeout=HUB_TIMEOUT_S).sha,
        f"hub dataset {dataset_id}",
        sleep=sleep,
    )


def cached_hub_revision(
    dataset_id: str, revision: str | None, token: str | None, max_age_s: float, cache_file: Path, api=None
) -> str:
    """`hub_revision`, asked at most once per `max_age_s` (the answer is kept in `cache_file`)."""
    from llama_sft_dagster.core.sources.hub import cached_revision

    return cached_revision(
        f"dataset:{dataset_id}@{revision or 'default'}",
        lambda: hub_revision(dataset_id, revision, token, api),
        max_age_s,
        cache_file,
    )


# ---- what every source's reader shares (core/sources/<kind>.py: a `...Reader` with `load()` and `version()`) ----
NO_SOURCE = "none"  # location of a source a run leaves out: no rows, every count downstream is 0 for it
HUB_PREFIX = "hf://"


def fixed_version(location: str, demo_seed: int) -> str | None:
    """The version of a source that reads nothing or the generated demo corpus; None for any other location."""
    if location == NO_SOURCE:
        return NO_SOURCE
    return f"demo:{demo_version(demo_seed)}" if location == "demo" else None


def hub_revision_cache() -> Path:  # follows SFT_STATE_DIR, so tests and checkouts keep their own
    from llama_sft_dagster.config.profiles import state_dir

    return state_dir() / "cache" / "hub_revisions.json"


def hub_location_version(location: str, revision: str | None, token: str | None, max_age_s: float) -> str:
    """`hub:<sha>` of an `hf://<dataset id>` location, the hub asked at most once per `max_age_s`."""
    dataset_id = location[len(HUB_PREFIX) :]
    return f"hub:{cached_hub_revision(dataset_id, revision, token, max_age_s, hub_revision_cache())}"
