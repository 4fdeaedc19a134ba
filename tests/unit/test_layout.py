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
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL_CORE], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
