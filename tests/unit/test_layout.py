"""The package keeps its promises about where things are: `core/` never imports Dagster, so every stage's
logic can be tested on a Python list."""

import subprocess
import sys

from support.paths import REPO

IMPORT_ALL_CORE = """
import importlib, pkgutil, sys
import llama_sft_dagster.core as core
for m in pkgutil.walk_packages(core.__path__, 'llama_sft_dagster.core.'):
    importlib.import_module(m.name)
print(sorted(n for n in sys.modules if n == 'dagster' or n.startswith('dagster.')))
"""


def test_core_imports_no_dagster():
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_CORE], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


HEAVY = ("torch", "transformers", "peft", "trl")
LOAD_DEFINITIONS = f"""
import sys
from llama_sft_dagster.definitions import defs
defs()  # what `dagster dev` does: build the Definitions (of SFT_PROFILE)
from llama_sft_dagster.assets.training import train_adapter
from llama_sft_dagster.core.versions import code_sources
reached = code_sources(train_adapter.op.compute_fn.decorated_fn)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
print('llama_sft_dagster.core.training.monitoring.TrainingMonitor' in reached)
"""


def test_definitions_load_without_the_training_libraries():
    """Loading the code location (and computing every code version, which walks into the training code that
    imports transformers) leaves torch/transformers/peft/trl unimported: they load in the step that trains."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_DEFINITIONS], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    heavy, reached_monitoring = proc.stdout.strip().splitlines()[-2:]
    assert heavy == "[]"
    assert reached_monitoring == "True"  # the walk still reads the training code it no longer imports


def test_definitions_do_not_import_the_cli():
    """The layers run one way: the command-line tools import the code location, never the reverse."""
    code = "import sys; from llama_sft_dagster.definitions import defs; defs(); "
    code += "print(sorted(m for m in sys.modules if m.startswith('llama_sft_dagster.cli')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_asset_bodies_are_short():
    """STYLE.md: an asset body loads, calls, writes and returns metadata, in at most ~40 lines."""
    import ast

    long = {}
    for path in sorted((REPO / "llama_sft_dagster" / "assets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            decorators = [ast.unparse(d).split("(")[0] for d in getattr(node, "decorator_list", [])]
            if isinstance(node, ast.FunctionDef) and any(d.endswith("asset") for d in decorators):
                long[node.name] = node.end_lineno - node.body[0].lineno + 1
    assert "run_report" in long and "adapter_evaluation" in long  # the walk finds the assets
    assert {name: n for name, n in long.items() if n > 40} == {}
