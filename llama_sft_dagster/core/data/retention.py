"""Which versioned folders of an asset to delete: keep the newest `keep`, the one `current` points
at, and every promoted one (a champion, now or before: the versions a rollback may return to).

Version folder names start with a UTC timestamp (`20260301T030000-<run id>`), so name order is age order.

    python -c "from llama_sft_dagster.core.data.retention import to_remove; print(to_remove(['a', 'b', 'c'], 1))"
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def to_remove(names: Sequence[str], keep: int, promoted: Collection[str] = (), current: str | None = None) -> list[str]:
    """Names of the versions to delete, oldest first."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the newest version must be kept")
    newest = set(sorted(names)[-keep:])
    return [n for n in sorted(names) if n not in newest and n not in promoted and n != current]
