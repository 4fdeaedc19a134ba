"""Hub calls with a fake client (no hub here): revision cache, retries, gated repos and HF_TOKEN."""

import json
from types import SimpleNamespace

import dagster as dg
import httpx2 as httpx  # huggingface_hub 2.x's HTTP client
import pytest

from llama_sft_dagster.core.sources import hub, versions


class FakeApi:
    """HfApi's model_info / dataset_info; `fail` holds exceptions raised by the first calls."""

    def __init__(self, sha="abc123", gated=False, fail=()):
        self.sha, self.gated, self.fail, self.calls = sha, gated, list(fail), []

    def _info(self, repo_id, **kw):
        self.calls.append((repo_id, kw))
        if self.fail:
            raise self.fail.pop(0)
        return SimpleNamespace(sha=self.sha, gated=self.gated)

    model_info = dataset_info = _info


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)


def test_revision_is_asked_once_per_interval(tmp_path):
    api, cache, clock = FakeApi(), tmp_path / "cache.json", [1000.0]

    def resolve():
        return versions.hub_revision("org/data", None, None, api)

    for t in (1000.0, 1500.0, 1899.0):
        clock[0] = t
        assert hub.cached_revision("k", resolve, 900, cache, now=lambda: clock[0]) == "abc123"
    assert len(api.calls) == 1
    clock[0] = 1901.0
    api.sha = "def456"
    assert hub.cached_revision("k", resolve, 900, cache, now=lambda: clock[0]) == "def456" and len(api.calls) == 2
    assert json.loads(cache.read_text())["k"] == {"sha": "def456", "resolved_at": 1901.0}
    hub.cached_revision("k", resolve, 0, cache)  # 0: always ask
    assert len(api.calls) == 3


def test_source_version_of_a_hub_dataset_uses_the_cache(monkeypatch):
    from llama_sft_dagster.resources.data_sources import BitextSource

    api = FakeApi()
    monkeypatch.setattr(versions, "hub_revision", lambda *a, **k: api._info("org/data").sha)
    source = BitextSource(location="hf://org/data")
    assert source.version() == source.version() == "hub:abc123"  # e.g. two sensor ticks
    assert len(api.calls) == 1


def test_timeouts_and_5xx_are_retried_then_answered():
    response = httpx.Response(503, request=httpx.Request("GET", "http://hub.invalid"))
    from huggingface_hub.errors import HfHubHTTPError

    api = FakeApi(fail=[httpx.ConnectTimeout("slow"), HfHubHTTPError("busy", response=response)])
    assert versions.hub_revision("org/data", None, None, api) == "abc123" and len(api.calls) == 3
    assert api.calls[0][1]["timeout"] == hub.HUB_TIMEOUT_S


def test_permanent_errors_are_not_retried_and_retries_end():
    api = FakeApi(fail=[ValueError("404-like")])
    with pytest.raises(ValueError):
        versions.hub_revision("org/data", None, None, api)
    assert len(api.calls) == 1
    api = FakeApi(fail=[httpx.ReadTimeout("slow")] * 10)
    with pytest.raises(hub.retrying.__globals__["DownloadError"], match="failed after 5 attempts"):
        versions.hub_revision("org/data", None, None, api)


def test_gated_model_without_token_is_one_line_naming_hf_token():
    with pytest.raises(hub.HubTokenMissing) as err:
        hub.resolve_model("meta-llama/Llama-3.1-8B-Instruct", None, None, api=FakeApi(gated="manual"))
    assert "\n" not in str(err.value) and "set HF_TOKEN" in str(err.value)
    assert hub.resolve_model("meta-llama/Llama-3.1-8B-Instruct", None, "hf_x", api=FakeApi(gated="manual")) == "abc123"
    assert hub.resolve_model("public/model", None, None, api=FakeApi()) == "abc123"  # public: no token needed


def test_gated_model_with_a_token_without_access_says_so():
    from huggingface_hub.errors import GatedRepoError

    response = httpx.Response(403, request=httpx.Request("GET", "http://hub.invalid"))
    api = FakeApi(fail=[GatedRepoError("gated", response=response)])
    with pytest.raises(hub.HubTokenMissing, match="HF_TOKEN has no access"):
        hub.resolve_model("meta-llama/Llama-3.1-8B-Instruct", None, "hf_x", api=api)


@pytest.mark.parametrize("token", [None, "hf_fake"])
def test_definitions_need_hf_token_only_when_it_is_set(monkeypatch, token):
    from llama_sft_dagster.definitions import build_resources

    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    resources = build_resources()
    assert resources["bitext"].hf_token is None  # a public dataset
    hub_token = resources["hub"].token
    # an EnvVar, resolved at run time: the token's value is never in the definitions
    assert (hub_token is None) if token is None else (isinstance(hub_token, dg.EnvVar) and hub_token == "HF_TOKEN")
