"""Sources are declared once (assets/source_table.py): everything that lists sources derives from SOURCES."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llama_sft_dagster.assets.source_table import SOURCES, source_table
from support.paths import REPO

PACKAGE = REPO / "llama_sft_dagster"
# where a source may be named: its row, its own module(s) (reader included), the demo corpus generator
ALLOWED = (
    "assets/source_table.py",
    "core/sources/",
    "core/demo/",
)


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def source_name_strings(root: Path, names: list[str], allowed: tuple[str, ...]) -> dict[str, list[int]]:
    """{file: lines} of string constants that spell a source name as an identifier: the name itself or the
    name followed by `_` or `:` (`bitext_raw`, `multiwoz:<dialogue>`), docstrings aside (prose may tell)."""
    spelled = re.compile(r"(?<![A-Za-z/])({})(?:$|[_:])".format("|".join(map(re.escape, names))))
    found = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(allowed):
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        lines = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and spelled.search(node.value)
        ]
        if lines:
            found[rel] = sorted(lines)
    return found


def test_no_source_name_is_spelled_outside_the_table():
    names = [s.name for s in SOURCES]
    assert source_name_strings(PACKAGE, names, ALLOWED) == {}


def test_the_scan_finds_a_spelled_name(tmp_path):
    """The scan is not blind: a module listing sources by hand is found, its docstring is not."""
    (tmp_path / "lister.py").write_text(
        '"""Reads bitext_raw and multiwoz_raw."""\nRAW = ["bitext_raw", "multiwoz_raw"]\nKEY = f"multiwoz:{1}"\n'
    )
    assert source_name_strings(tmp_path, [s.name for s in SOURCES], ALLOWED) == {"lister.py": [2, 2, 3]}


def test_every_row_has_its_assets_resource_and_check_terms():
    from llama_sft_dagster.definitions import build_defs

    defs = build_defs("demo")
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    raw_pairs = defs.resolve_asset_graph().get(dg.AssetKey("raw_pairs"))
    assert {k.to_user_string() for k in raw_pairs.parent_keys} == {s.raw_asset for s in SOURCES}
    for source in SOURCES:
        assert {source.source_asset, source.raw_asset} <= keys
        assert isinstance(defs.resources[source.name], source.resource)


def test_conversation_sources_come_from_the_environment(monkeypatch):
    table = source_table(["shop_chats", "app_chats"])
    assert [s.name for s in table][2:] == ["shop_chats", "app_chats"]
    with pytest.raises(ValueError, match="not a source name"):
        source_table(["Shop Chats"])
    with pytest.raises(ValueError, match="distinct"):
        source_table(["shop", "shop"])


def test_two_product_lines_are_two_lineages(tmp_path):
    """SFT_CONVERSATION_SOURCES=a,b gives each its own source asset, raw asset, resource and version."""
    code = (
        "from llama_sft_dagster.definitions import build_defs\n"
        "d = build_defs('demo'); g = d.resolve_asset_graph()\n"
        "print(sorted(k.to_user_string() for k in g.get_all_asset_keys() if k.to_user_string().startswith('line_')))\n"
        "print(sorted(k for k in d.resources if k.startswith('line_')))\n"
    )
    env = {**__import__("os").environ, "SFT_CONVERSATION_SOURCES": "line_a,line_b", "SFT_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assets, resources = proc.stdout.strip().splitlines()[-2:]
    assert assets == str(["line_a_raw", "line_a_source", "line_b_raw", "line_b_source"])
    assert resources == str(["line_a", "line_b"])


def test_a_new_source_is_a_reader_and_a_row(tmp_path, monkeypatch):
    """What README "Adding a source" asks for and nothing more: a reader (plain pydantic, no Dagster) and a row.
    The Dagster resource (its fields as run config, dg.EnvVar accepted), the observable source asset's version and
    the raw asset all come from them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pydantic import BaseModel, Field

    from llama_sft_dagster.assets.raw import raw_asset
    from llama_sft_dagster.assets.source_table import RawSource
    from llama_sft_dagster.assets.sources import source_versions
    from llama_sft_dagster.core.sources import conversations
    from llama_sft_dagster.resources.artifacts import ArtifactStore

    class TicketsReader(BaseModel):
        """Tickets of a helpdesk."""

        location: str = Field("none", description="where")
        token: str | None = None

        def load(self) -> pa.Table:
            return pa.table({"text": [self.location, self.token]})

        def version(self) -> str:
            return f"v:{self.location}"

    row = RawSource(
        "tickets", TicketsReader, conversations.PAIRS, "raw tickets", "tickets", lambda t: {"n": t.num_rows}
    )
    resource = row.resource
    assert resource.__name__ == "TicketsSource" and issubclass(resource, dg.ConfigurableResource)
    assert row.resource is resource  # one class per reader
    assert source_versions([row], {"tickets": resource(location="a")}) == {"tickets_source": "v:a"}
    monkeypatch.setenv("TICKETS_TOKEN", "secret")
    store = {"artifacts": ArtifactStore(root=str(tmp_path))}

    def raw_text(resource_value, run_config=None) -> list:
        result = dg.materialize([raw_asset(row)], resources={"tickets": resource_value, **store}, run_config=run_config)
        assert result.success
        return pq.read_table(tmp_path / "tickets_raw" / "data.parquet").column("text").to_pylist()

    assert raw_text(resource(location="a", token=dg.EnvVar("TICKETS_TOKEN"))) == ["a", "secret"]
    # the reader's fields are the resource's run config (which, as in Dagster, replaces the constructor's values)
    config = {"resources": {"tickets": {"config": {"location": "b", "token": "t"}}}}
    assert raw_text(resource(), config) == ["b", "t"]
