"""`make chat` through a pseudo-terminal, as a person types: it loads the champion of the shared `make demo`
run, streams a reply after "model> ", keeps the conversation, and ends on an empty line."""

import os
import pty
import select
import subprocess
import time

import pytest

from support.paths import REPO

pytestmark = [pytest.mark.slow]


def read_until(fd: int, needle: bytes, timeout_s: float) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout_s
    while needle not in seen:
        assert time.monotonic() < deadline, f"no {needle!r} within {timeout_s} s; got: {seen[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk
    return seen


def test_make_chat_talks_to_the_champion(demo_cli_run):
    assert demo_cli_run.returncode == 0, demo_cli_run.stdout[-2000:]
    state = demo_cli_run.state
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        ["make", "-s", "chat", f"STATE={state}", "CHAT_ARGS=--max-new-tokens 24"],
        cwd=REPO,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "DAGSTER_HOME": str(state / "dagster_home"), "SFT_STATE_DIR": str(state)},
        close_fds=True,
    )
    os.close(follower)
    try:
        banner = read_until(leader, b"you> ", 300)
        assert b"(champion)" in banner and b"system prompt:" in banner
        os.write(leader, b"I want to cancel my order\n")
        first = read_until(leader, b"you> ", 300).decode(errors="replace")
        assert "model> " in first
        reply = first.split("model> ", 1)[1].rsplit("you> ", 1)[0].strip()
        assert reply and "<|eot_id|>" not in reply and "assistant" not in reply.split()[:1], reply
        os.write(leader, b"\n")
        assert b"bye" in read_until(leader, b"bye", 60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
