"""--explore: the time from a slider value change to the updated result and plot, for E17 and E27.

    python benchmarks/explore.py [--moves 40] [--quick]

Runs the document's cells as ``%%tape ... --explore`` through a real IPython shell (E17: ``f = x**2 * y + y + 2``
over x and y; E27: ``y = x * x * x`` with ``-n 2``), builds the Explorer that ``tapemagic/render/widget.py`` gives the
widget view, and drives its sliders as a user does, by setting ``slider.value``:

- ``rerun``: the new result alone (``result.rerun(values)``, what each slider move recomputes first);
- ``update``: from ``slider.value = v`` to the explorer's updated result and plot, with no event loop running (the
  update then runs at once, in the setter);
- ``in a loop``: the same inside a running asyncio loop, as in a kernel, where the explorer may debounce or throttle:
  the time until the view shows the new value's result, delay included;
- ``drag``: a drag at 60 moves a second for two seconds in the loop: how many updates it shows per second, and the
  time from the last move to the view at rest;
- ``2nd slider``: ``update`` for E17's second slider (y), whose move also redraws the curve over the first one (x).

Every updated result is checked against the derivatives by hand (E17: 2xy and x**2 + 1; E27: 3x**2 and 6x). Prints
milliseconds per update (median, p90) and updates per second. Uses only the explorer's public surface: ``.sliders``
(ipywidgets FloatSliders by source name), ``.update()``, the display-update callback ``on_update(bundle)`` where
the explorer takes one (the view is updated when it has been called with the new output), and ``.result``/``.plot``.
"""
from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (name, set-up, %%tape line, body, the derivatives by hand: values -> {order: {source: value}})
EXAMPLES: list[tuple[str, str, str, str, Callable[[dict[str, float]], dict[int, dict[str, float]]]]] = [
    ("E17", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "x y --explore", "f = x**2 * y + y + 2",
     lambda v: {1: {"x": 2 * v["x"] * v["y"], "y": v["x"] ** 2 + 1}}),
    ("E27", "x = tf.Variable(1.0)", "x -n 2 --explore", "y = x * x * x",
     lambda v: {1: {"x": 3 * v["x"] ** 2}, 2: {"x": 6 * v["x"]}}),
]
DRAG_RATE = 60  # slider moves per second during a drag (a browser sends about one per frame)
RESULT_NAME = "_explore_result"


class Updates:
    """The explorer's display-update callback: counts the new outputs it hands to the display."""

    def __init__(self) -> None:
        self.count = 0
        self.at = 0.0  # perf_counter() of the last update
        self.bundle: dict[str, str] = {}

    def __call__(self, bundle: dict[str, str]) -> None:
        self.count += 1
        self.at = time.perf_counter()
        self.bundle = bundle


def explorer_for(shell: Any, example: tuple) -> tuple[Any, float]:
    """Run the example's --explore cell and build its Explorer; also the cell's own time (ms)."""
    from tapemagic.render import widget

    name, setup, line, body, _ = example
    shell.run_cell(setup, store_history=False, silent=True)
    started = time.perf_counter()
    shell.run_cell_magic("tape", f"{line} --display none -o {RESULT_NAME}", body)
    cell_ms = (time.perf_counter() - started) * 1e3
    result = shell.user_ns[RESULT_NAME]
    if getattr(result, "rerun", None) is None:
        raise RuntimeError(f"{name}: the --explore cell made no rerun (notes: {'; '.join(result.notes)})")
    if "on_update" in inspect.signature(widget.Explorer).parameters:  # the static output updated in place
        updates = Updates()
        explorer = widget.Explorer(result, on_update=updates)
        explorer.updates = updates
        return explorer, cell_ms
    return widget.Explorer(result), cell_ms


def view_state(explorer: Any) -> tuple[int, int, Any]:
    """What a user sees change: the outputs handed to the display, the result shown, and its plot."""
    plot = getattr(explorer, "plot", None)
    updates = getattr(explorer, "updates", None)
    return (updates.count if updates else 0, id(getattr(explorer, "result", None)),
            plot if isinstance(plot, (str, bytes)) else getattr(plot, "value", None))


def check(example: tuple, result: Any, values: dict[str, float]) -> None:
    """The shown result's derivatives are those by hand at the sliders' values (float32: rtol 1e-4)."""
    expected = example[4](values)
    for order, by_source in expected.items():
        for source, value in by_source.items():
            got = float(np.asarray(result.derivatives[order][source]))
            if not np.isclose(got, value, rtol=1e-4, atol=1e-4):
                raise AssertionError(f"{example[0]} at {values}: order {order} wrt {source} is {got}, by hand {value}")


def move_values(slider: Any, moves: int) -> list[float]:
    """Slider positions that differ from one move to the next, walking across the slider's range."""
    span, values, k = slider.max - slider.min, [], 0
    while len(values) < moves:
        k += 1
        value = round(float(slider.min + span * ((0.07 + 0.37 * k) % 1.0)), 6)
        if value != (values[-1] if values else slider.value):  # a move to where it is changes nothing
            values.append(value)
    return values


def values_of(explorer: Any) -> dict[str, float]:
    return {name: float(slider.value) for name, slider in explorer.sliders.items()}


def time_rerun(example: tuple, explorer: Any, rerun: Callable[[dict[str, float]], Any], moves: int) -> list[float]:
    """ms of the cell's result.rerun(values) alone: the new numbers without the view."""
    name = next(iter(explorer.sliders))
    times = []
    for value in move_values(explorer.sliders[name], moves):
        values = {**values_of(explorer), name: value}
        started = time.perf_counter()
        result = rerun(values)
        times.append((time.perf_counter() - started) * 1e3)
        check(example, result, values)
    return times


def time_update(example: tuple, explorer: Any, moves: int, slider_index: int = 0) -> tuple[list[float], bool]:
    """ms from slider.value = v to the updated view, no event loop running. If setting the value did not update the
    view by itself (an explorer that always defers), update() is called, and the time includes it."""
    name = list(explorer.sliders)[slider_index]
    slider, times, deferred = explorer.sliders[name], [], False
    for value in move_values(slider, moves):
        before = view_state(explorer)
        started = time.perf_counter()
        slider.value = value
        if view_state(explorer) == before:
            deferred = True
            explorer.update()
        times.append((time.perf_counter() - started) * 1e3)
        check(example, explorer.result, values_of(explorer))
    return times, deferred


async def _until_changed(explorer: Any, before: tuple, timeout_s: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while view_state(explorer) == before:
        if time.perf_counter() > deadline:
            raise TimeoutError("the explorer did not update within 30 s of a slider move")
        await asyncio.sleep(0.001)


async def time_in_loop(example: tuple, explorer: Any, moves: int) -> list[float]:
    """ms from slider.value = v to the updated view inside a running event loop (debounce or throttle included)."""
    name = next(iter(explorer.sliders))
    slider, times = explorer.sliders[name], []
    for value in move_values(slider, moves):
        before = view_state(explorer)
        started = time.perf_counter()
        slider.value = value
        await _until_changed(explorer, before)
        times.append((time.perf_counter() - started) * 1e3)
        await asyncio.sleep(0.3)  # let any trailing throttle window close before the next move
        check(example, explorer.result, values_of(explorer))
    return times


async def drag(example: tuple, explorer: Any, seconds: float) -> tuple[float, float]:
    """A drag at DRAG_RATE moves per second: updates shown per second, and ms from the last move to the view at rest
    (no change for 0.5 s) showing the last value."""
    name = next(iter(explorer.sliders))
    slider = explorer.sliders[name]
    positions = np.linspace(slider.min, slider.max, max(2, int(seconds * DRAG_RATE)))
    updates, state = 0, view_state(explorer)
    started = time.perf_counter()
    last_move = started
    for position in positions:
        slider.value = float(position)
        last_move = time.perf_counter()
        await asyncio.sleep(1 / DRAG_RATE)
        if view_state(explorer) != state:
            updates, state = updates + 1, view_state(explorer)
    dragged = time.perf_counter() - started
    settled = last_move
    while time.perf_counter() - settled < 0.5:
        await asyncio.sleep(0.005)
        if view_state(explorer) != state:
            updates, state, settled = updates + 1, view_state(explorer), time.perf_counter()
    check(example, explorer.result, values_of(explorer))
    if getattr(explorer, "updates", None) is not None:  # the callback knows when the last output was handed over
        settled = explorer.updates.at
    return updates / dragged, max(0.0, (settled - last_move) * 1e3)


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=40, help="slider moves per measurement")
    parser.add_argument("--drag-seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="2 moves, a 0.3 s drag (for the test)")
    args = parser.parse_args()
    moves, seconds = (2, 0.3) if args.quick else (args.moves, args.drag_seconds)
    import tensorflow as tf
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tapemagic")
    shell.run_cell("import tensorflow as tf", store_history=False, silent=True)
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores; {moves} moves per measurement; ms per update")
    print(f"{'example':8s} {'cell ms':>8s} {'rerun med':>10s} {'p90':>7s} {'update med':>11s} {'p90':>7s} {'updates/s':>10s} "
          f"{'in loop med':>12s} {'p90':>7s} {'drag updates/s':>15s} {'drag settle ms':>15s} {'2nd slider med':>15s} {'p90':>7s}")
    for example in EXAMPLES:
        explorer, cell_ms = explorer_for(shell, example)
        reruns = time_rerun(example, explorer, shell.user_ns[RESULT_NAME].rerun, moves)
        updates, deferred = time_update(example, explorer, moves)
        others = time_update(example, explorer, moves, slider_index=1)[0] if len(explorer.sliders) > 1 else None
        looped = asyncio.run(time_in_loop(example, explorer, moves))
        rate, settle = asyncio.run(drag(example, explorer, seconds))
        print(f"{example[0]:8s} {cell_ms:8.1f} {statistics.median(reruns):10.2f} {p90(reruns):7.2f} "
              f"{statistics.median(updates):11.2f} {p90(updates):7.2f} {1e3 / statistics.median(updates):10.1f} "
              f"{statistics.median(looped):12.2f} {p90(looped):7.2f} {rate:15.1f} {settle:15.1f}"
              + (f" {statistics.median(others):15.2f} {p90(others):7.2f}" if others else f" {'-':>15s} {'-':>7s}"), flush=True)
        if deferred:
            print(f"  ({example[0]}: setting a slider did not update the view by itself; update() was called and timed)")
    print("every updated result agrees with the derivatives by hand (rtol 1e-4)")


if __name__ == "__main__":
    main()
