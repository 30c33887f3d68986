"""Magic line -> TapeSpec, and bad lines -> SpecError (UsageError in the shell) that says how to fix them."""
from __future__ import annotations

import pytest

from tapemagic._spec import SpecError, TapeSpec, parse_line, split_line_magic


def test_full_line():
    spec = parse_line("x layer.kernel -t y -t z -n 3 --jacobian --hessian -p --no-auto-watch -o r --display text")
    assert spec == TapeSpec(sources=("x", "layer.kernel"), targets=("y", "z"), order=3, jacobian=True, hessian=True,
                            persistent=True, auto_watch=False, out="r", display="text")
    assert spec.depth == 3


def test_defaults_and_depth():
    spec = parse_line("")
    assert spec == TapeSpec() and spec.depth == 1
    assert parse_line("x --hessian").depth == 2


def test_line_magic_split():
    assert split_line_magic("x -- x**3 + 2*x**2 + 1") == ("x", "x**3 + 2*x**2 + 1")
    assert split_line_magic("-- x**2") == ("", "x**2")


@pytest.mark.parametrize(("line", "message"), [
    ("x -n 0", "order must be 1 or more"),
    ("x -n -2", "order must be 1 or more"),
    ("x -n two", "order must be a whole number"),
    ("x -n 99", "more than tapemagic computes"),
    ("x --bogus", "unrecognized arguments: --bogus"),
    ("x -t", "expected one argument"),
    ("x -t y -t y", "named twice"),
    ("x x", "named twice"),
    ("x -t a.b", "not a plain name"),
    ("1x", "not a name or a dotted path"),
    ("x[0]", "not a name or a dotted path"),
    ("x --display fancy", "invalid choice"),
    ("x -o 'not a name'", "plain name"),
    ("x --no-watch", "--no-watch only makes sense with --no-auto-watch"),
    ("x --eps 1e-3", "add --check"),
    ("x --check --eps -1", "small positive step"),
    ("x --range x=-3:3", "add --explore"),
    ("x --explore --range x=3:-3", "low end must be below"),
    ("x --explore --range x=a:b", "NAME=LOW:HIGH"),
    ("x --explore --range y=0:1", "not a source"),
    ("x 'unclosed", "check its quotes"),
])
def test_bad_lines(line, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[")):
        parse_line(line)


def test_line_magic_needs_an_expression():
    with pytest.raises(SpecError, match="needs an expression after ' -- '"):
        split_line_magic("x")
    with pytest.raises(SpecError, match="nothing to differentiate"):
        split_line_magic("x --  ")


def test_help_lists_every_option():
    from tapemagic._spec import HELP

    for option in ("--target", "--order", "--jacobian", "--hessian", "--persistent", "--no-auto-watch",
                   "--out", "--display", "--forward", "--check", "--hvp", "--explore", "--range"):
        assert option in HELP
