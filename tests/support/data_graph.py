"""The data graph (raw -> split) materialized with real Dagster on given sources."""

import dagster as dg

from llama_sft_dagster.assets.data_chain import STAGE_NAMES
from llama_sft_dagster.definitions import all_assets, all_checks
from llama_sft_dagster.resources.data_sources import BitextSource, MultiwozSource
from support.resources import project_resources

FILTER_STAGES = STAGE_NAMES  # the declared chain (assets/data_chain.py)
DATA_SELECTION = dg.AssetSelection.assets("train_pairs", "validation_pairs").upstream()


def materialize_data_graph(root, bitext: BitextSource, multiwoz: MultiwozSource) -> dg.ExecuteInProcessResult:
    """Raw -> split on the given sources; files land in `root/artifacts`."""
    result = dg.materialize(
        assets=[*all_assets, *all_checks],
        selection=DATA_SELECTION,
        resources=project_resources(root, bitext=bitext, multiwoz=multiwoz),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result
