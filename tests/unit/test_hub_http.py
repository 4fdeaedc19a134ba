"""The real hub client (huggingface_hub's HfApi) against a local HTTP server on 127.0.0.1 answering as the hub
does: 401/403/404 fail at once, 429 and 5xx are retried with the 2/4/8/16 s backoff (the sleeps recorded,
not slept), and the token goes out only in the Authorization header."""

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from llama_sft_dagster.core.sources import hub, versions
from llama_sft_dagster.core.sources.download import DownloadError
from support.fake_hub import SHA, Reply, fake_hub, repo_info

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TOKEN = "hf_fakeTokenForTheLocalHub0123456789"


def resolve(server, sleeps, token=TOKEN, retries=4):
    return hub.resolve_model(MODEL, None, token, api=HfApi(endpoint=server.url), retries=retries, sleep=sleeps.append)


@pytest.mark.parametrize(
    "reply, error",
    [
        (Reply(401), HfHubHTTPError),  # e.g. an invalid token
        (Reply(401, "RepoNotFound"), RepositoryNotFoundError),  # the hub's answer for a private repo
        (Reply(403), HfHubHTTPError),
        (Reply(404, "RepoNotFound"), RepositoryNotFoundError),
    ],
    ids=["401", "401-repo", "403", "404"],
)
def test_client_errors_fail_at_once_without_a_retry(reply, error):
    sleeps = []
    with fake_hub([reply], default=repo_info(MODEL)) as server:
        with pytest.raises(error) as err:
            resolve(server, sleeps)
    assert err.value.response.status_code == reply.status
    assert len(server.asked) == 1 and sleeps == []


def test_gated_repo_with_a_token_without_access_is_one_line():
    sleeps = []
    with fake_hub([Reply(403, "GatedRepo")], default=repo_info(MODEL)) as server:
        with pytest.raises(hub.HubTokenMissing, match="HF_TOKEN has no access") as err:
            resolve(server, sleeps)
    assert "\n" not in str(err.value) and len(server.asked) == 1 and sleeps == []


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_retried_with_backoff(status):
    sleeps = []
    with fake_hub([Reply(status), Reply(status), Reply(status), repo_info(MODEL)]) as server:
        assert resolve(server, sleeps) == SHA
    assert sleeps == [2.0, 4.0, 8.0] and len(server.asked) == 4
    assert {path for path, _ in server.asked} == {f"/api/models/{MODEL}"}


def test_retries_end_with_one_error_naming_the_repo():
    sleeps = []
    with fake_hub([], default=Reply(503)) as server:
        with pytest.raises(DownloadError, match=f"hub model {MODEL}: failed after 5 attempts"):
            resolve(server, sleeps)
    assert sleeps == [2.0, 4.0, 8.0, 16.0] and len(server.asked) == 5
    with fake_hub([], default=Reply(503)) as server:
        with pytest.raises(DownloadError, match="failed after 2 attempts"):
            resolve(server, sleeps := [], retries=1)  # the hub resource's `retries`
    assert sleeps == [2.0] and len(server.asked) == 2


def test_the_token_is_sent_as_a_bearer_header_and_only_when_set():
    with fake_hub([repo_info(MODEL), repo_info(MODEL)]) as server:
        assert resolve(server, [], token=TOKEN) == SHA
        assert resolve(server, [], token=None) == SHA  # a public repository needs none
    assert server.tokens == [f"Bearer {TOKEN}", None]
    assert all(TOKEN not in path for path, _ in server.asked)


def test_gated_repo_answered_without_a_token_names_hf_token():
    with fake_hub([repo_info(MODEL, gated="manual")]) as server:
        with pytest.raises(hub.HubTokenMissing, match="set HF_TOKEN"):
            resolve(server, [], token=None)


def test_dataset_revision_through_the_hub_api_retries_and_answers():
    sleeps = []
    with fake_hub([Reply(429), repo_info("bitext/x")]) as server:
        sha = versions.hub_revision("bitext/x", None, None, api=HfApi(endpoint=server.url), sleep=sleeps.append)
    assert sha == SHA and sleeps == [2.0]
    assert [path for path, _ in server.asked] == ["/api/datasets/bitext/x"] * 2
