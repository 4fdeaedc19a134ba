"""Whether a challenger model replaces the champion: the decision only, from evaluation figures.

The registry side (MLflow model versions and the `champion` alias) is in resources/model_registry.py;
this module holds the rule so it can be read and tested apart from MLflow:

- the challenger must beat its own base model (the blocking check of adapter_evaluation);
- with no champion yet, a challenger that beats its base becomes champion;
- otherwise its pooled reply-token loss on the current evaluation set must be lower than the
  champion's on the SAME rows by more than `min_improvement` (relative), so noise does not flip it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(
    challenger_loss: float, base_loss: float, champion_loss: float | None, min_improvement: float = 0.0
) -> Decision:
    if not challenger_loss < base_loss:
        return Decision(
            False, f"challenger evaluation_loss {challenger_loss:.4g} does not beat its base model's {base_loss:.4g}"
        )
    if champion_loss is None:
        return Decision(
            True, f"no champion yet; challenger evaluation_loss {challenger_loss:.4g} beats base {base_loss:.4g}"
        )
    bar = champion_loss * (1 - min_improvement)
    if challenger_loss < bar:
        return Decision(
            True,
            f"challenger evaluation_loss {challenger_loss:.4g} beats champion {champion_loss:.4g}"
            + (f" by more than {min_improvement:.1%}" if min_improvement else ""),
        )
    return Decision(
        False,
        f"challenger evaluation_loss {challenger_loss:.4g} does not beat champion {champion_loss:.4g}"
        + (f" by more than {min_improvement:.1%}" if min_improvement else ""),
    )
