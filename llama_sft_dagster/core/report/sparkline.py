"""A loss curve small enough to show inline on a Dagster asset page.

The Dagster UI (1.13) renders a Markdown metadata value in place only when it is shorter than 1,000
characters; a longer one hides behind "[Show Markdown]". A full matplotlib PNG as a data URI is tens
of kilobytes, so the run report also carries this 1-bit sketch (train loss solid, eval loss as dots),
a few hundred bytes, which the UI shows without a click. The full plots stay one click away and in MLflow.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

INLINE_LIMIT = 1000  # characters: Dagster UI's threshold for showing Markdown metadata in place


def _scale(points: Sequence[tuple[float, float]], x_range, y_range, width: int, height: int, pad: int):
    (x0, x1), (y0, y1) = x_range, y_range
    sx = (width - 2 * pad) / ((x1 - x0) or 1)
    sy = (height - 2 * pad) / ((y1 - y0) or 1)
    return [(pad + (x - x0) * sx, height - pad - (y - y0) * sy) for x, y in points]


def loss_sketch_png(
    train: Sequence[tuple[float, float]], evals: Sequence[tuple[float, float]] = (), width: int = 240, height: int = 64
) -> bytes:
    """PNG bytes (1-bit): train loss as a line, eval loss as 3x3 dots, on a frame."""
    from PIL import Image, ImageDraw

    points = list(train) + list(evals)
    if not points:
        raise ValueError("no loss values to draw")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_range, y_range = (min(xs), max(xs)), (min(ys), max(ys))
    image = Image.new("1", (width, height), 1)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width - 1, height - 1], outline=0)
    line = _scale(train, x_range, y_range, width, height, 4)
    if len(line) > 1:
        draw.line(line, fill=0, width=1)
    for x, y in _scale(evals, x_range, y_range, width, height, 4):
        draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def inline_markdown(png: bytes, alt: str) -> str | None:
    """`![alt](data:image/png;base64,...)`, or None when it would be too long to show in place."""
    text = f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
    return text if len(text) < INLINE_LIMIT else None
