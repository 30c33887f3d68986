"""What a first run pays beyond the arithmetic, taken out without changing an answer (#17):
pfor's AutoGraph conversion, a variable copied to ask whether it is an iterator, and the magic
line parsed again on every run."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.autograph.impl import api as autograph_api

import tapemagic
from tapemagic import _i18n
from tapemagic._spec import SpecError, parse_line
from tapemagic.engine import effects
from tapemagic.engine.core import Engine


@pytest.fixture
def conversions(monkeypatch) -> list:
    """Every function AutoGraph is asked to convert while the test runs."""
    seen: list = []
    original = autograph_api.converted_call

    def counting(f, *args, **kwargs):
        seen.append(getattr(f, "__name__", repr(f)))
        return original(f, *args, **kwargs)

    monkeypatch.setattr(autograph_api, "converted_call", counting)
    return seen


def test_plain_tape_jacobian_goes_through_autograph(conversions):
    # The reference for the test below: eager tape.jacobian wraps pfor in a tf.function with AutoGraph on.
    x = tf.constant(np.linspace(0.5, 2.0, 20))
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(x ** 3)
        g = inner.gradient(y, x)
    outer.jacobian(g, x)
    assert conversions, "pfor no longer converts with AutoGraph: the fix below may be moot"


@pytest.mark.parametrize("option", ["hessian", "jacobian"])
def test_a_first_run_vectorizes_without_autograph(conversions, option):
    x = np.linspace(0.5, 2.0, 20)
    namespace = {"tf": tf, "x": tf.Variable(x)}
    code = "y = tf.reduce_sum(x ** 3)" if option == "hessian" else "y = tf.sin(x) * x"
    r = tapemagic.tape(code, ["x"], namespace=namespace, engine=Engine(), display="none", **{option: True})
    assert r.path == "eager"
    assert conversions == []
    if option == "hessian":
        np.testing.assert_allclose(r.hessian.numpy(), np.diag(6 * x), rtol=1e-12)
    else:
        np.testing.assert_allclose(r.jacobian["x"].numpy(), np.diag(np.cos(x) * x + np.sin(x)), rtol=1e-12)


def test_an_unconnected_source_is_still_none_or_zero_on_a_first_run():
    namespace = {"tf": tf, "x": tf.Variable(np.ones(20)), "z": tf.Variable(np.ones(20))}
    r = tapemagic.tape("y = tf.reduce_sum(x ** 2)", ["x", "z"], namespace=namespace, engine=Engine(), display="none",
                       jacobian=True)
    assert r.jacobian["z"] is None and "y does not depend on z" in r.targets[0].reasons["z"]
    np.testing.assert_allclose(r.jacobian["x"].numpy(), 2 * np.ones(20))


def test_an_iterator_is_told_by_its_type_without_iterating():
    asked = []

    class Iterable:
        def __iter__(self):
            asked.append(1)
            return iter([1, 2])

    class Iterator:
        def __iter__(self):
            return self

        def __next__(self):
            raise StopIteration

    for value in (iter([1]), itertools.count(), io.StringIO("a\nb"), Iterator(), (i for i in range(2))):
        assert effects._consumed_when_read(value), value
    for value in (Iterable(), [1, 2], np.ones(3), tf.ones(3), tf.Variable(np.ones(10_000)), "text"):
        assert not effects._consumed_when_read(value), value
    assert asked == []  # iter() was not called: it would have copied a variable's value


def test_the_line_is_parsed_once_and_errors_in_each_language():
    assert parse_line("x y --hessian -o r") is parse_line("x y --hessian -o r")
    assert parse_line("x y --hessian -o r").hessian
    with _i18n.language("en"), pytest.raises(SpecError, match="order must be 1 or more, not 0"):
        parse_line("x --order 0")
    with _i18n.language("zh"), pytest.raises(SpecError, match="阶数至少为 1"):
        parse_line("x --order 0")
    with _i18n.language("en"), pytest.raises(SpecError, match="unrecognized arguments: --bogus"):
        parse_line("x --bogus")
