"""`versioned_asset`: `dg.asset` with a code version derived from the code it runs (core/versions.py), and
`profiled_check`: `dg.asset_check`; both can be built again for another profile (`for_profile`).

The version hashes the decorated function, every project function it reaches, and its config class's
defaults, so an edit to a stage's logic marks that stage stale without a hand-bumped string.

Dagster reads a config class's defaults when it decorates the function, so the module-level definitions
carry the active profile's defaults (SFT_PROFILE, for imports and tests); `definitions.build_defs(profile)`
asks `for_profile(definition, profile)` for each one, which decorates the same function again with
`config_for(profile, ConfigClass)` as its config annotation when a default differs.
"""

import inspect
import types
from collections.abc import Callable

import dagster as dg

from llama_sft_dagster.config.profiles import active_profile, config_for
from llama_sft_dagster.core.versions import code_version

# definition key -> (the undecorated function, how it is decorated): to build it again for a profile
_BUILDERS: dict[object, tuple[Callable, Callable]] = {}


def config_classes(fn) -> list[type]:
    param = inspect.signature(fn, eval_str=True).parameters.get("config")
    return [param.annotation] if param is not None and isinstance(param.annotation, type) else []


def with_profile_config(fn, profile: str):
    """`fn` itself, or a copy of it whose `config` parameter is annotated with `profile`'s config class."""
    configs = config_classes(fn)
    if not configs or config_for(profile, configs[0]) is configs[0]:
        return fn
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__dict__.update(fn.__dict__)
    copy.__kwdefaults__, copy.__qualname__, copy.__module__, copy.__doc__ = (
        fn.__kwdefaults__,
        fn.__qualname__,
        fn.__module__,
        fn.__doc__,
    )
    copy.__annotations__ = {**inspect.get_annotations(fn, eval_str=True), "config": config_for(profile, configs[0])}
    return copy


def _key(definition):
    if isinstance(definition, dg.AssetChecksDefinition):
        return definition.check_key
    return definition.key if isinstance(definition, dg.AssetsDefinition) and len(definition.keys) == 1 else None


def _register(fn, decorate: Callable):
    definition = decorate(fn)
    _BUILDERS[_key(definition)] = (fn, decorate)
    return definition


def versioned_asset(deps_for: Callable[[str], list[str]] | None = None, **asset_kwargs):
    """`@dg.asset(**asset_kwargs)` with `code_version` derived from the function and its config.

    `deps_for(profile)`: upstream assets that depend on the profile (the demo's tokenizer and tiny model are
    trained on the demo corpus; the hub model depends on no data)."""

    def decorate(f, profile: str | None = None):
        deps = deps_for(profile or active_profile()) if deps_for else asset_kwargs.get("deps")
        kwargs = {**asset_kwargs, **({"deps": deps} if deps_for else {})}
        return dg.asset(code_version=code_version(f, configs=config_classes(f)), **kwargs)(f)

    decorate.by_profile = deps_for is not None
    return lambda fn: _register(fn, decorate)


def profiled_check(**check_kwargs):
    """`@dg.asset_check(**check_kwargs)` that `for_profile` can build with another profile's config defaults."""
    return lambda fn: _register(fn, dg.asset_check(**check_kwargs))


def for_profile(definition, profile: str):
    """`definition` as built for `profile`: the same object when none of its config defaults or deps differ."""
    fn, decorate = _BUILDERS.get(_key(definition), (None, None))
    if fn is None:
        return definition
    if getattr(decorate, "by_profile", False):
        return decorate(with_profile_config(fn, profile), profile)
    if (variant := with_profile_config(fn, profile)) is fn:
        return definition
    return decorate(variant)
