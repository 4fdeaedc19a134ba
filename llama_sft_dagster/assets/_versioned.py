"""`versioned_asset`: `dg.asset` with a code version derived from the code it runs (core/versions.py).

The version hashes the decorated function, every project function it reaches, and its config class's
defaults, so an edit to a stage's logic marks that stage stale without a hand-bumped string.
"""
import inspect

import dagster as dg

from llama_sft_dagster.core.versions import code_version


def config_classes(fn) -> list[type]:
    param = inspect.signature(fn, eval_str=True).parameters.get("config")
    return [param.annotation] if param is not None and isinstance(param.annotation, type) else []


def versioned_asset(**asset_kwargs):
    """`@dg.asset(**asset_kwargs)` with `code_version` derived from the function and its config."""
    def wrap(fn):
        return dg.asset(code_version=code_version(fn, configs=config_classes(fn)), **asset_kwargs)(fn)

    return wrap
