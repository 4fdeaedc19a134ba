"""Hugging Face hub calls with timeouts, retries, a revision cache, and a one-line answer for gated repos.

- `cached_revision`: the commit sha a revision resolves to, reused for `max_age_s` from a small JSON
  file, so the raw-data sensor and `sft-materialize-stale` do not ask the hub on every tick.
- `resolve_model`: the model's commit sha; a gated repository (the Llama weights) without a token
  fails with one line saying what to set. Public data needs no token.
- `hub_retrying`: timeouts, connection errors, 429 and 5xx are retried with backoff; 401/403/404 are not.
`api` is an `HfApi`-like object (tests pass a fake one: no network here).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from llama_sft_dagster.core.sources.download import TRANSIENT_HTTP, retrying

T = TypeVar("T")
HUB_TIMEOUT_S = 30.0


class HubTokenMissing(PermissionError):
    """A gated hub repository was asked for without a token (or with one that has no access)."""


def hub_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: timeouts, dropped connections, 408/429/5xx."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status in TRANSIENT_HTTP
    try:  # huggingface_hub 2.x talks through httpx2 (1.x: httpx); timeouts and resets are TransportErrors
        import httpx2 as http_client
    except ImportError:  # pragma: no cover
        import httpx as http_client
    return isinstance(exc, (http_client.TransportError, TimeoutError, ConnectionError))


def hub_retrying(
    call: Callable[[], T],
    what: str,
    retries: int = 4,
    backoff_s: float = 2.0,
    sleep: Callable[[float], None] | None = None,
) -> T:
    return retrying(call, retries=retries, backoff_s=backoff_s, transient=hub_transient, what=what, sleep=sleep)


def cached_revision(
    key: str, resolve: Callable[[], str], max_age_s: float, cache_file: Path, now: Callable[[], float] = time.time
) -> str:
    """`resolve()` at most once per `max_age_s` for `key`; the answer is kept in `cache_file` (JSON)."""
    cache_file = Path(cache_file)
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if max_age_s > 0 and isinstance(hit, dict) and 0 <= now() - hit.get("resolved_at", -1e18) < max_age_s:
        return hit["sha"]
    sha = resolve()
    cache[key] = {"sha": sha, "resolved_at": now()}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=cache_file.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(cache, tmp, indent=1, sort_keys=True)
    os.replace(tmp.name, cache_file)  # atomic: a concurrent reader sees the old or the new file
    return sha


def gated_message(repo_id: str, has_token: bool) -> str:
    if has_token:
        return (
            f"{repo_id} is a gated hub repository and HF_TOKEN has no access to it: accept its license on the "
            "model page with the account of that token"
        )
    return (
        f"{repo_id} is a gated hub repository: set HF_TOKEN to a read token of an account that accepted "
        "its license (public data needs no token)"
    )


def resolve_model(
    repo_id: str,
    revision: str | None,
    token: str | None,
    api=None,
    timeout: float = HUB_TIMEOUT_S,
    retries: int = 4,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Commit sha of `revision` of model `repo_id`; one line naming HF_TOKEN for a gated repo without access."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError

    api = api or HfApi()
    try:
        info = hub_retrying(
            lambda: api.model_info(repo_id, revision=revision, timeout=timeout, token=token),
            f"hub model {repo_id}",
            retries,
            sleep=sleep,
        )
    except GatedRepoError as exc:
        raise HubTokenMissing(gated_message(repo_id, bool(token))) from exc
    if getattr(info, "gated", False) and not token:
        raise HubTokenMissing(gated_message(repo_id, False))
    return info.sha
