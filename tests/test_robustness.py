"""Trying to break tapemagic: generated magic lines and source values, hostile strings,
re-runs counted, no eval of the line, memory over 1,000 runs, results freed."""
from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest
from IPython.utils.capture import capture_output
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from tensorflow.python.eager import record

from tapemagic._spec import SpecError, TapeSpec, parse_line

LINES_TRIED = 3000
VALUES_TRIED = 800
MAGIC_LINES_TRIED = 400
COUNTS = {"lines": 0, "values": 0, "magic lines": 0}

OPTIONS = ["-t", "--target", "-n", "--order", "--jacobian", "--hessian", "-p", "--persistent", "--no-auto-watch",
           "--no-watch", "-o", "--out", "--display", "--forward", "--check", "--eps", "--hvp", "--eager",
           "--explore", "--range", "--bogus", "-x", "--", "-"]
WORDS = st.one_of(
    st.sampled_from(OPTIONS),
    st.sampled_from(["x", "y", "x.y", "layer.kernel", "model.trainable_variables", "missing", "1x", "x[0]", "none",
                     "text", "html", "widget", "auto", "0", "-1", "2", "99", "1e-3", "-3:3", "x=-3:3", "x=3:-3",
                     "x=a:b", "'", '"', "\\", "<script>alert(1)</script>", "__import__('os').system('true')",
                     "x;y", "$x", "{x}", "é", "∂", "\x00"]),
    st.text(max_size=12),
)


@settings(max_examples=LINES_TRIED, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(WORDS, max_size=8).map(" ".join))
def test_generated_lines_parse_or_say_why(line):
    COUNTS["lines"] += 1
    try:
        spec = parse_line(line)
    except SpecError as error:
        assert str(error)  # a message, never an empty one
        return
    assert isinstance(spec, TapeSpec)


def test_the_line_fuzz_ran_its_thousands():
    assert COUNTS["lines"] >= LINES_TRIED * 0.9, COUNTS


@pytest.fixture(scope="module")
def fuzz_shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tapemagic")
    before = set(shell.user_ns)
    shell.run_cell(
        "import tensorflow as tf\nx = tf.Variable([1.0, 2.0])\ny = tf.Variable(3.0)\nv = tf.ones(3)\n"
        "def probe(value):\n    try:\n        return tf.reduce_sum(tf.cast(value, tf.float32))\n    except Exception:\n"
        "        return tf.constant(0.0)\n"
    )
    yield shell
    for name in set(shell.user_ns) - before:  # the session's shell is shared: later tests must not see x, y, z
        del shell.user_ns[name]


@settings(max_examples=MAGIC_LINES_TRIED, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(WORDS, max_size=6).map(" ".join))
def test_generated_lines_through_the_magic(fuzz_shell, line):
    """A generated line through a real shell: a result or a UsageError, nothing else, never a tape left open."""
    COUNTS["magic lines"] += 1
    before = {name: fuzz_shell.user_ns[name] for name in ("x", "y", "v", "probe")}
    try:
        result = fuzz_shell.run_cell_magic("tape", line, "z = probe(x) * y")
    except UsageError as error:
        assert str(error)
    else:
        if result is not None:
            assert result.to_text() and result.to_html()
    finally:
        for name, value in before.items():
            fuzz_shell.user_ns[name] = value  # a converted source is rebound by design; put it back for the next example
    assert not record.could_possibly_record()


def _values() -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                        st.complex_numbers(max_magnitude=1e3), st.text(max_size=5), st.binary(max_size=5))
    dtypes = st.sampled_from(["int8", "int32", "int64", "float16", "float32", "float64", "bool", "complex64", "object", "str"])
    arrays = st.builds(lambda dtype, n: np.zeros(n, dtype=dtype) if dtype != "str" else np.array(["a"] * n), dtypes, st.integers(0, 4))
    tensors = st.builds(
        lambda dtype, n: tf.zeros([n], dtype=dtype) if dtype != "string" else tf.constant(["<b>"] * n),
        st.sampled_from(["int32", "float32", "float64", "bool", "complex64", "string", "float16"]), st.integers(0, 3))
    special = st.sampled_from([
        "ragged", "sparse", "generator", "function", "class", "model", "layer", "variable", "int variable", "list of variables",
        "dict of variables", "empty list", "list of numbers", "nested", "raises on read",
    ]).map(_special)
    leaves = st.one_of(scalars, arrays, tensors, special)
    return st.one_of(leaves, st.lists(leaves, max_size=3), st.dictionaries(st.text(max_size=4), leaves, max_size=3),
                     st.tuples(leaves, leaves))


def _special(kind: str):
    if kind == "ragged":
        return tf.ragged.constant([[1.0], [2.0, 3.0]])
    if kind == "sparse":
        return tf.sparse.from_dense([[0.0, 1.0]])
    if kind == "generator":
        return (i for i in range(3))
    if kind == "function":
        return lambda t: t
    if kind == "class":
        return tf.Variable
    if kind == "model":
        return _MODEL
    if kind == "layer":
        return _MODEL.layers[0]
    if kind == "variable":
        return tf.Variable([1.0, -1.0])
    if kind == "int variable":
        return tf.Variable([1, 2])
    if kind == "list of variables":
        return [tf.Variable(1.0), tf.Variable([2.0, 3.0])]
    if kind == "dict of variables":
        return {"a": tf.Variable(1.0), "<i>b</i>": tf.Variable(2.0)}
    if kind == "empty list":
        return []
    if kind == "list of numbers":
        return [1.0, 2.0]
    if kind == "nested":
        return [[tf.Variable(1.0)]]

    class Hostile:
        def __getattr__(self, name):
            raise RuntimeError("no attributes here")

        def __array__(self, *args, **kwargs):
            raise RuntimeError("no array either")

    return Hostile()


_MODEL = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(1)])


@settings(max_examples=VALUES_TRIED, deadline=None, suppress_health_check=list(HealthCheck))
@given(_values())
def test_generated_source_values(fuzz_shell, value):
    """Whatever the user's x holds: a result that renders, or a UsageError; x itself is kept."""
    COUNTS["values"] += 1
    fuzz_shell.user_ns["w"] = value
    try:
        result = fuzz_shell.run_cell_magic("tape", "w --display none -o r", "z = probe(w)")
        r = fuzz_shell.user_ns.get("r")
        assert r is not None and r.to_text() and r.to_html()
        for source in r.sources:
            r.why(source.name)
        assert result is None
    except UsageError as error:
        assert str(error)
        assert fuzz_shell.user_ns["w"] is value  # a rejected source is never rebound
    finally:
        fuzz_shell.user_ns.pop("r", None)
    assert not record.could_possibly_record()


def test_the_value_fuzz_ran_its_hundreds():
    assert COUNTS["values"] >= VALUES_TRIED * 0.9 and COUNTS["magic lines"] >= MAGIC_LINES_TRIED * 0.9, COUNTS
    print(f"fuzz counts: {COUNTS}")


HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


def _assert_inert(html: str) -> None:
    for bad in ("<script", "<img", "onerror=alert(1)>"):
        assert bad not in html, html[:400]


def test_hostile_names_and_strings_are_escaped_in_html_and_widgets(shell):
    shell.user_ns["d"] = {HOSTILE[0]: tf.Variable(1.0), HOSTILE[1]: tf.Variable(2.0)}
    shell.user_ns["s"] = tf.constant(HOSTILE)
    shell.user_ns["hostile"] = tf.Variable(3.0, name="hostile")
    r = shell.run_cell_magic("tape", "d s hostile --jacobian", "out = d[" + repr(HOSTILE[0]) + "] * hostile")
    html = r.with_display(display="html").to_html()
    _assert_inert(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    view = r.widget()
    texts = [child.value for child in view.children]
    for text in texts:
        _assert_inert(text)
    assert any("&lt;script&gt;" in text for text in texts)


def test_hostile_error_message_in_an_explore_rerun_is_inert(shell):
    from tapemagic._api import new_engine, run_code
    from tapemagic.render import widget

    namespace = {"tf": tf, "x": tf.Variable(1.0)}
    code = "if float(x) > 2:\n    raise ValueError('<img src=x onerror=alert(1)>')\ny = x * 2"
    r = run_code(new_engine(), parse_line("x --explore --range x=0:4"), code, namespace)
    explorer = widget.Explorer(r)
    explorer.sliders["x"].value = 3.0
    assert "onerror" in explorer.error.value
    _assert_inert(explorer.error.value)


def test_the_line_is_never_evaluated(shell, tmp_path):
    marker = tmp_path / "evaluated"
    payloads = [f"__import__('pathlib').Path({str(marker)!r}).touch()", f"-t __import__('os').system('touch {marker}')",
                f"x -o {{__import__('os').system('touch {marker}')}}"]
    shell.run_cell("x = tf.Variable(1.0)")
    for payload in payloads:
        with pytest.raises(UsageError):
            shell.run_cell_magic("tape", payload, "y = x")
    assert not marker.exists()


def test_the_cell_runs_once_and_replays_only_when_they_leave_no_trace(shell, trace_first_run):
    shell.run_cell("calls = []\nx = tf.Variable([1.0, 2.0])")
    body = "calls.append(1)\ny = tf.reduce_sum(x ** 3)"
    r = shell.run_cell_magic("tape", "x -n 3 --jacobian --hessian", body)
    assert len(shell.user_ns["calls"]) == 1 and r.path == "eager"
    shell.run_cell("calls.clear()")
    with pytest.raises(UsageError, match="line 1 calls calls.append"):
        shell.run_cell_magic("tape", "x --forward --check", body)
    assert shell.user_ns["calls"] == []  # refused before anything ran
    shell.run_cell("big = tf.Variable(tf.linspace(0.0, 1.0, 32))")
    r = shell.run_cell_magic("tape", "big --hessian", "calls.append(1)\ny = tf.reduce_sum(big ** 3)")
    assert r.path == "eager" and len(shell.user_ns["calls"]) == 1  # not traced: tracing would append again
    assert any("not traced" in note and "calls.append" in note for note in r.notes), r.notes
    # A cell without effects is replayed (forward mode, finite differences, tracing), printing nothing more.
    shell.run_cell("calls.clear()")
    with capture_output() as out:
        r = shell.run_cell_magic("tape", "x --forward --check", "print('once')\ny = tf.reduce_sum(x ** 3)")
    assert out.stdout == "once\n"
    notes = " ".join(r.notes)
    assert "--forward ran the cell's code 2 more times on a copy of the namespace" in notes
    assert "--check ran the cell's code 4 more times on a copy of the namespace" in notes
    with capture_output() as out:
        r = shell.run_cell_magic("tape", "big --hessian", "print('once')\ny = tf.reduce_sum(big ** 3)")
    assert out.stdout == "once\n" and r.path == "traced"


def test_results_not_kept_are_freed(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0])")
    result = shell.run_cell_magic("tape", "x -p -n 2 --hessian", "y = tf.reduce_sum(x ** 3)")
    tape_ref = weakref.ref(result.tape)
    result_ref = weakref.ref(result)
    del result
    gc.collect()
    assert result_ref() is None and tape_ref() is None


MEMORY_BOUND_MB = 20  # measured here: about 3 MB over 1,000 runs


def test_memory_over_a_thousand_runs(shell):
    def rss_mb() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    shell.run_cell("x = tf.Variable(tf.ones(64))\ny = tf.Variable(2.0)")
    lines = ["x y", "x y -p", "x y -n 2", "x --hessian", "x y --jacobian -p"]
    body = "f = tf.reduce_sum(tf.sin(x) * y ** 2)"
    for i in range(100):  # warm up: first traces and TensorFlow's own caches
        shell.run_cell_magic("tape", lines[i % len(lines)], body)
    gc.collect()
    start = rss_mb()
    for i in range(1000):
        shell.run_cell_magic("tape", lines[i % len(lines)], body)
    gc.collect()
    growth = rss_mb() - start
    print(f"memory growth over 1,000 %%tape runs: {growth:.1f} MB (bound {MEMORY_BOUND_MB} MB)")
    assert growth < MEMORY_BOUND_MB
