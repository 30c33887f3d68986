"""tapemagic in Chinese (#16): the catalog covers every message, translations keep their placeholders, and through a
real IPython shell with ``%config TapeMagics.language = "zh"`` results, errors, ``%%tape?`` and the --explore view
speak Chinese, while switching back gives English on the next result.

The catalog checks read the code as gettext's tools do (Babel's extractor, keyword ``_``), so a message written as
an f-string, or built from fragments, fails here rather than showing in English to a Chinese reader.
"""
from __future__ import annotations

import ast
import pathlib
import re

import polib
import pytest
from babel.messages.extract import extract
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import tapemagic
import tapemagic._spec
from tapemagic import _i18n
from tapemagic.render import wrap

from conftest import run

PACKAGE = pathlib.Path(tapemagic.__file__).resolve().parent
CATALOG = PACKAGE / "locale" / "zh_CN" / "LC_MESSAGES" / "tapemagic.po"
CJK = re.compile(r"[\u4e00-\u9fff]")


def messages() -> dict[str, list[str]]:
    """Every message the code passes to ``_()``, as Babel's extractor finds it, with where it is."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        with open(path, "rb") as source:
            for line, message, _comments, _context in extract("python", source, keywords={"_": None}):
                found.setdefault(message, []).append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    return found


def entries() -> list[polib.POEntry]:
    return [entry for entry in polib.pofile(str(CATALOG)) if entry.msgid and not entry.obsolete]


# -- the catalog ---------------------------------------------------------------------------------------------------

def test_every_message_in_the_code_has_a_chinese_translation():
    translated = {entry.msgid for entry in entries() if entry.msgstr.strip() and "fuzzy" not in entry.flags}
    found = messages()
    assert len(found) > 300  # the extractor sees the package's messages (not an empty walk)
    missing = {message: where for message, where in found.items() if message not in translated}
    assert not missing, "messages without a Chinese translation in tapemagic.po:\n" + "\n".join(
        f"  {where[0]}: {message!r}" for message, where in missing.items())


def test_every_translation_keeps_the_placeholders_of_its_message():
    wrong = [(entry.msgid, _i18n.placeholders(entry.msgid), _i18n.placeholders(entry.msgstr))
             for entry in entries() if entry.msgstr and _i18n.placeholders(entry.msgid) != _i18n.placeholders(entry.msgstr)]
    assert not wrong, "\n".join(f"{msgid!r}: English has {sorted(a)}, Chinese has {sorted(b)}" for msgid, a, b in wrong)


def test_every_translation_keeps_the_magic_names_and_percent_signs():
    """%%tape, %tape, %%config: what the user types (and argparse's help, which reads %% as %) stays as written."""
    def tokens(text: str) -> list[str]:
        return sorted(re.findall(r"%%?(?:tape|config)\b|%\(", text))

    wrong = [entry.msgid for entry in entries() if entry.msgstr and tokens(entry.msgid) != tokens(entry.msgstr)]
    assert not wrong, wrong


def test_the_catalog_has_each_message_once_and_translations_in_chinese():
    ids = [entry.msgid for entry in entries()]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    # A translation with letters is written in Chinese (a message of only names and signs may stay as it is).
    english = [entry.msgid for entry in entries()
               if re.search(r"[A-Za-z]{4,} [a-z]{3,} [a-z]{3,}", entry.msgstr) and not CJK.search(entry.msgstr)]
    assert not english, english


def _calls_of_underscore(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"]


def _names_bound_in(function: ast.AST) -> set[str]:
    """The names a function binds in its own scope (not in its comprehensions, lambdas or nested functions)."""
    bound: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(child.name)
                continue
            if isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                bound.add(child.id)
            elif isinstance(child, ast.arg):
                bound.add(child.arg)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                bound.update((alias.asname or alias.name).split(".")[0] for alias in child.names)
            visit(child)

    visit(function)
    return bound


def test_messages_are_literals_the_extractor_can_see():
    """``_("... {name} ...", name=value)``: never an f-string, ``%`` or ``+`` (the catalog would hold no such
    message), never ``_()`` inside an f-string or inside another ``_()``'s arguments (the extractor does not look
    there), never ``.format`` on the translation, and never a local ``_`` beside a call of the real one."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(PACKAGE.parent)
        for call in _calls_of_underscore(tree):
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                problems.append(f"{where}:{call.lineno}: _() of {ast.unparse(first) if first else 'nothing'}")
            inner = [node for argument in [*call.args, *(k.value for k in call.keywords)]
                     for node in _calls_of_underscore(argument)]
            problems += [f"{where}:{node.lineno}: _() inside another _()'s arguments: make it first" for node in inner]
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                problems += [f"{where}:{call.lineno}: _() inside an f-string" for call in _calls_of_underscore(node)]
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
                    and isinstance(node.func.value, ast.Call) and node.func.value in _calls_of_underscore(node)):
                problems.append(f"{where}:{node.lineno}: .format() on a translation: pass the fields to _()")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _calls_of_underscore(node):
                if "_" in _names_bound_in(node):
                    problems.append(f"{where}:{node.lineno}: {node.name} assigns _ and calls _()")
    assert not problems, "\n".join(problems)


def test_a_message_is_shown_in_english_unless_chinese_is_asked_for():
    assert _i18n.current() == "en"
    assert tapemagic._spec.help_text("en").startswith("usage: %%tape")
    assert tapemagic._spec.help_text("zh").startswith("用法：%%tape")
    with _i18n.language("zh"):
        from tapemagic._i18n import _
        assert _("{label} is None: {why}", label="∂f/∂x", why="…") == "∂f/∂x 为 None：…"
    assert _i18n.current() == "en"


# -- the language setting ------------------------------------------------------------------------------------------

def magics(shell):
    return next(c for c in shell.configurables if type(c).__name__ == "TapeMagics")


@pytest.fixture
def zh(shell):
    """The shell with %config TapeMagics.language = "zh"; the setting as it was afterwards."""
    before = magics(shell).language
    shell.run_line_magic("config", 'TapeMagics.language = "zh"')
    yield shell
    magics(shell).language = before


@pytest.fixture
def locale_env(monkeypatch):
    """No locale variable set (each test sets the one it means)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def shown(shell, line: str, cell: str) -> tuple[object, str, str]:
    """Run the magic; the result, and its text/plain and text/html as the notebook gets them."""
    result, _captured = run(shell, line, cell)
    bundle = result._repr_mimebundle_()
    return result, bundle["text/plain"], bundle["text/html"]


# Words of the English view that must not be left in a Chinese one (header, table heads, section titles, lines).
ENGLISH = ("tape: ", "order 1", "order 2", "non-persistent", "auto-watch", "watched:", "note:", "Hessian of",
           "Jacobian ∂", "Higher orders", "Notes (", "gradient flow by layer", "gradient norm per layer", "forward ∂",
           "passes:", "check ∂", "source  shape", "<th>source</th>", "<th>variable</th>", "<td>trainable</td>",
           "<th>layer</th>", "as Python", "blue &lt; 0", "is None:", "shape (")


def chinese(text: str, html: str) -> None:
    """The text view and the HTML speak Chinese: no English view words, lines within the text width."""
    assert CJK.search(text) and CJK.search(html)
    for view in (text, html):
        left = [words for words in ENGLISH if words in view]
        assert not left, (left, view)
    # Sentences (notes, None explanations, checks, the watched list) wrap within the text view's 100 columns.
    prose, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        starts = line.startswith(("说明：", "* ", "被监视的变量：", "检查 "))
        if starts or (prose and prose[-1] == index - 1 and line.startswith("  ") and not line.startswith("  值")):
            prose.append(index)
    too_wide = [lines[index] for index in prose if wrap.width(lines[index]) > 100]
    assert not too_wide, too_wide


def test_e1_in_chinese(zh):
    zh.run_cell("x = tf.Variable(3.)")
    r, text, html = shown(zh, "x", "y = tf.square(x)")
    assert r.language == "zh" and float(r.value) == 9.0 and float(r.gradients["x"]) == 6.0
    assert text.splitlines()[:3] == [
        "梯度带：y = 9（1 阶，非持久，自动监视，即时执行）",
        "源变量  形状  dtype    值  ∂y/∂·",
        "x       ()    float32  3   6",
    ]
    assert "被监视的变量：x () float32" in text
    assert "<th>源变量</th><th>形状</th><th>dtype</th><th>值</th>" in html
    assert "<th>变量</th><th>形状</th><th>dtype</th><th>可训练</th>" in html and "<td>可训练</td>" in html
    chinese(text, html)


def test_e17_second_order_forward_check_and_hvp_in_chinese(zh):
    zh.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)\nv = tf.constant([1.0, 0.0])")
    r, text, html = shown(zh, "x y -n 2 --forward --check", "f = x**2 * y + y + 2")
    assert [float(r.gradients[name]) for name in "xy"] == [24.0, 10.0]
    assert text.startswith("梯度带：f = 42（2 阶，非持久，自动监视，即时执行）\n")
    assert "前向模式 ∂f/∂x = 24" in text and "前向模式 ∂f/∂y = 10" in text
    assert "计算遍数：前向模式 2 遍，反向模式 1 遍" in text
    assert re.search(r"检查 ∂f/∂x：一致，最大绝对误差 \S+，最大相对误差 \S+（中心差分，步长 \S+，每个元素运行 2 次）", text)
    assert "说明：" in text and "<summary>高阶导数</summary>" in html and re.search(r"<summary>说明（\d+ 条）</summary>", html)
    assert "f = 42 &rarr; ∂f/∂x = 24 &rarr; ∂²f/∂x² = 8" in html
    chinese(text, html)


def test_a_hessian_and_a_jacobian_in_chinese(zh):
    zh.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)\nw = tf.Variable([1.0, 2.0, 3.0])")
    r, text, html = shown(zh, "x y --hessian", "f = x**2 * y + y + 2")
    assert r.hessian.numpy().tolist() == [[8.0, 6.0], [6.0, 0.0]]
    assert "f 关于 (x, y) 的黑塞矩阵，形状 (2, 2)：\n  [8  6]\n  [6  0]" in text
    assert "<summary>f 关于 (x, y) 的黑塞矩阵，形状 (2, 2)</summary>" in html and "蓝 &lt; 0 &lt; 红" in html
    assert 'title="H[0, 1] = 6.0"' in html
    chinese(text, html)
    r, text, html = shown(zh, "w --jacobian", "z = w**2")
    assert r.jacobian["w"].numpy().tolist() == [[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]]
    assert "雅可比矩阵 ∂z/∂w，形状 (3, 3)：" in text and "<summary>雅可比矩阵 ∂z/∂w，形状 (3, 3)</summary>" in html
    assert "全部 9 个元素（Python 代码）" in html
    chinese(text, html)


def test_a_none_gradient_is_explained_in_chinese(zh):
    zh.run_cell("x = tf.Variable(3.0)\nz = tf.Variable(2.0)")
    r, text, html = shown(zh, "x z", "f = x * 2")
    assert r.gradients["z"] is None
    assert "z       ()    float32  2   None*" in text
    line = next(line for line in text.splitlines() if line.startswith("* "))
    assert line.startswith("* ∂f/∂z 为 None：") and CJK.search(line[len("* ∂f/∂z 为 None："):])
    assert '<div class="tm-why">* ∂f/∂z 为 None：' in html
    assert r.why("z") == r.target.reasons["z"] and CJK.search(r.why("z"))
    assert r.why("x") == "f 对 x 的梯度不是 None。"
    with pytest.raises(KeyError, match="'q' 不是这个结果的源变量（源变量有：x, z）"):
        r.why("q")
    chinese(text, html)


MLP = """
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation='relu', name='dense'),
                          keras.layers.Dense(3, name='dense_1')], name='mlp')
xb = tf.constant(np.random.default_rng(0).normal(size=(8, 6)), tf.float32)
yb = tf.constant(np.random.default_rng(1).normal(size=(8, 3)), tf.float32)
"""


def test_a_keras_models_gradient_flow_in_chinese(zh):
    zh.run_cell(MLP).raise_error()
    r, text, html = shown(zh, "model.trainable_variables", "loss = tf.reduce_mean((model(xb) - yb) ** 2)")
    assert r.layers.layer_names() == ["mlp/dense", "mlp/dense_1"] and r.layers.language == "zh"
    lines = text.splitlines()
    heading = lines.index("逐层梯度流（∂loss/∂·，输入层在前）：")
    assert lines[heading + 1].split() == ["层", "变量", "形状", "||g||", "max|g|", "零值占比", "||g||/||w||", "提示"]
    assert "<summary>逐层梯度流</summary>" in html and 'aria-label="各层的梯度范数（对数刻度，输入层在前）"' in html
    assert "<th>层</th><th>变量</th><th>形状</th>" in html
    assert repr(r.layers).splitlines()[0].split()[0] == "层"  # r.layers shows itself in the result's language
    chinese(text, html)


def test_a_flagged_layer_is_red_whatever_the_language_of_its_flag():
    from tapemagic._result import LayerRow, LayerTable
    from tapemagic.engine.words import Reason
    from tapemagic.render import flow

    def row(layer, norm, flag):
        return LayerRow(layer, "Dense", "kernel", (2,), norm, norm, 0.0, None, flag, None)
    with _i18n.language("zh"):
        from tapemagic._i18n import _
        exploding = Reason(_("exploding: ||g|| = {norm}", norm="1e+06"), "exploding")
        frozen = Reason(_("frozen layer (trainable=False): an optimizer leaves it"), "frozen")
        none = Reason(_("None: frozen layer (trainable=False)"), "none")
    assert CJK.search(exploding) and CJK.search(frozen)
    table = LayerTable("loss", (row("m/a", 1e6, exploding), row("m/b", 1.0, frozen), row("m/c", None, none)))
    assert flow.flagged_layers(table) == {"m/a"}
    page = flow.table_html(table)
    assert f'<td class="flag">{exploding}</td>' in page and f'<td class="none">{none}</td>' in page


@pytest.mark.parametrize("line, words", [
    ("x --bogus", "无法识别的参数：--bogus。可用的选项见 %%tape?"),
    ("x -n 0", "阶数至少为 1，而不是 0：%%tape -n 2 x"),
    ("x -n two", "参数 -n/--order：阶数必须是整数，而不是 'two'。可用的选项见 %%tape?"),
    ("x -n 9", "阶数 9 超过了 tapemagic 计算的上限（8）"),
    ("x --display fancy", "参数 --display：无效的取值：'fancy'（可选："),
    ("x --order", "参数 -n/--order：需要一个参数值"),
    ("x --hessian=3", "参数 --hessian：忽略了显式给出的参数值 '3'"),
    ("x --eps 1e-3", "--eps 设置的是 --check 的有限差分步长：请加上 --check"),
    ("x --check --eps 5", "--eps 必须是一个较小的正步长，例如 1e-3，而不是 5.0"),
    ("x --check --eps tiny", "参数 --eps：不是数字：'tiny'"),
    ("x --no-watch", "--no-watch 只有和 --no-auto-watch 一起用才有意义"),
    ("x --range x=0:1", "--range 设置的是 --explore 的滑块：请加上 --explore"),
    ("x --explore --range x=1:0", "--range x=1.0:0.0：下限必须小于上限"),
    ("x --explore --range q=0:1", "--range 指定了 'q'，但它不是这个单元格的源变量"),
    ("x --explore --range x=0:1 --range x=1:2", "--range 把同一个源变量指定了两次"),
    ("x --explore --range x=a:b", "范围的写法是 NAME=LOW:HIGH，LOW 和 HIGH 都是数字，而不是 'x=a:b'"),
    ("x --explore --range nonsense", "范围的写法是 NAME=LOW:HIGH，例如 x=-3:3，而不是 'nonsense'"),
    ("x --explore --range 1x=0:1", "范围的写法是 NAME=LOW:HIGH，例如 x=-3:3；'1x' 不是名字"),
    ("x x", "有源变量被指定了两次：每个 SOURCE 只需给出一次"),
    ("x -t y -t y", "有目标被指定了两次：每个 -t NAME 只需给出一次"),
    ("lambda", "'lambda' 是 Python 关键字，不是名字：请指定一个变量，例如 %%tape x -t y"),
    ("x.lambda", "'lambda'（在 'x.lambda' 中）是 Python 关键字"),
    ("x-1", "'x-1' 既不是名字，也不是用点连接的路径"),
    ("x -t 1y", "'1y' 不是普通的名字：目标是单元格中被赋值的名字"),
    ("x --hvp 1v", "--hvp 需要一个向量的名字，而不是 '1v'：%%tape x --hvp v"),
    ("x -o 1r", "-o 需要一个普通的名字来保存结果，而不是 '1r'：例如 -o r"),
    ("x -o print", "-o print 会遮蔽 Python 的内置名称 print"),
    ("x -o __builtins__", "-o __builtins__ 会遮蔽 Python 的内置命名空间（__builtins__）"),
    ("x -o __doc__", "-o __doc__：前后都带双下划线的名字是 Python 自己用的"),
    ("x 'unclosed", "无法拆分这一行（No closing quotation）：请检查其中的引号"),
    ("print", "print 是 Python 的内置函数 print，不是本笔记本中的变量，因此不能作为源变量"),
    ("x --hvp len", "len 是 Python 的内置函数 len，不是本笔记本中的变量，因此不能作为 --hvp 的向量"),
    ("x -o x", "-o x 会用结果覆盖源变量 x：请换一个名字保存结果，例如 -o r"),
    ("x -o tf", "-o tf 会用结果覆盖模块 tf"),
    ("x -o y", "-o y 会用结果覆盖单元格所赋值的目标 y"),
])
def test_a_usage_error_in_chinese_says_how_to_fix_it(zh, line, words):
    zh.run_cell("x = tf.Variable(3.0)")
    with pytest.raises(UsageError) as error:
        zh.run_cell_magic("tape", line, "y = x**2")
    message = str(error.value)
    assert words in message
    # No English sentence left over (three English words in a row), code and names aside.
    prose = re.sub(r"'[^']*'|%%?tape[^：，。（）]*|--[\w-]+|\S*[=.(_]\S*|（[^（）\u4e00-\u9fff]*）", " ", message)
    assert not re.search(r"\b[a-z]{2,} [a-z]{2,} [a-z]{2,}\b", prose), message


@pytest.mark.parametrize("line, words", [
    ("x", "行魔法命令需要在 ' -- ' 之后写出表达式：%tape x -- x**3 + 2*x**2 + 1（或者把 %%tape 当作单元格魔法命令使用）"),
    ("x -- ", "' -- ' 之后没有可求导的内容"),
])
def test_the_line_magics_errors_in_chinese(zh, line, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        zh.run_line_magic("tape", line)


def help_page(shell) -> str:
    with capture_output() as captured:
        shell.run_cell("%%tape?")
    return re.sub(r"\x1b\[[0-9;]*m", "", captured.stdout)


def test_tape_help_in_chinese_and_back(zh):
    page = help_page(zh)
    assert "用法：%%tape [-t NAME] [-n N]" in page and "位置参数" in page and "选项" in page
    assert "--hessian" in page and "源变量各元素之间的全部二阶偏导数" in page
    assert "结果的显示方式（默认：%config TapeMagics.display）" in page  # argparse reads %% as %
    for line in page.splitlines():
        assert wrap.width(line) <= 100, line
    zh.run_line_magic("config", 'TapeMagics.language = "en"')
    page = help_page(zh)
    assert "usage: %%tape" in page and "all second partial derivatives" in page and not CJK.search(page)


def test_switching_the_language_in_a_running_kernel_changes_the_next_result(zh):
    zh.run_cell("x = tf.Variable(3.0)")
    chinese_result, text, _html = shown(zh, "x", "y = x**2")
    assert text.startswith("梯度带：y = 9")
    zh.run_line_magic("config", 'TapeMagics.language = "en"')
    english_result, text, html = shown(zh, "x", "y = x**2")
    assert text.startswith("tape: y = 9  (order 1, non-persistent, auto-watch, ") and "<th>source</th>" in html
    assert not CJK.search(text) and not CJK.search(html)
    # A result keeps the language it was made in: its notes are in it.
    assert chinese_result.to_text().startswith("梯度带：y = 9") and english_result.language == "en"


def test_an_unknown_language_is_refused_naming_the_choices(zh, caplog):
    with capture_output() as captured:
        zh.run_line_magic("config", 'TapeMagics.language = "fr"')
    said = captured.stdout + captured.stderr + caplog.text
    assert "TapeMagics.language 必须是 auto, en, zh 之一" in said and "'fr'" in said
    assert magics(zh).language == "zh"
    zh.run_line_magic("config", 'TapeMagics.language = "zh_CN"')
    assert magics(zh).language == "zh"


@pytest.mark.parametrize("variable, value, speaks", [
    ("LANG", "zh_CN.UTF-8", "zh"), ("LANG", "zh_TW.UTF-8", "zh"), ("LC_ALL", "zh_HK.UTF-8", "zh"),
    ("LC_MESSAGES", "zh_SG", "zh"), ("LANG", "en_US.UTF-8", "en"), ("LANG", "C.UTF-8", "en"),
    ("LANGUAGE", "zh_CN:en", "zh"),
])
def test_auto_follows_the_locale(shell, locale_env, variable, value, speaks):
    locale_env.setenv(variable, value)
    assert magics(shell).language == "auto"
    shell.run_cell("x = tf.Variable(3.0)")
    r, text, _html = shown(shell, "x", "y = x**2")
    assert r.language == speaks
    assert text.startswith("梯度带：y = 9" if speaks == "zh" else "tape: y = 9")
    assert help_page(shell).count("用法：%%tape") == (speaks == "zh")


def test_language_comes_before_lang_as_in_gettext(locale_env):
    from tapemagic._i18n import resolve

    locale_env.setenv("LANG", "zh_CN.UTF-8")
    locale_env.setenv("LANGUAGE", "en_US:en")
    assert resolve("auto") == "en"


def test_the_python_api_in_chinese(shell, locale_env):
    locale_env.setenv("LANG", "en_US.UTF-8")
    r = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=2, hessian=True, language="zh")
    assert r.language == "zh" and float(r.gradients["x"]) == 24.0
    assert r.to_text().startswith("梯度带：f = 42（2 阶，")
    assert "f 关于 (x, y) 的黑塞矩阵" in r.to_html()
    namespace = {"x": 3.0}
    r = tapemagic.tape("y = x**2", ["x"], namespace=namespace, language="zh", out="r")
    assert r.language == "zh" and r.notes and all(CJK.search(note) for note in r.notes)  # x became a constant
    assert namespace["r"] is r  # -o stores the very result returned
    assert tapemagic.tape("y = x**2", ["x"], namespace={"x": 3.0}).language == "en"  # auto: the locale
    with _i18n.language("zh"):  # an enclosing block's language
        assert tapemagic.tape("y = x**2", ["x"], namespace={"x": 3.0}).language == "zh"
    magics(shell).language = "zh"  # %config TapeMagics.language, where the extension is loaded
    try:
        assert tapemagic.tape(lambda x: x * x, [2.0]).language == "zh"
    finally:
        magics(shell).language = "auto"
    with pytest.raises(tapemagic._spec.SpecError, match="a callable needs its source values"):
        tapemagic.tape(lambda x: x, language="en")
    with pytest.raises(tapemagic._spec.SpecError, match=re.escape("可调用对象需要源变量的取值：tape(f, [3.0, 4.0])")):
        tapemagic.tape(lambda x: x, language="zh")
    with pytest.raises(tapemagic._spec.SpecError, match="language must be one of auto, en, zh, not 'fr'"):
        tapemagic.tape(lambda x: x, [1.0], language="fr")


def test_the_explore_view_speaks_the_results_language(zh, monkeypatch):
    from tapemagic.render import widget

    monkeypatch.setattr(widget, "in_kernel", lambda: True)
    zh.run_cell("x = tf.Variable(1.0)")
    with capture_output() as captured:
        zh.run_cell_magic("tape", "x --explore --range x=-2:4 -o r",
                          "if float(x) > 2.5:\n    raise ValueError('too big')\ny = x ** 3")
    static, sliders = captured.outputs
    assert static.data["text/plain"].startswith("梯度带：y = 1（1 阶，")
    assert 'aria-label="y(x) 与 ∂y/∂x 随 x 的变化"' in static.data["text/html"]
    assert sliders.data["text/plain"] == "--explore 滑块（内核运行时可以拖动）：x 取值范围 [-2, 4]"
    explorer = widget.Explorer(zh.user_ns["r"], on_update=(updates := []).append)
    zh.run_line_magic("config", 'TapeMagics.language = "en"')  # a later setting does not change this view
    explorer.sliders["x"].value = 2.0  # a move comes outside the magic's language block
    assert updates[-1]["text/plain"].startswith("梯度带：y = 8") and "<th>源变量</th>" in updates[-1]["text/html"]
    assert "随 x 的变化" in updates[-1]["text/html"]
    explorer.sliders["x"].value = 3.0
    assert "在 x = 3 处重新运行单元格失败：ValueError: too big" in explorer.error.value
    view = zh.user_ns["r"].widget()
    assert "<th>源变量</th>" in view.children[0].value


def test_the_mnist_loaders_error_in_chinese(tmp_path):
    from tapemagic.datasets import mnist

    with pytest.raises(mnist.MnistError) as error:
        mnist.load_data(directory=tmp_path / "nowhere", keras=False, mirrors=(), language="zh")
    message = str(error.value)
    assert message.startswith("无法加载 MNIST。已尝试：\n  - 目录 ")
    assert "不是目录" in message and "解决办法：把四个 IDX 文件" in message and mnist.ENVIRONMENT_VARIABLE in message
    with pytest.raises(mnist.MnistError, match="could not load MNIST. Tried:"):
        mnist.load_data(directory=tmp_path / "nowhere", keras=False, mirrors=(), language="en")


def test_chinese_prose_wraps_between_characters_never_inside_a_name():
    line = ("说明：" + "这个单元格第一次运行时，梯度取自真实运行的梯度带（tf.GradientTape），"
            "同一段代码再次运行时才会用 tf.function 追踪，并且 model.trainable_variables 保持不变。" * 2)
    lines = wrap.fill(line, 60).splitlines()
    assert len(lines) > 2 and all(wrap.width(text) <= 60 for text in lines)
    assert all(not text.strip().startswith(("，", "。", "）", "；")) for text in lines)
    assert all(not text.endswith("（") for text in lines)
    words = "".join(text.strip() for text in lines)
    assert words.count("tf.GradientTape") == 2 and words.count("model.trainable_variables") == 2
    assert "".join(text.strip() for text in lines).replace(" ", "") == line.replace(" ", "")
    assert wrap.fill("note: " + "word " * 30, 60) == __import__("textwrap").fill(
        "note: " + "word " * 30, width=60, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
