"""Targets that are not one dense tensor: a tf.SparseTensor, a tf.RaggedTensor, a tuple or dict of tensors of
different shapes. TensorFlow's own tapes refuse some of them (tape.gradient a SparseTensor, tape.jacobian a
RaggedTensor); tapemagic shows the value, the derivatives TensorFlow can take, and for the others None with
a reason that says what to write instead, in every display and on every path (first run, traced re-runs,
the Python API). Before, each of these crashed (a ValueError from TensorFlow, or from the renderer)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from conftest import run, value
from tapemagic import _i18n
from tapemagic.render import numbers

SPARSE = "y = tf.sparse.from_dense(x * x)"
RAGGED = "y = tf.RaggedTensor.from_row_lengths(x * x, [2, 1])"


def _reason(result, kind: str) -> str:
    target = result.targets[0]
    return target.unavailable.get(kind) or target.reasons.get("x") or ""


@pytest.mark.parametrize("options", ["", "-n 2", "--hessian", "--jacobian", "--check", "--forward", "--graph"])
def test_a_sparse_target_has_none_with_the_fix_in_words_and_its_value_shown(shell, options):
    shell.run_cell("x = tf.Variable([1.0, 2.0, 3.0])")
    result, captured = run(shell, f"x {options} -o r", SPARSE)
    r = shell.user_ns["r"]
    target = r.targets[0]
    assert target.derivatives[1].get("x") is None
    assert "tf.SparseTensor" in target.reasons["x"] and "y.values" in target.reasons["x"]
    assert "tf.sparse.to_dense(y)" in target.reasons["x"]
    text = r.to_text()
    assert "y = [1, 4, 9] (a SparseTensor, 3 stored)" in text
    assert "SparseTensor(indices=" not in text + r.to_html()  # never TensorFlow's multi-line repr
    for kind in ("jacobian", "hessian"):
        if f"--{kind}" in options:
            assert "tf.SparseTensor" in target.unavailable[kind]


def test_a_target_holding_a_sparse_part_says_so():
    x = tf.Variable([1.0, 2.0])
    r = tapemagic.tape("y = (tf.reduce_sum(x), tf.sparse.from_dense(x * x))", ["x"], namespace={"tf": tf, "x": x},
                       jacobian=True)
    assert "holds a tf.SparseTensor" in r.targets[0].reasons["x"]
    assert "holds a tf.SparseTensor" in r.targets[0].unavailable["jacobian"]
    assert r.to_text().startswith("tape: y = [3, [1, 4]]")


def test_a_ragged_target_has_its_gradient_and_check_and_its_jacobian_explained(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0, 3.0])")
    run(shell, "x --jacobian -o r", RAGGED)
    r = shell.user_ns["r"]
    assert value(r.gradients["x"]) == [2.0, 4.0, 6.0]  # the gradient of the sum of its entries, as TensorFlow's
    assert r.targets[0].jacobian is None
    reason = r.targets[0].unavailable["jacobian"]
    assert "tf.RaggedTensor" in reason and "y.flat_values" in reason and "y.to_tensor()" in reason
    assert "y = [[1, 4], [9]]" in r.to_text()
    run(shell, "x --check -o r", RAGGED)
    check = shell.user_ns["r"].targets[0].check["x"]
    assert check.ok, check


def test_the_eager_answer_stands_on_every_re_run_without_a_failed_trace_in_the_notes(shell):
    """Re-runs would trace the cell (400 sources are enough to pay for it); a trace cannot take these targets
    either, so none is tried, and the result is the same each time."""
    shell.run_cell("x = tf.Variable(tf.linspace(0.0, 1.0, 400))")
    for options, cell, kind in [("--hessian", SPARSE, "hessian"),
                                ("--jacobian", "y = tf.RaggedTensor.from_row_lengths(x * x, [200, 200])", "jacobian")]:
        for _ in range(3):
            run(shell, f"x {options} -o r", cell)
            r = shell.user_ns["r"]
            assert kind in r.targets[0].unavailable
            assert not any("tracing the cell failed" in note for note in r.notes), r.notes


@pytest.mark.parametrize("n", [3, 20])
def test_a_ragged_targets_hessian_is_traced_on_re_runs_and_agrees(shell, n):
    # A ragged target's Hessian (of the sum of its entries) is traced when the cell runs again; comparing the trace
    # with the run used to raise (NumPy cannot read a RaggedTensor as one array) and crash the cell. validate=False:
    # without it, the row-length check is an Assert op, which keeps the cell from being traced at all.
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {n}))")
    cell = f"y = tf.RaggedTensor.from_row_lengths(tf.sin(x) * x, [{n - 1}, 1], validate=False)"
    runs = [run(shell, "x --hessian -o r", cell)[0] for _ in range(3)]
    assert [r.path for r in runs] == ["eager", "traced", "traced"]
    xs = np.linspace(0.5, 1.5, n, dtype=np.float32)
    expected = np.diag(2 * np.cos(xs) - xs * np.sin(xs))  # d2/dx2 of x sin(x)
    for r in runs:
        np.testing.assert_allclose(r.targets[0].hessian.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_the_python_api_explains_a_sparse_function_result():
    x = tf.constant([1.0, 2.0])

    def f(x):  # one function, so its second call takes the paths of code seen before
        return tf.sparse.from_dense(x * x)

    for _ in range(3):
        r = tapemagic.tape(f, [x], hessian=True, display="none")
        assert "f.values" in r.targets[0].reasons["x"] and r.targets[0].hessian is None
    r = tapemagic.tape(lambda x: tf.RaggedTensor.from_row_lengths(x * x, [1, 1]), [x], jacobian=True, display="none")
    assert "f.flat_values" in r.targets[0].unavailable["jacobian"]


def test_a_tuple_of_different_shapes_renders_everywhere_and_its_jacobian_stacks_the_parts(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0, 3.0])")
    run(shell, "x --jacobian -o r", "y = (x * 2, tf.reduce_sum(x))")
    r = shell.user_ns["r"]
    assert r.to_text().startswith("tape: y = [[2, 4, 6], 6]")
    assert value(r.targets[0].jacobian["x"]) == [[2, 0, 0], [0, 2, 0], [0, 0, 2], [1, 1, 1]]
    html = r.to_html()
    assert "y = [[2, 4, 6], 6]" in html
    bundle = r.with_display(display="widget")._repr_mimebundle_()
    assert "text/html" in bundle
    run(shell, "x --check -o r", "y = (x * 2, tf.reduce_sum(x))")
    assert shell.user_ns["r"].targets[0].check["x"].ok


def test_a_dict_target_reads_as_a_dict():
    x = tf.Variable([1.0, 2.0, 3.0])
    r = tapemagic.tape("y = {'a': x * 2, 'b': tf.reduce_sum(x)}", ["x"], namespace={"tf": tf, "x": x}, order=2)
    assert r.to_text().startswith("tape: y = {a: [2, 4, 6], b: 6}")
    assert value(r.derivatives[2]["x"]) == [0.0, 0.0, 0.0]


def test_large_parts_are_summarised_one_by_one():
    from tapemagic.render import numbers

    text = numbers.array((np.arange(400.0), np.float32(2.0)), 4, 12)
    assert text.startswith("[shape (400,) min 0 max 399") and text.endswith(", 2]")
    assert numbers.array([np.arange(3.0)] * 2 + [np.arange(2.0)] * 2, 4, 3) == "[[0, 1, 2], [0, 1, 2], [0, 1], …]"


def test_the_reasons_are_in_chinese_too():
    x = tf.Variable([1.0, 2.0])
    with _i18n.language("zh"):
        sparse = tapemagic.tape(SPARSE, ["x"], namespace={"tf": tf, "x": x}, language="zh")
        ragged = tapemagic.tape("y = tf.RaggedTensor.from_row_lengths(x * x, [1, 1])", ["x"],
                                namespace={"tf": tf, "x": x}, jacobian=True, language="zh")
    assert "稠密形式 tf.sparse.to_dense(y)" in sparse.targets[0].reasons["x"]
    assert "（SparseTensor，存储了 2 个值）" in sparse.to_text()
    assert "y.flat_values（逐行排列的全部元素）" in ragged.targets[0].unavailable["jacobian"]


def test_a_huge_sparse_target_is_shown_by_its_shape_not_made_dense():
    # 100000 x 100000 dense would be 40 GB: the views say its shape and how many values it stores.
    x = tf.Variable([1.0, 2.0])
    r = tapemagic.tape("y = tf.SparseTensor([[0, 0]], [tf.reduce_sum(x)], [100000, 100000])", ["x"],
                       namespace={"x": x, "tf": tf}, display="none")
    assert "y = shape (100000, 100000) (a SparseTensor, 1 stored)" in r.to_text()
    assert "shape (100000, 100000) (a SparseTensor, 1 stored)" in r.to_html()


def test_indexed_slices_are_shown_dense_not_as_tensorflows_repr():
    # tf.IndexedSlices has indices, values and dense_shape too, but one index per row: not a SparseTensor.
    slices = tf.IndexedSlices(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([2, 0]), tf.constant([3, 2]))
    assert numbers.array(slices, 4, 10) == "[[3, 4], [0, 0], [1, 2]]"


def test_the_explore_widget_sums_a_structured_target_part_by_part():
    from tapemagic.render import widget

    assert widget._total((np.array([1.0, 1.0]), np.array(1.0))) == 3.0  # NumPy's sum would broadcast to [2, 2]
    assert widget._total(tf.RaggedTensor.from_row_lengths([1.0, 2.0, 3.0], [2, 1])) == 6.0
    assert widget._total(tf.sparse.from_dense([[0.0, 2.0], [5.0, 0.0]])) == 7.0
