"""Code versions read the project's source without executing it (core/source_index.py, core/versions.py)."""

from llama_sft_dagster.core import source_index
from llama_sft_dagster.core.source_index import Constant, Definition, External, Module, resolve


def test_names_resolve_from_the_source_files():
    assert resolve("llama_sft_dagster.core.training.masking", "IGNORE_INDEX") == Constant(-100)
    assert resolve("llama_sft_dagster.core.versions", "CHUNK") == Constant(1 << 20)  # `1 << 20` folded
    train = resolve("llama_sft_dagster.assets.training", "train_adapter_into")  # imported: found where defined
    assert isinstance(train, Definition) and train.module == "llama_sft_dagster.assets.adapter_training"
    assert resolve("llama_sft_dagster.assets.training", "dg") == External("dagster")
    core = Module("llama_sft_dagster.core")
    assert source_index.resolve_attribute(core, "versions") == Module("llama_sft_dagster.core.versions")


def test_what_the_walk_does_not_follow():
    # settings classes count by their defaults (code_version(configs=...)), cache wrappers are not functions
    assert resolve("llama_sft_dagster.config.training", "TrainConfig") is None
    assert resolve("llama_sft_dagster.core.data.filters", "language_detector") is None
    assert resolve("llama_sft_dagster.core.data.filters", "no_such_name") is None


def test_a_computed_value_is_read_from_its_imported_module():
    from llama_sft_dagster.assets import data_chain

    assert resolve("llama_sft_dagster.assets.data_chain", "LAST_STAGE") == Constant(data_chain.LAST_STAGE)


def test_a_helper_defined_below_the_asset_counts():
    """The walk once read the asset module's namespace while it was still executing, so a helper defined
    below the asset was missed; read from the file, it counts."""
    from llama_sft_dagster.assets.raw import raw_pairs
    from llama_sft_dagster.core.versions import code_sources

    assert "llama_sft_dagster.assets.raw.pairs_metadata" in code_sources(raw_pairs.op.compute_fn.decorated_fn)


def test_module_paths_are_found_without_importing():
    assert source_index.module_path("llama_sft_dagster.core.training.monitoring").name == "monitoring.py"
    assert source_index.module_path("llama_sft_dagster.core").name == "__init__.py"
    assert source_index.module_path("transformers") is None
