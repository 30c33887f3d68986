"""What a re-run costs once the result is shown: the display of Hessians and Jacobians.

    python benchmarks/display.py [--repeats 15] [--quick]

The held-out suite (heldout.py) times cells with ``--display none``. A user sees the result: IPython's display
hook builds its text/plain and text/html, and the HTML holds a heatmap of each Jacobian and Hessian. This runs the
held-out problems (functions the heatmap was not written for) as warm ``%%tape`` cells through a real IPython
shell, the result displayed as in a notebook, and times, interleaved in one process:

- ``none``: the cell with ``--display none`` (the derivatives alone);
- ``shown``: the cell displayed (text and HTML, as a notebook receives it);
- ``shown, before``: the same, drawn as before this was made faster: the heatmap with NumPy called per block
  for its mean, min and max and the colours worked out per cell (``per_cell_heatmap`` below), and the copyable
  ``np.array(...)`` text of every value written by ``np.array2string`` with a formatter (``numpy_literal``); both
  kept here as the baseline;
- ``heatmap`` / ``heatmap, per cell``: the heatmap of the problem's matrix alone, each way;
- ``literal`` / ``literal, NumPy``: the copyable text of the problem's matrix alone, each way (its first rows, at
  most 10,000 elements: the page embeds no larger value).

The two heatmaps, and the two literals, must be the same text, byte for byte, or it stops. Prints milliseconds
(median over repeats) and the ratios with their spread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from html import escape
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def per_cell_heatmap(data: Any, precision: int, symbol: str = "H") -> str:
    """The heatmap as drawn before it was vectorised (the baseline): per block, NumPy picks the block out and
    takes its mean, min and max, and each cell's colours are worked out again."""
    from tapemagic._i18n import _
    from tapemagic.render import heatmap, numbers
    from tapemagic.render.heatmap import GRID, _blocks, _class, _colour_bar, _hex, _index_cell, colour, level

    def block_mean(block: np.ndarray) -> float:
        return float(np.mean(block)) if np.all(np.isfinite(block)) else float("nan")

    def block_title(rows: np.ndarray, cols: np.ndarray, block: np.ndarray) -> str:
        def span(index: np.ndarray) -> str:
            return f"{int(index[0])}–{int(index[-1])}" if len(index) > 1 else str(int(index[0]))

        finite = block[np.isfinite(block)]
        where = dict(rows=span(rows), cols=span(cols), count=block.size)
        if not finite.size:
            return _("rows {rows}, cols {cols} ({count} elements): all nan/inf", **where)
        stats = dict(mean=numbers.scalar(float(finite.mean()), precision),
                     min=numbers.scalar(float(finite.min()), precision),
                     max=numbers.scalar(float(finite.max()), precision))
        bad = block.size - finite.size
        if bad:
            return _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}, {bad} nan/inf",
                     bad=bad, **where, **stats)
        return _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}", **where, **stats)

    def cell(value: float, scale: float, title: str, text: str, width: int) -> str:
        step = level(value, scale)
        background = colour(value, scale)
        style = f"border:1px solid {GRID};background:{_hex(background)}"
        if text:
            style = (f"min-width:{width}px;height:20px;padding:0 3px;font-size:11px;text-align:center;{style};"
                     f"color:{_hex(heatmap.text_colour(background))}")
        else:
            style = f"width:12px;height:12px;padding:0;{style}"
        return f'<td class="{_class(step)}" title="{escape(title)}" style="{style}">{escape(text)}</td>'

    original = numbers.as_array(data)
    if original.size == 0:
        return heatmap.render(data, precision, symbol)
    matrix = original.reshape(original.shape[0], -1) if original.ndim >= 2 else original.reshape(1, -1)
    values = matrix.astype(np.float64)
    row_blocks, col_blocks = _blocks(matrix.shape[0]), _blocks(matrix.shape[1])
    sampled = len(row_blocks) < matrix.shape[0] or len(col_blocks) < matrix.shape[1]
    shown = np.array([[block_mean(values[np.ix_(r, c)]) for c in col_blocks] for r in row_blocks])
    finite = shown[np.isfinite(shown)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    texts = None if sampled else [[numbers.scalar(item, precision) for item in row] for row in matrix.tolist()]
    width = max((len(t) for row in texts for t in row), default=1) * 7 + 8 if texts else 0
    show_numbers = texts is not None and matrix.shape[1] * width <= heatmap.FIT_WIDTH_PX
    label_every = 1 if len(col_blocks) <= 20 else 5
    head = "".join(_index_cell(block, j, label_every) for j, block in enumerate(col_blocks))
    rows = [f'<tr><th style="{heatmap._INDEX}"></th>{head}</tr>']
    for i, rows_in in enumerate(row_blocks):
        cells = []
        for j, cols_in in enumerate(col_blocks):
            r, c = int(rows_in[0]), int(cols_in[0])
            title = (block_title(rows_in, cols_in, values[np.ix_(rows_in, cols_in)]) if sampled
                     else f"{symbol}[{r}, {c}] = {numbers.element(matrix[r, c])}")
            cells.append(cell(float(shown[i, j]), scale, title, texts[r][c] if show_numbers else "",
                              width if show_numbers else 0))
        rows.append(f'<tr>{_index_cell(rows_in, i, 1 if len(row_blocks) <= 20 else 5)}{"".join(cells)}</tr>')
    table = f'<table class="tm-heatmap" style="border-collapse:collapse;margin:4px 0">{"".join(rows)}</table>'
    bar = _colour_bar(scale, precision, bool(np.all(np.isfinite(values))), matrix.shape, row_blocks, col_blocks)
    return f'<div style="overflow-x:auto">{table}{bar}</div>'


def numpy_literal(data: np.ndarray) -> str:
    """The copyable text's body as written before ``numbers._float_literal`` (the baseline)."""
    from tapemagic.render import numbers

    return np.array2string(data, separator=", ", threshold=sys.maxsize, max_line_width=100,
                           formatter={"float_kind": numbers.element, "complex_kind": numbers.element})


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per problem (default 15)")
    parser.add_argument("--quick", action="store_true", help="the held-out problems at their small sizes")
    args = parser.parse_args()

    import heldout
    import tensorflow as tf
    from IPython.core.interactiveshell import InteractiveShell

    from tapemagic.render import heatmap, numbers

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tapemagic")
    formatter = shell.display_formatter
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores; {args.repeats} interleaved rounds per problem")
    header = (f"{'problem':<28}{'matrix':>12}{'none':>8}{'shown':>8}{'before':>8}{'heatmap':>9}{'per cell':>9}"
              f"{'literal':>9}{'NumPy':>8}{'shown/none':>22}{'shown/before':>20}{'heatmap/per cell':>20}"
              f"{'literal/NumPy':>20}")
    print(header)
    whole, maps, texts = [], [], []
    rng = np.random.default_rng(0)
    for builder, size, quick in heldout.PROBLEMS:
        case = builder(quick if args.quick else size, rng)
        shell.user_ns.update(case.namespace)
        line = case.line

        def cell(display: str) -> Any:
            shell.run_cell_magic("tape", f"{line} --display {display} -o bench_r", case.body)
            return shell.user_ns["bench_r"]

        def shown() -> None:
            result = cell("auto")
            formatter.format(result)  # what IPython's display hook sends the notebook: text/plain and text/html

        matrix = heldout.canonical(case, heldout.tapemagic_value(case, cell("none")))
        if matrix.ndim < 2:
            matrix = matrix.reshape(1, -1)
        if heatmap.render(matrix, 4) != per_cell_heatmap(matrix, 4):
            raise SystemExit(f"{case.name}: the heatmaps differ")
        from tapemagic.render.html import COPY_LIMIT

        rows = COPY_LIMIT // matrix.shape[1]
        embedded = matrix[:rows] if rows else matrix.ravel()[:COPY_LIMIT]
        if numbers._float_literal(embedded) != numpy_literal(embedded):
            raise SystemExit(f"{case.name}: the literals differ")
        for _ in range(3):  # warm: the trace is made and verified on the second and third runs
            shown()

        def shown_before() -> None:
            vectorised, literal = heatmap.render, numbers._float_literal
            heatmap.render, numbers._float_literal = per_cell_heatmap, numpy_literal
            try:
                shown()
            finally:
                heatmap.render, numbers._float_literal = vectorised, literal

        methods = {"none": lambda: cell("none"), "shown": shown, "shown, before": shown_before,
                   "heatmap": lambda: heatmap.render(matrix, 4), "heatmap, per cell": lambda: per_cell_heatmap(matrix, 4),
                   "literal": lambda: numbers._float_literal(embedded), "literal, NumPy": lambda: numpy_literal(embedded)}
        times: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(args.repeats):
            for name, call in methods.items():
                times[name].append(timed(call))
        ms = {name: 1e3 * statistics.median(values) for name, values in times.items()}
        over = [a / b for a, b in zip(times["shown"], times["none"])]
        before = [a / b for a, b in zip(times["shown"], times["shown, before"])]
        drawn = [a / b for a, b in zip(times["heatmap"], times["heatmap, per cell"])]
        written = [a / b for a, b in zip(times["literal"], times["literal, NumPy"])]
        whole.append(statistics.median(before))
        maps.append(statistics.median(drawn))
        texts.append(statistics.median(written))
        shape = "x".join(str(d) for d in matrix.shape[:2])
        print(f"{case.name:<28}{shape:>12}{ms['none']:8.2f}{ms['shown']:8.2f}{ms['shown, before']:8.2f}"
              f"{ms['heatmap']:9.2f}{ms['heatmap, per cell']:9.2f}{ms['literal']:9.2f}{ms['literal, NumPy']:8.2f}"
              f"{spread(over):>22}{spread(before):>20}{spread(drawn):>20}{spread(written):>20}")
        for name in case.namespace:
            shell.user_ns.pop(name, None)
    print("times: ms, median over the rounds; ratios: median over the rounds [min-max]; the heatmaps gave the same "
          "HTML, and the literals the same text, on every problem")
    print(f"median over problems: a displayed warm cell now / as before {statistics.median(whole):.2f}x "
          f"(worst {max(whole):.2f}x); the heatmap alone {statistics.median(maps):.2f}x (worst {max(maps):.2f}x); "
          f"the copyable literal alone {statistics.median(texts):.2f}x (worst {max(texts):.2f}x)")


if __name__ == "__main__":
    main()
