"""Metadata that reads well in the Dagster UI: rounded floats, no empty values.

    tidy({"loss": 7.952795028686523, "resumed_from": None, "note": ""}) == {"loss": 7.953}

Floats keep 4 significant digits (a loss of 7.953, a learning rate of 0.0002, a share of 0.5361) and
never lose integer digits (12345.678 -> 12346.0):
enough to compare runs, short enough to read. Values that are not plain numbers pass through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SIGNIFICANT_DIGITS = 4


def round_float(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` to `digits` significant digits (integers stay exact; nan/inf pass through)."""
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, max(0, digits - 1 - int(math.floor(math.log10(abs(value))))))


def tidy(metadata: Mapping[str, Any], digits: int = SIGNIFICANT_DIGITS) -> dict[str, Any]:
    """Rounded floats; None, "" and empty collections left out (the UI shows them as blank rows)."""
    out = {}
    for key, value in metadata.items():
        if value is None or (isinstance(value, (str, list, tuple, dict, set)) and not value):
            continue
        if isinstance(value, float):
            value = round_float(value, digits)
        out[key] = value
    return out
