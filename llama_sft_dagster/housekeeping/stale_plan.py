"""Which assets a rerun must materialize, and why, from Dagster's own staleness records.

Dagster 1.13 marks an asset stale when its code version changed or a parent's data version differs
from the one it was built from; it looks one level up only (after `a` changes, `b` is stale, `c`
only after `b` re-runs with a new data version). Two ways to cover whole chains:

- `plan(..., whole_chain=True)`: missing + stale + everything downstream of those, for one run
  (the retraining schedule: one run per tick, conservative);
- `plan(..., whole_chain=False)` repeated after each run ("waves", what `sft-materialize-stale`
  does): a child runs only if its parent's re-run really changed its content, so a rerun that
  produces identical data stops there and never takes the GPU for nothing.

A launchpad override of a stage's config is also a cause: the asset's last materialization came
from a run whose config differs from the defaults that its code version folds in
(core/versions.py), so the stale-only path rebuilds it with the defaults. Its changed
content already makes its children stale through the content data version.
"""

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import dagster as dg

# The UI's stale status and causes have no public API in Dagster 1.13 (only RunRequest(stale_assets_only=True),
# which gives no causes and looks one level up): the resolver the UI uses, and what it needs, are private.
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext  # resolver's input
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleCause, StaleStatus  # see above
from dagster._time import get_current_datetime  # the resolver's clock, as the UI sets it

CONDITIONAL = ("downstream of ", "computed together with ")  # reasons that hold only if a parent's data changes
MUST_RUN = "(which runs for certain)"


@dataclass(frozen=True)
class PlannedAsset:
    key: dg.AssetKey
    reasons: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.key.to_user_string()

    @property
    def certain(self) -> bool:
        """It runs whatever its parents produce (missing, new code or config, a parent's new data already
        recorded); False when its only reason is a parent that runs first: then it runs only if that parent's
        rerun changes its data version (Dagster's staleness looks at content, not at the run)."""
        return any(not r.startswith(CONDITIONAL) or r.endswith(MUST_RUN) for r in self.reasons)


def stale_resolver(instance: dg.DagsterInstance, asset_graph) -> CachingStaleStatusResolver:
    """The resolver the web UI and `RunRequest(stale_assets_only=True)` use; valid for one evaluation."""
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)


def describe(cause: StaleCause) -> str:
    text = f"{cause.asset_key.to_user_string()} {cause.reason}"
    if cause.dependency_asset_key is not None:
        text += f" ({cause.dependency_asset_key.to_user_string()})"
    return text


def config_override(instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey) -> str | None:
    """'built with run config {...}' when the last materialization's run overrode the config defaults."""
    node = asset_graph.get(key)
    assets_def = getattr(node, "assets_def", None)
    record = instance.get_latest_materialization_event(key)
    if assets_def is None or record is None or assets_def.op.config_schema is None:
        return None
    run = instance.get_run_by_id(record.run_id)
    used = ((run.run_config or {}).get("ops", {}).get(assets_def.op.name, {}) or {}).get("config") if run else None
    field = assets_def.op.config_schema.as_field()
    defaults = field.default_value if field.default_provided else {}
    if not used or {**defaults, **used} == defaults:
        return None
    changed = {k: v for k, v in used.items() if defaults.get(k) != v}
    was = {k: defaults.get(k) for k in changed}
    return f"{key.to_user_string()} was built with run config {changed}, not the defaults {was}"


def own_reasons(
    resolver: CachingStaleStatusResolver, instance: dg.DagsterInstance, asset_graph, key: dg.AssetKey
) -> list[str]:
    status = resolver.get_status(key)
    if status == StaleStatus.MISSING:
        return [f"{key.to_user_string()} is missing (never materialized)"]
    reasons = [describe(c) for c in resolver.get_stale_causes(key)] if status == StaleStatus.STALE else []
    override = config_override(instance, asset_graph, key)
    return reasons + ([override] if override else [])


def plan(
    instance: dg.DagsterInstance,
    asset_graph,
    keys: Iterable[dg.AssetKey] | None = None,
    *,
    whole_chain: bool = True,
    changed_sources: Collection[dg.AssetKey] = (),
) -> list[PlannedAsset]:
    """Assets of `keys` (default: all materializable) to run, in topological order, with reasons.

    `changed_sources`: observable sources whose upstream changed but whose new version is not yet
    recorded (the caller records it); their children count as stale.
    """
    materializable = asset_graph.materializable_asset_keys
    selected = set(keys) & materializable if keys is not None else set(materializable)
    resolver = stale_resolver(instance, asset_graph)
    to_run: dict[dg.AssetKey, list[str]] = {}
    for key in asset_graph.toposorted_asset_keys:
        if key not in selected:
            continue
        parents = sorted(asset_graph.get(key).parent_keys)
        reasons = own_reasons(resolver, instance, asset_graph, key)
        reasons += [f"{p.to_user_string()} has new raw data" for p in parents if p in changed_sources]
        if whole_chain:
            reasons += [f"downstream of {p.to_user_string()}, which runs first" for p in parents if p in to_run]
        if reasons:
            to_run[key] = reasons
    # a multi-asset that cannot be subset (train_pairs + validation_pairs) runs whole
    for key in list(to_run):
        for sibling in asset_graph.get(key).execution_set_asset_keys - to_run.keys():
            certain = PlannedAsset(key, tuple(to_run[key])).certain
            to_run[sibling] = [f"computed together with {key.to_user_string()}" + (f" {MUST_RUN}" if certain else "")]
    order = {k: i for i, k in enumerate(asset_graph.toposorted_asset_keys)}
    return [PlannedAsset(k, tuple(r)) for k, r in sorted(to_run.items(), key=lambda kv: order[kv[0]])]


def format_dry_plan(planned: list[PlannedAsset]) -> str:
    """A dry run's plan, honest about what it cannot know: the assets that run for certain, then those that
    run only if an upstream's rerun changes its data version (STYLE.md 23)."""
    certain = [p for p in planned if p.certain]
    maybe = [p for p in planned if not p.certain]
    head = f"would materialize {len(certain)} asset(s)"
    if maybe:
        head += f" for certain, and {len(maybe)} more only if an upstream's data changes"
    lines = [head + ":"]
    if maybe:
        lines.append(" for certain:" if certain else " for certain: none")
    lines += [format_plan(certain)] if certain else []
    if maybe:
        lines.append(" only if the data changes (each runs when a parent's rerun gives a new data version):")
        lines += [format_plan(maybe)]
    return "\n".join(lines)


def format_plan(planned: list[PlannedAsset]) -> str:
    if not planned:
        return "nothing to materialize: every selected asset is up to date"
    return "\n".join(f"  {p.name}: " + "; ".join(p.reasons) for p in planned)
