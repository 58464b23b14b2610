"""Small text widgets shared by the live views: probability colours, bars, sparklines, a chart.

All of them return Rich `Text` (or render to it), so they cost a few microseconds per frame.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from rich.cells import cell_len, get_character_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

from charrnn.tui.textflow import shown_char, sized

# Probability the model gave each sampled token → colour. Thresholds are read top-down; the
# surprisal in bits (-log2 p) is what the legend shows beside them.
BUCKETS: tuple[tuple[float, str], ...] = (
    (0.8, "bold green"), (0.5, "green"), (0.25, "yellow"), (0.1, "dark_orange"), (0.0, "red"),
)
BUCKET_STYLES = [Style.parse(style) for _, style in BUCKETS]
PRIME_STYLE = Style.parse("bold underline")


def bucket(p: float) -> int:
    """The colour index of one probability (buckets() of one)."""
    return int(buckets([p])[0])


def buckets(probabilities):
    """The colour index of each of an array's probabilities, as an int array (a frame's at once:
    a NumPy pass, not a Python call a token). The thresholds fall, so the index is how many of
    them are unmet (NaN meets none: the last colour)."""
    import numpy as np

    thresholds = np.array([threshold for threshold, _ in BUCKETS[:-1]], dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)[:, None]
    return np.count_nonzero(~(p >= thresholds), axis=1)


def legend(compact: bool = False) -> Text:
    """The colour key; compact: thresholds only, for narrow terminals."""
    text = Text("p " if compact else "p(token): ", style="dim")
    labels = ["≥80%", "≥50%", "≥25%", "≥10%", "<10%"]
    if compact:
        labels = [label.strip("≥%<") for label in labels[:-1]] + ["<10"]
    for label, (_threshold, style) in zip(labels, BUCKETS, strict=True):
        text.append("■" if compact else "■ ", style=style)
        text.append(label + (" " if compact else "  "))
    text.append("prime", style=PRIME_STYLE)
    return text


def token_label(token: str, width: int = 10) -> str:
    """A token made visible in a fixed-width cell: whitespace and controls get symbols; a token
    with nothing to see (U+3000, a joiner, a skin tone) its code points, a lone combining mark
    its dotted circle (◌́)."""
    shown = (token.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "␣"))
    shown = sized("".join(c if c.isprintable() else shown_char(c)[:1] for c in shown))
    if token and (not shown.strip() or not cell_len(shown)):
        shown = ("◌" + token if all(unicodedata.combining(c) for c in token)
                 else " ".join(f"U+{ord(c):04X}" for c in token))
    shown = shown or "∅"
    if cell_len(shown) > width:
        cut = ""
        for char in shown:
            if cell_len(cut + char) > width - 1:
                break
            cut += char
        shown = cut + "…"
    return shown + " " * (width - cell_len(shown))


def bar(fraction: float, width: int) -> str:
    """A horizontal bar with eighth-block resolution."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + ("" if part == 0 else " ▏▎▍▌▋▊▉"[part])
    return text + " " * (width - cell_len(text))


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, top: float | None = None) -> str:
    """The last `width` values as block heights from 0 to `top` (default: their maximum)."""
    values = list(values)[-width:]
    if not values:
        return " " * width
    top = max(values) if top is None else top
    scale = (len(SPARKS) - 1) / top if top > 0 else 0.0
    line = "".join(SPARKS[max(0, min(len(SPARKS) - 1, round(v * scale)))] for v in values)
    return line + " " * (width - len(line))


# Braille cells hold a 2×4 grid of dots; bit for (column, row) of the grid.
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


class LineChart:
    """Line series drawn with braille dots (2×4 per cell), y labels on the left, step axis below.

    series: (name, [(x, y), ...], style). Later series are drawn over earlier ones.
    """

    def __init__(self, series: list[tuple[str, list[tuple[float, float]], str]],
                 height: int = 10, y_format: str = "{:.3f}") -> None:
        self.series, self.height, self.y_format = series, height, y_format

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        import numpy as np

        arrays = [np.asarray(pts, dtype=float).reshape(-1, 2) for _, pts, _ in self.series]
        # A diverged evaluation logs a NaN loss: the chart shows the finite points around it.
        arrays = [xy[np.isfinite(xy).all(axis=1)] for xy in arrays]
        points = np.concatenate(arrays) if arrays else np.empty((0, 2))
        if not len(points):
            yield Text("(no data yet)", style="dim")
            return
        (x0, y0), (x1, y1) = points.min(axis=0).tolist(), points.max(axis=0).tolist()
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5
        labels = [self.y_format.format(v) for v in (y1, (y0 + y1) / 2, y0)]
        label_w = max(len(s) for s in labels) + 1
        cols, rows = max(4, options.max_width - label_w - 1), max(2, self.height)
        masks = [[0] * cols for _ in range(rows)]
        owner = [[-1] * cols for _ in range(rows)]

        def dot(px: int, py: int, index: int) -> None:
            cell_x, cell_y = px // 2, py // 4
            if 0 <= cell_x < cols and 0 <= cell_y < rows:
                masks[cell_y][cell_x] |= _DOT[px % 2][py % 4]
                owner[cell_y][cell_x] = index

        for index, xy in enumerate(arrays):
            prev = None
            for cur in _dot_path(xy, (x0, x1, y0, y1), cols * 2 - 1, rows * 4 - 1):
                if prev is None:
                    dot(*cur, index)
                else:  # a straight segment, one dot per step along the longer axis
                    steps = max(abs(cur[0] - prev[0]), abs(cur[1] - prev[1]), 1)
                    for i in range(steps + 1):
                        dot(round(prev[0] + (cur[0] - prev[0]) * i / steps),
                            round(prev[1] + (cur[1] - prev[1]) * i / steps), index)
                prev = cur
        styles = [Style.parse(style) for _, _, style in self.series]
        label_rows = {0: labels[0], rows // 2: labels[1], rows - 1: labels[2]}
        for r in range(rows):
            line = Text(label_rows.get(r, "").rjust(label_w - 1) + " ┤" if r in label_rows
                        else " " * label_w + "│", style="dim")
            for c in range(cols):
                if masks[r][c]:
                    line.append(chr(0x2800 + masks[r][c]), styles[owner[r][c]])
                else:
                    line.append(" ")
            yield line
        axis = Text(" " * label_w + "└" + "─" * cols, style="dim")
        yield axis
        left, right = f"step {x0:,.0f}", f"{x1:,.0f}"
        legend_text = Text(" " * (label_w + 1) + left)
        for name, _pts, style in self.series:
            legend_text.append("  ")
            legend_text.append("⣀⣀ " + name, style=style)
        pad = label_w + 1 + cols - legend_text.cell_len - len(right)
        legend_text.append(" " * max(1, pad) + right)
        yield legend_text


def _dot_path(xy, bounds: tuple[float, float, float, float], last_x: int,
              last_y: int) -> list[tuple[int, int]]:
    """A series' (x, y) points as dot coordinates, keeping of each run of points in one dot
    column only the first, the lowest, the highest and the last, in their order: the path
    through them draws the same dots as through all of them (within a column it covers lowest
    to highest either way), so a long run's thousands of logged losses cost a frame no more
    than a few hundred."""
    import numpy as np

    x0, x1, y0, y1 = bounds
    fx = np.zeros(len(xy)) if x1 == x0 else (xy[:, 0] - x0) / (x1 - x0)
    px = np.rint(fx * last_x).astype(np.int64)  # rint rounds half to even, as round() does
    py = np.rint((y1 - xy[:, 1]) / (y1 - y0) * last_y).astype(np.int64)
    if len(px) == 0:
        return []
    run = np.cumsum(np.r_[False, px[1:] != px[:-1]])  # which run of one column each point is in
    first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
    last = np.r_[first[1:] - 1, len(px) - 1]
    least_row = np.lexsort((py, run))[first]  # sorted by run, then by row: each run's least
    most_row = np.lexsort((-py, run))[first]
    keep = np.unique(np.concatenate([first, last, least_row, most_row]))
    return list(zip(px[keep].tolist(), py[keep].tolist(), strict=True))


def fit(text: str, width: int) -> str:
    """Crop a string to `width` terminal cells (wide characters count two)."""
    if cell_len(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        size = get_character_cell_size(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"
