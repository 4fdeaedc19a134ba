"""MLflow params without secrets: flattened, stringified, cut to MLflow's limits (resources/tracking.py logs them)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# key words that mark a credential; matched against the words of the whole flattened key
_SECRET_KEY = re.compile(
    r"(^|[^a-z])(token|secret|password|passwd|credentials?|auth|api_?key|access_?key|private_?key|secret_?key)"
    r"($|[^a-z])",
    re.IGNORECASE,
)
# value prefixes of common credentials: Hugging Face, OpenAI-style, GitHub, AWS access key ids
_SECRET_VALUE = re.compile(r"^(hf_|sk-|ghp_|gho_|github_pat_|AKIA)")
MAX_PARAM_CHARS = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in MLflow 3.17
PARAMS_PER_BATCH = 100  # mlflow.utils.validation.MAX_PARAMS_TAGS_PER_BATCH
_CUT = "...[truncated]"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}; lists are indexed ("targets.0")."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        elif isinstance(value, (list, tuple)) and value and any(isinstance(v, Mapping) for v in value):
            flat.update(flatten_params({str(i): v for i, v in enumerate(value)}, name))
        else:
            flat[name] = value
    return flat


def looks_secret(key: str, value: Any) -> bool:
    """True for a key naming a credential or a value shaped like one. Errs on the side of leaving out."""
    return bool(_SECRET_KEY.search(key)) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value.strip())))


def safe_params(params: Mapping[str, Any], prefix: str = "config") -> tuple[dict[str, str], list[str]]:
    """Flattened, stringified params without secret-looking entries; returns (params, left-out key names)."""
    kept, redacted = {}, []
    for key, value in flatten_params(params, prefix).items():
        if looks_secret(key, value):
            redacted.append(key)
            continue
        text = str(value)
        kept[key] = text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - len(_CUT)] + _CUT
    return kept, redacted
