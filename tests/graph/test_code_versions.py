"""Code versions follow the code (core/versions.py): an edit to a stage's logic changes that stage's code
version and no other's, a comment-only edit changes nothing, and on a real instance the edited stage is
stale while everything upstream stays fresh.

Each variant is a copy of the package with one file edited, loaded in a fresh interpreter, as a user's
next `dagster dev` would load the edited checkout.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.cli.stale import materialize_stale
from llama_sft_dagster.housekeeping import stale_plan
from support.paths import REPO
from support.staleness_graph import build_defs, bump_code_version, write_sources

pytestmark = pytest.mark.slow  # each variant imports the definitions in a new interpreter (~5 s)

FILTERS = Path("llama_sft_dagster/core/data/filters.py")
PRINT_VERSIONS = (
    "import json; from llama_sft_dagster.definitions import all_assets; "
    "print(json.dumps({k.to_user_string(): v for a in all_assets for k, v in a.code_versions_by_key.items()}))"
)


def find_function(tree: ast.AST, qualname: str) -> ast.FunctionDef:
    """The def of `qualname` ('function' or 'Class.method') in a module's tree."""
    *owner, name = qualname.split(".")
    scope = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == owner[0]) if owner else tree
    return next(n for n in ast.walk(scope) if isinstance(n, ast.FunctionDef) and n.name == name)


def insert_before_return(source: str, function: str, line: str) -> str:
    """`line` inserted inside `function`, just before its last statement, at that statement's indent."""
    node = find_function(ast.parse(source), function)
    last = node.body[-1]
    lines = source.splitlines(keepends=True)
    lines.insert(last.lineno - 1, " " * last.col_offset + line + "\n")
    return "".join(lines)


def code_versions(tmp_path: Path, function: str | None = None, line: str | None = None) -> dict[str, str]:
    root = tmp_path / (f"{function}-{abs(hash(line))}" if function else "original")
    shutil.copytree(
        REPO / "llama_sft_dagster", root / "llama_sft_dagster", ignore=shutil.ignore_patterns("__pycache__")
    )
    if function:
        path = root / FILTERS
        path.write_text(insert_before_return(path.read_text(), function, line))
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-c", PRINT_VERSIONS], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if before[k] != after[k]}


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("code_versions")
    return {
        "original": code_versions(tmp),
        # TokenLimit.decisions is what token_limit_filtered runs on every batch (assets/data_chain.py)
        "token_logic": code_versions(tmp, "TokenLimit.decisions", "out = Decisions(out.reasons, out.details)"),
        "token_comment": code_versions(tmp, "TokenLimit.decisions", "# a comment says why, and changes nothing"),
        "word_logic": code_versions(tmp, "word_count_decisions", "out = Decisions(out.reasons, out.details)"),
    }


def test_a_logic_edit_changes_that_stage_only(versions):
    original = versions["original"]
    assert changed(original, versions["token_logic"]) == {"token_limit_filtered"}
    assert changed(original, versions["word_logic"]) == {"word_count_filtered"}


def test_a_comment_only_edit_changes_nothing(versions):
    assert changed(versions["original"], versions["token_comment"]) == set()


def test_the_edited_stage_is_stale_on_a_real_instance_and_nothing_upstream(versions, tmp_path):
    bitext, multiwoz = write_sources(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_stale(build_defs(tmp_path, bitext, multiwoz), instance).ok
    edited = build_defs(
        tmp_path,
        bitext,
        multiwoz,
        bump_code_version("token_limit_filtered", versions["token_logic"]["token_limit_filtered"]),
    )
    planned = stale_plan.plan(instance, edited.resolve_asset_graph(), whole_chain=False)
    assert [(p.name, p.reasons) for p in planned] == [
        ("token_limit_filtered", ("token_limit_filtered has a new code version",))
    ]
    summary = materialize_stale(edited, instance)
    # the edit keeps the same rows, so the content version is unchanged and nothing below reruns
    assert summary.ok and summary.materialized == ["token_limit_filtered"]
