"""The engine's words in Chinese (issue #16), through a real shell with ``TapeMagics.language = "zh"``.

A None explanation of each kind, the notes of each engine path (eager, traced, replays, refusals,
conversions), and a SpecError of each kind the engine raises come out in Chinese: each message
holds Chinese text and no English sentence (four or more English words in a row), apart from what
is quoted from TensorFlow or Python. The numbers are the same in both languages, and a result made
in English after switching back is English again.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from IPython.core.error import UsageError

from conftest import run
from tapemagic._i18n import catalog, language
from tapemagic.engine import flow as flow_engine
from tapemagic.engine.words import kind_of

CJK = re.compile(r"[\u4e00-\u9fff]")
# Four English words of two letters or more in a row: a sentence left untranslated (not "%%tape x -t y").
ENGLISH = re.compile(r"[A-Za-z]{2,}(?:[ '-]+[A-Za-z]{2,}){3,}")
TENSORFLOW_QUOTE = "'The dtype of the watched tensor must be floating'"


def chinese(text: str, *quoted: str) -> str:
    """``text`` is Chinese: it has Chinese words and no English sentence, once ``quoted`` (what TensorFlow
    or Python said, shown as it said it) is taken out. Returns ``text``."""
    rest = str(text)
    for part in quoted:
        rest = rest.replace(part, "")
    assert CJK.search(rest), f"no Chinese in {text!r}"
    left = ENGLISH.findall(rest)
    assert not left, f"English left in {text!r}: {left}"
    return text


@pytest.fixture
def zh(shell):
    """The shell with Chinese on; the language it had afterwards."""
    magics = next(c for c in shell.configurables if type(c).__name__ == "TapeMagics")
    before = magics.language
    shell.run_line_magic("config", 'TapeMagics.language = "zh"')
    yield shell
    magics.language = before


def tape(shell, line: str, cell: str):
    result, _ = run(shell, f"{line} --display text", cell)
    return result


def refused(shell, line: str, cell: str) -> str:
    with pytest.raises(UsageError) as error:
        shell.run_cell_magic("tape", line, cell)
    return str(error.value)


# -- a None explanation of each kind ------------------------------------------------------------
def test_the_helper_catches_english(zh):
    with pytest.raises(AssertionError):
        chinese("x was not watched: a tensor must be watched")
    with pytest.raises(AssertionError):
        chinese("没有被监视：name it as a source or call tapemagic.watch(x)")
    chinese("{x} 没有被监视：请调用 tapemagic.watch(x)")


def test_not_connected(zh):
    zh.run_cell("x = tf.Variable([2.0, 2.0])\ny = tf.Variable(3.0)")
    r = tape(zh, "x y", "z = y ** 2")
    assert r.gradients["x"] is None and float(r.gradients["y"]) == 6.0
    assert kind_of(r.why("x")) == "not_connected"
    assert "z 不依赖于 x" in chinese(r.why("x"))


def test_an_integer_source(zh):
    zh.run_cell("n = tf.constant(2)\nx = tf.Variable(3.0)")
    r = tape(zh, "n x", "y = tf.cast(n, tf.float32) * x")
    assert kind_of(r.why("n")) == "integer_source"
    assert "n 的 dtype 是 int32" in chinese(r.why("n"), TENSORFLOW_QUOTE)


def test_an_integer_target(zh):
    zh.run_cell("x = tf.Variable(3.0)")
    r = tape(zh, "x", "y = tf.cast(x, tf.int32)")
    assert "整数或布尔结果没有梯度" in chinese(r.why("x"))


def test_an_integer_cast_on_the_way(zh):
    zh.run_cell("x = tf.Variable(3.7)")
    r = tape(zh, "x", "y = tf.cast(tf.cast(x, tf.int32), tf.float32) * 2.0")
    why = chinese(r.why("x"))
    assert kind_of(why) == "integer_cast" and "第 1 行转换成了整数类型" in why


def test_a_numpy_detour(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, "x", "y = np.sum(x.numpy() ** 2)")
    why = chinese(r.why("x"))
    assert kind_of(why) == "left_tensorflow"
    assert "计算离开了 TensorFlow" in why and "第 1 行调用了 .numpy()" in why and "第 1 行调用了 np.sum()" in why


@pytest.mark.parametrize(("setup", "line", "cell", "words"), [
    ("x = tf.Variable(3.0)", "x --no-auto-watch --no-watch", "y = x ** 2", "watch_accessed_variables=False"),
    ("v = tf.Variable(3.0, trainable=False)", "v --no-auto-watch --no-watch", "y = v ** 2", "梯度带不会自动监视它"),
])
def test_not_watched(zh, setup, line, cell, words):
    zh.run_cell(setup)
    r = tape(zh, line, cell)
    name = line.split()[0]
    assert r.gradients[name] is None and kind_of(r.why(name)) == "not_watched"
    assert words in chinese(r.why(name))


def test_a_source_that_only_decides_a_branch(zh):
    zh.run_cell("x = tf.constant(1.0)\nv0 = tf.Variable(2.0)\nv1 = tf.Variable(2.0)")
    r = tape(zh, "x v0 v1 -t result", "if x > 0.0:\n    result = v0\nelse:\n    result = v1 ** 2")
    assert "x 只决定走哪个分支（第 1 行" in chinese(r.why("x"))
    assert float(r.gradients["v0"]) == 1.0


def test_a_rebound_source(zh):
    zh.run_cell("x = tf.Variable(3.0)")
    r = tape(zh, "x -t y", "x = tf.constant(5.0)\ny = x * 2.0")
    assert kind_of(r.why("x")) == "rebound" and "第 1 行重新绑定了 x" in chinese(r.why("x"))
    assert any("第 1 行把 x（一个 tf.Variable）重新绑定为一个 Tensor" in chinese(note) for note in r.notes), r.notes


def test_an_op_without_a_gradient(zh):
    zh.run_cell("image = tf.Variable([[[0.5, 0.0, 0.0]]])\ndelta = tf.Variable(0.1)")
    r = tape(zh, "image delta", "new_image = tf.image.adjust_contrast(image, delta)")
    why = r.why("delta")
    quoted = re.search(r"LookupError: [^）]*", why).group()
    assert kind_of(why) == "no_gradient" and "没有为 AdjustContrastv2 注册梯度" in chinese(why, quoted)


def test_a_second_derivative_tensorflow_cannot_take(zh):
    zh.run_cell("x = tf.Variable(np.linspace(0.1, 1.0, 4))")
    r = tape(zh, "x --hessian --eager", "y = tf.reduce_sum(tf.py_function(lambda a: a * 2.0, [x], tf.float64) * x ** 2)")
    assert r.hessian is None
    notes = [note for note in r.notes if "可以求一次导，但不能求两次" in note]
    assert notes, r.notes
    message = re.search(r"（(\w+Error: [^）]*)）", notes[0]).group(1)
    chinese(notes[0], message)


def test_a_py_function_second_derivative_is_unknown(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, "x -n 2", "y = tf.reduce_sum(tf.py_function(lambda t: t ** 2, [x], tf.float32))")
    assert r.gradients["x"].numpy().tolist() == [2.0, 4.0] and r.derivatives[2]["x"] is None
    note = next(note for note in r.notes if "未知，而不是零" in note)
    assert "tf.py_function" in chinese(note) and "TensorFlow 运行了 EagerPyFunc" in note


@pytest.mark.parametrize(("line", "cell", "words"), [
    ("x", "y = tf.reduce_sum(tf.constant(x.numpy()) ** 2)", "第 1 行调用了 .numpy()"),
    ("x --no-auto-watch --no-watch", "y = tf.reduce_sum(x ** 2)", "没有被监视"),
    ("x", "y = float(tf.reduce_sum(x ** 2))", "目标 y 是 float，不是张量"),
])
def test_an_unknown_hessian_says_why(zh, line, cell, words):
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, f"{line} --hessian", cell)
    reason = r.target.unavailable["hessian"]
    assert r.hessian is None and words in chinese(reason, TENSORFLOW_QUOTE)


def test_a_none_jacobian_says_why(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, "x --jacobian", "y = np.sum(x.numpy() ** 2)")
    assert "对 x 的一阶导数为 None" in chinese(r.target.unavailable["jacobian"])


KERAS = """
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation='relu', name='dense'),
                          keras.layers.Dense(3, name='dense_1')], name='mlp')
model.layers[0].trainable = False
x = tf.constant(np.random.default_rng(0).normal(size=(8, 6)), tf.float32)
y = tf.constant(np.random.default_rng(1).normal(size=(8, 3)), tf.float32)
"""


def test_a_frozen_layer(zh):
    zh.run_cell(KERAS).raise_error()
    r = tape(zh, "", "loss = tf.reduce_mean((model(x) - y) ** 2)")
    rows = {f"{row.layer}/{row.variable}": row for row in r.layers}
    frozen = rows["mlp/dense/kernel"]
    assert frozen.flag == "None：冻结的层（trainable=False）" and kind_of(frozen.flag) == "none"
    assert "mlp/dense 设置了 trainable=False" in chinese(frozen.reason)
    # Named as sources, its variables are differentiated as a plain tape does, and a note says what that means.
    r = tape(zh, "model.weights", "loss = tf.reduce_mean((model(x) - y) ** 2)")
    rows = {f"{row.layer}/{row.variable}": row for row in r.layers}
    assert rows["mlp/dense/kernel"].norm is not None and kind_of(rows["mlp/dense/kernel"].flag) == "frozen"
    chinese(rows["mlp/dense/kernel"].flag)
    notes = [note for note in r.notes if "trainable=False 的 Keras 层" in note]
    assert len(notes) == 2, r.notes
    for note in notes:
        chinese(note)


def test_the_gradient_flow_flags_are_sorted_by_kind_not_words():
    # The flags' words follow the language; their kinds, which code compares, do not.
    with language("zh"):
        zh_flag = flow_engine._size_flag(50.0, 25.0, True)
    with language("en"):
        en_flag = flow_engine._size_flag(50.0, 25.0, True)
    assert kind_of(zh_flag) == kind_of(en_flag) == "exploding"
    assert zh_flag == "梯度爆炸：||g|| 是 ||w|| 的 25 倍" and en_flag == "exploding: ||g|| is 25x ||w||"


# -- the notes of each engine path ----------------------------------------------------------------
def test_the_eager_first_run_then_the_traced_run(zh):
    zh.run_cell("x = tf.Variable(np.linspace(0.0, 1.0, 20))")
    cell = "y = tf.reduce_sum(x * x * 3.0)  # i18n eager then traced"
    first = tape(zh, "x --hessian", cell)
    assert first.path == "eager"
    assert any("这段代码是第一次运行" in chinese(note) for note in first.notes), first.notes
    second = tape(zh, "x --hessian", cell)
    assert second.path == "traced"
    notes = [chinese(note) for note in second.notes if note.startswith("已追踪")]
    assert notes, second.notes
    np.testing.assert_allclose(second.hessian.numpy(), 6 * np.eye(20))
    third = tape(zh, "x --hessian", cell)
    assert any("缓存的" in note for note in third.notes), third.notes


def test_a_cell_that_changes_state_is_not_traced(zh, trace_first_run):
    zh.run_cell("x = tf.Variable(np.linspace(0, 1, 20))\nn = tf.Variable(0.0, dtype=tf.float64)")
    r = tape(zh, "x --hessian", "n.assign_add(1.0)\ny = tf.reduce_sum(x * x * n)")
    assert r.path == "eager" and float(zh.user_ns["n"]) == 1.0
    note = next(note for note in r.notes if note.startswith("即时执行的梯度带：没有追踪"))
    assert "第 1 行调用了 n.assign_add()，它会改变状态" in chinese(note)


def test_numbers_named_as_sources(zh):
    zh.run_cell("a = 2.0\nb = np.array([1.0, 2.0], np.float32)")
    r = tape(zh, "a b", "y = a * tf.reduce_sum(b ** 2)")
    assert float(r.gradients["a"]) == 5.0
    assert any("a 原本是 Python 数值" in chinese(note) for note in r.notes), r.notes
    assert any("b 原本是 NumPy float32" in chinese(note) for note in r.notes), r.notes
    assert zh.user_ns["a"] == 2.0


def test_forward_and_check_replays(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, "x --forward --check", "y = tf.reduce_sum(x ** 3)")
    np.testing.assert_allclose(r.target.forward["x"].numpy(), [3.0, 12.0])
    assert any(note.startswith("--forward 在单元格运行前") and chinese(note) for note in r.notes), r.notes
    assert any(note.startswith("--check 在单元格运行前") and chinese(note) for note in r.notes), r.notes


def test_forward_refused_for_a_cell_that_changes_state(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])\nlog = []")
    message = refused(zh, "x --forward", "log.append(1)\ny = tf.reduce_sum(x ** 2)")
    assert "--forward 需要再次运行单元格" in chinese(message) and "第 1 行调用了 log.append()" in message
    assert zh.user_ns["log"] == []


def test_a_replay_that_finds_an_effect_only_tensorflow_sees(zh):
    # tf.random.normal is library code: only TensorFlow's op log sees its random draw, during the real run.
    zh.run_cell("x = tf.Variable([1.0, 2.0])")
    r = tape(zh, "x --forward --check", "y = tf.reduce_sum(x ** 2) + tf.reduce_sum(tf.random.normal([1])) * 0.0")
    note = next(note for note in r.notes if note.startswith("没有运行 --forward 和 --check"))
    assert "TensorFlow 运行了 RandomStandardNormal，它会抽取随机数" in chinese(note)
    assert r.target.forward is None
    assert "没有运行：再运行一次会改变状态" in chinese(r.target.check["x"].problem)


def test_the_hvp_note_and_mixed_dtypes(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])\nw = tf.Variable(3.0, dtype=tf.float64)\nv = tf.ones_like(x)")
    r = tape(zh, "x --hvp v", "y = tf.reduce_sum(x ** 3)")
    np.testing.assert_allclose(r.target.hvp["x"].numpy(), [6.0, 12.0])
    assert any(note.startswith("--hvp：") and chinese(note) for note in r.notes), r.notes
    r = tape(zh, "x w --hessian", "y = tf.reduce_sum(tf.cast(x, tf.float64) ** 2) * w")
    assert any("黑塞矩阵以 float64 计算" in chinese(note) for note in r.notes), r.notes


def test_pfor_falling_back_is_a_note_in_chinese(zh):
    zh.run_cell("x = tf.Variable(np.linspace(0.1, 1.0, 20))\ncalls = []")
    r = tape(zh, "x --jacobian", "y = tf.py_function(lambda a: calls.append(1) or a * 2.0, [x], tf.float64) * x")
    note = next(note for note in r.notes if "pfor 无法" in note)
    message = re.search(r"（(\w+Error: .*)），", note).group(1)
    chinese(note, message)
    assert note.startswith("TensorFlow 提示：")


def test_the_graph_says_why_in_chinese(zh):
    zh.run_cell("x = tf.Variable(2.0)\nc = tf.constant(3.0)")
    r = tape(zh, "x --graph", "a = tf.stop_gradient(x) * c\nb = tf.round(x)\ny = a + b + x * x")
    assert float(r.gradients["x"]) == 4.0
    nodes = {node.op: node for node in r.graph.nodes}
    assert nodes["StopGradient"].no_gradient == "tf.stop_gradient 有意截断梯度：梯度不会经过它流回去"
    assert "Round 的梯度对每个输入都是 None" in chinese(nodes["Round"].no_gradient)
    assert chinese(nodes["Const"].adjoint_reason).startswith("常量：梯度带没有监视它")


# -- a SpecError of each kind the engine raises -------------------------------------------------------
SETUP = ("x = tf.Variable(3.0)\nname = 'text'\nmodel = tf.keras.Sequential([tf.keras.layers.Dense(2)])\n"
         "rag = tf.ragged.constant([[1.0], [2.0, 3.0]])\nsp = tf.sparse.from_dense([[0.0, 1.0]])\n"
         "empty = []\nnone_dict = {}\nflag = True\nz = 1 + 2j\nmixed = [x, 'a']\nbig = tf.Variable(tf.zeros(5000))\n"
         "class Boom:\n    @property\n    def prop(self):\n        raise ValueError('no')\nboom = Boom()\n")

REFUSED = [
    ("missing", "y = x", "名称 'missing' 未定义"),
    ("x.nope", "y = x", "'x.nope' 不存在"),
    ("boom.prop", "y = x", "读取 boom.prop 时抛出了 ValueError"),
    ("name", "y = x", "name 是 str，不是数值"),
    ("model", "y = x", "请改为指定它的变量"),
    ("rag", "y = x", "不规则张量"),
    ("sp", "y = x", "稀疏张量"),
    ("empty", "y = x", "empty 是空的"),
    ("none_dict", "y = x", "none_dict 是空 dict"),
    ("flag", "y = x", "flag 是 bool"),
    ("z", "y = x", "z 是复数"),
    ("mixed", "y = x", "mixed[1] 是 str"),
    ("x -t missing_target", "y = x", "目标 'missing_target' 既没有在单元格中赋值"),
    ("x", "for i in range(2):\n    pass", "无法判断要对什么求导"),
    ("x", "a, b = x, x", "请指明对哪一个求导"),
    ("x --hvp nowhere", "y = x ** 3", "--hvp nowhere：没有这个名称"),
    ("big --forward", "y = tf.reduce_sum(big ** 2)", "--forward 对每个源变量元素都要运行一遍，这里是 5000 遍"),
]


@pytest.mark.parametrize(("line", "cell", "words"), REFUSED, ids=[case[0] for case in REFUSED])
def test_a_refusal_of_each_kind(zh, line, cell, words):
    zh.run_cell(SETUP)
    message = refused(zh, line, cell)
    assert words in chinese(message, "ValueError: no"), message


def test_a_hvp_vector_of_the_wrong_size(zh):
    zh.run_cell("x = tf.Variable([1.0, 2.0])\nv = tf.ones(3)")
    assert "向量有 3 个元素，但源变量共有 2 个元素" in chinese(refused(zh, "x --hvp v", "y = tf.reduce_sum(x ** 3)"))


def test_a_target_the_cell_did_not_assign(zh):
    zh.run_cell("x = tf.Variable(3.0)")
    message = refused(zh, "x -t never", "if False:\n    never = x")
    assert "单元格运行了，但没有给目标 'never' 赋值" in chinese(message)


def test_the_size_guard(zh, monkeypatch):
    monkeypatch.setenv("TAPEMAGIC_MEMORY_LIMIT", "64M")
    zh.run_cell("x = tf.Variable(tf.zeros(3000))")
    message = refused(zh, "x --hessian", "y = tf.reduce_sum(x ** 3)")
    assert "对 3,000 个源变量元素做 --hessian" in chinese(message) and "--hvp V" in message
    monkeypatch.setenv("TAPEMAGIC_MEMORY_LIMIT", "a lot")
    assert "'a lot' 不是有效的大小" in chinese(refused(zh, "x --hessian", "y = tf.reduce_sum(x ** 3)"))


def test_the_jacobian_guard(zh, monkeypatch):
    monkeypatch.setenv("TAPEMAGIC_MEMORY_LIMIT", "256M")
    zh.run_cell("x = tf.Variable(tf.ones(3000))")
    r = tape(zh, "x --jacobian", "y = tf.concat([x, x, x, x], 0) * 2.0")
    assert float(r.gradients["x"][0]) == 8.0
    assert chinese(r.target.unavailable["jacobian"]).startswith("没有计算 y 对 x 的雅可比矩阵：它是一个 12,000 × 3,000 的 float32 矩阵")


def test_ipython_syntax_in_the_cell(zh):
    zh.run_cell("x = tf.Variable(3.0)")
    with pytest.raises(SyntaxError) as error:
        zh.run_cell_magic("tape", "x", "%time y = x")
    assert "%%tape 的单元格体是普通 Python 代码" in error.value.msg


# -- the language is the one asked for ----------------------------------------------------------------
def test_english_again_after_switching_back(zh):
    zh.run_cell("x = tf.Variable([2.0, 2.0])\ny = tf.Variable(3.0)")
    r = tape(zh, "x y", "z = y ** 2")
    assert "不依赖于" in r.why("x")
    zh.run_line_magic("config", 'TapeMagics.language = "en"')
    r = tape(zh, "x y", "z = y ** 2")
    assert r.why("x").startswith("z does not depend on x: x is not used to compute z")
    assert kind_of(r.why("x")) == "not_connected"


def test_every_engine_message_has_chinese():
    """Each message the engine writes (every _("...") in tapemagic/engine) has a translation with the
    same placeholders."""
    import ast
    import pathlib

    from tapemagic._i18n import placeholders

    table = catalog("zh")
    engine = pathlib.Path(__file__).resolve().parent.parent / "tapemagic" / "engine"
    found = 0
    for path in sorted(engine.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                message = node.args[0].value
                found += 1
                assert message in table, f"{path.name}: no Chinese for {message!r}"
                assert placeholders(table[message]) == placeholders(message), message
    assert found > 150
