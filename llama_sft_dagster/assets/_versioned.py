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


def derived_code_version(fn, *also) -> str:
    return code_version(fn, *also, configs=config_classes(fn))


def versioned_asset(*, also=(), **asset_kwargs):
    """`@dg.asset(**asset_kwargs)` with `code_version` derived from the function (plus `also`)."""
    def wrap(fn):
        return dg.asset(code_version=derived_code_version(fn, *also), **asset_kwargs)(fn)

    return wrap
