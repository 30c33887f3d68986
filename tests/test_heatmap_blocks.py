"""The heatmap's block statistics, computed with NumPy reductions over all blocks at once, against the
definition written out block by block: each cell's colour class is the level of its block's mean (grey where
a block holds NaN/Inf), and its hover text gives the block's rows, cols, size, and the mean, min and max of
its finite elements (or the element itself, when the map is not down-sampled)."""
from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

from tapemagic.render import heatmap, numbers


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            found = dict(attrs)
            self.cells.append((found["class"], found["title"]))


def _expected(matrix: np.ndarray, precision: int) -> list[tuple[str, str]]:
    values = matrix.reshape(matrix.shape[0], -1).astype(np.float64)
    rows, cols = heatmap._blocks(values.shape[0]), heatmap._blocks(values.shape[1])
    sampled = len(rows) < values.shape[0] or len(cols) < values.shape[1]
    means = np.array([[np.mean(values[np.ix_(r, c)]) if np.isfinite(values[np.ix_(r, c)]).all() else np.nan
                       for c in cols] for r in rows])
    finite = means[np.isfinite(means)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    out = []
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            step = heatmap.level(float(means[i, j]), scale)
            css = "tm-hnan" if step is None else f"tm-h{'p' if step > 0 else 'n' if step < 0 else ''}{abs(step)}"
            block = values[np.ix_(r, c)]
            if not sampled:
                title = f"H[{r[0]}, {c[0]}] = {numbers.element(matrix.reshape(values.shape)[r[0], c[0]])}"
            else:
                span = lambda index: f"{index[0]}–{index[-1]}" if len(index) > 1 else str(index[0])  # noqa: E731
                good = block[np.isfinite(block)]
                where = f"rows {span(r)}, cols {span(c)} ({block.size} elements)"
                if not good.size:
                    title = f"{where}: all nan/inf"
                else:
                    stats = ", ".join(f"{name} {numbers.scalar(float(f(good)), precision)}"
                                      for name, f in (("mean", np.mean), ("min", np.min), ("max", np.max)))
                    bad = block.size - good.size
                    title = f"{where}: {stats}" + (f", {bad} nan/inf" if bad else "")
            out.append((css, title))
    return out


def _matrices():
    rng = np.random.default_rng(7)
    holes = rng.normal(size=(90, 130))
    holes[3, 4] = np.nan
    holes[50:60, 50:60] = np.inf
    holes[80:90, 0:4] = -np.inf
    yield "float32 300x300", rng.normal(size=(300, 300)).astype(np.float32)
    yield "40x40, one cell per element", rng.normal(size=(40, 40))
    yield "41x7", rng.normal(size=(41, 7)).astype(np.float32)
    yield "NaN and Inf", holes
    yield "all zero", np.zeros((100, 100))
    yield "a diagonal", np.diag(rng.normal(size=64))
    yield "integers", np.arange(60 * 70).reshape(60, 70)
    yield "a vector", rng.normal(size=(500,))
    yield "three dimensions", rng.normal(size=(20, 5, 12))


@pytest.mark.parametrize("name, matrix", list(_matrices()), ids=[name for name, _ in _matrices()])
def test_each_cell_has_its_blocks_colour_and_statistics(name, matrix):
    parser = _Cells()
    parser.feed(heatmap.render(matrix, 4))
    expected = _expected(matrix if matrix.ndim > 1 else matrix.reshape(1, -1), 4)
    assert len(parser.cells) == len(expected)
    mismatched = [(i, got, want) for i, (got, want) in enumerate(zip(parser.cells, expected)) if got != want]
    assert not mismatched, mismatched[:3]
