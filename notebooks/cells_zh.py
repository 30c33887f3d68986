"""The Chinese notebooks under notebooks/zh/: the English notebooks' code, Chinese prose.

Each Chinese notebook is made from its English one (``build.py``) by :func:`localize`: every
Markdown cell is replaced, in order, by the Chinese text below; code cells are the English code
cells, with the setup cell also setting ``%config TapeMagics.language = "zh"`` and, where listed
in ``CODE``, a comment or a printed label in Chinese. So the code and the numbers are the same
in both languages by construction, and a Markdown cell added to one language without the other
stops the build instead of putting a text in the wrong place.

The Chinese is written for learners, not translated word for word; where the source documents'
own Chinese says a thing well, it is followed. Terms: 梯度带 (GradientTape), 源变量 (a source),
目标 (the target), 伴随值 (an adjoint), 切向量 (a tangent), 被监视的变量, 即时执行 (eager).
Plot labels stay English: matplotlib's default font has no Chinese glyphs.
"""
from __future__ import annotations

LANGUAGE_LINE = '%config TapeMagics.language = "zh"'


def nav(english: str) -> str:
    """The line under each Chinese notebook's title: the English original, the quickstart, the README."""
    links = [f"[English version](../{english}.ipynb)"]
    if english != "quickstart":
        links.append("[快速上手](quickstart.ipynb)")
    links.append("[中文说明](https://github.com/tapemagic/tapemagic/blob/main/README.zh-CN.md)")
    return " · ".join(links)


def localize(name: str, english: list[tuple]) -> list[tuple]:
    """The Chinese notebook ``name``: ``english``'s cells with the Markdown of ``MARKDOWN[name]``
    in order, the code of ``english`` (the language set to Chinese in the setup cell, the
    replacements of ``CODE[name]`` made), then the cells of ``TAIL[name]``."""
    texts = MARKDOWN[name]
    wanted = sum(1 for cell in english if cell[0] == "md")
    if len(texts) != wanted:
        raise ValueError(f"zh/{name}: {len(texts)} Chinese Markdown cells for {wanted} English ones")
    replacements = dict(CODE.get(name, {}))
    used = set()
    cells, position = [], 0
    for kind, source, *rest in english:
        if kind == "md":
            cells.append(("md", texts[position]))
            position += 1
            continue
        if "%load_ext tapemagic\n" in source:
            source = source.replace("%load_ext tapemagic\n", f"%load_ext tapemagic\n{LANGUAGE_LINE}\n", 1)
        for old, new in replacements.items():
            if old in source:
                source = source.replace(old, new)
                used.add(old)
        cells.append(("code", source, *rest))
    unused = set(replacements) - used
    if unused:
        raise ValueError(f"zh/{name}: code to replace that the English cells no longer have: {sorted(unused)}")
    return cells + [("md", text) for text in TAIL.get(name, [])]


NOTEBOOK_LIST = (
    "- [快速上手](quickstart.ipynb)：`%%tape` 的基本用法\n"
    "- [000 GradientTape 基础](000_gradienttape_basics.ipynb)：E1–E10\n"
    "- [001 求导、梯度与 MNIST 上的多层感知机](001_gradients_and_mlp.ipynb)：E11–E16，快速训练，`tf.distribute`，"
    "四种模型逐层的梯度\n"
    "- [002 自动微分是怎样工作的](002_how_autodiff_works.ipynb)：E17–E22，手动微分、有限差分、前向模式与反向模式\n"
    "- [003 即时执行模式下的 GradientTape 教程](003_eager_tutorial.ipynb)：E23–E27"
)

MARKDOWN: dict[str, list[str]] = {}
CODE: dict[str, dict[str, str]] = {}
TAIL: dict[str, list[str]] = {}

MARKDOWN["quickstart"] = [
    "# tapemagic 快速上手\n\n" + nav("quickstart") + "\n\n"
    "以 `%%tape` 开头的单元格会在 `tf.GradientTape`（梯度带）中运行，并把梯度带记录下来的内容显示出来：目标的值、"
    "梯度、高阶导数、雅可比矩阵、黑塞矩阵，以及被监视的变量。梯度是 `None` 时，会用文字说明原因。\n\n"
    "加载扩展本身并不导入 TensorFlow，导入发生在下面这个单元格里。`%config TapeMagics.language = \"zh\"` 让结果用中文"
    "显示；默认值 `\"auto\"` 跟随系统的语言环境（`LANG` 等），设为 `\"en\"` 则显示英文。",

    "## 第一个梯度\n\n在魔法命令这一行写上源变量的名字；目标就是单元格最后一行赋值的那个变量。",

    "∂f/∂x = 2xy = 24，∂f/∂y = x² + 1 = 10。和普通单元格一样，单元格里赋值的变量会留在命名空间里：",

    "## 看看计算图\n\n加上 `--graph`，就会画出单元格的计算图：TensorFlow 执行的每个运算是一个节点，节点上标着它的值"
    "和伴随值 ∂f/∂节点，也就是反向传播时传回这个节点的值。看 y：它沿两条路径影响 f，经过 x²·y 传回 x² = 9，"
    "经过 `+ y` 传回 1，两者之和 9 + 1 = 10 就是 ∂f/∂y。",

    "## 高阶导数\n\n`-n 2` 嵌套两层梯度带。∂²f/∂y² 是 0，而不是 `None`：∂f/∂y = x² + 1 已经不含 y，"
    "TensorFlow 遇到这种情况会返回 `None`，但对一个与目标相连的源变量来说，这里的导数确实是零。",

    "## 雅可比矩阵和黑塞矩阵\n\n源变量是向量时，`--jacobian` 给出向量目标的完整雅可比矩阵，`--hessian` 给出目标"
    "各元素之和的全部二阶偏导数，混合偏导数也在内。",

    "有两个标量源变量时，黑塞矩阵的非对角元素就是混合偏导数 ∂²f/∂x∂y = 2x：",

    "## 梯度带监视的变量\n\n魔法命令里不写源变量时，源变量就是单元格用到的可训练变量，这里是一个全连接层的权重"
    "（kernel）和偏置（bias）。",

    "## `None` 是怎么来的\n\n梯度带用 `watch_accessed_variables=False` 创建，又什么都没有监视：",

    "整数张量不会有梯度；计算一旦离开 TensorFlow、转到 NumPy 里去做，梯度也就断了：",

    "## 检查自定义梯度\n\n`--check` 用中心有限差分来核对梯度带给出的梯度。下面这个自定义梯度是故意写错的"
    "（x² 的导数是 2x，不是 x）：",

    "## 结果对象和 Python API\n\n`-o r` 把结果对象保存在 `r` 里；不用 IPython 时，`tapemagic.tape` 也能做同样的事。",

    "一行就能写完的计算，用行魔法命令 `%tape`：",
]
TAIL["quickstart"] = [
    "## 接下来\n\n四篇中文教程的全部例子（E1–E27）都在下面几个笔记本里。每个例子先按文档原样用 TensorFlow 写一遍，"
    "再用 `%%tape` 做一遍，两边的数字完全一样；文档里的错误在出现的地方用勘误说明。\n\n" + NOTEBOOK_LIST + "\n\n"
    "全部选项见 `%%tape?` 和[中文说明](https://github.com/tapemagic/tapemagic/blob/main/README.zh-CN.md)。",
]

MARKDOWN["000_gradienttape_basics"] = [
    "# GradientTape 基础\n\n" + nav("000_gradienttape_basics") + "\n\n"
    "来源：文档 000（`000_6bddf6e551af80d2.txt`），一篇讲 `tf.GradientTape` 的中文教程。TensorFlow 用 `GradientTape` "
    "这个类来求导：把计算过程写在 `with` 语句块里，梯度带会把其中的变量和运算记录下来，最后用 "
    "`tape.gradient(函数, 自变量)` 求出导数。下面每个例子先给出文档里的 TensorFlow 代码，再用 `%%tape` 做一遍，两边的数字相同。",

    "## E1：y = x² 在 x = 3 处的导数\n\n*勘误：* 文档的代码片段直接用了 `x`，却没有定义它；它应该是 `tf.Variable(3.)`。"
    "函数值是 9，导数是 6：",

    "## E2：非持久的梯度带只能用一次\n\n`persistent` 默认为 `False`：调用一次 `gradient` 之后，梯度带持有的资源就被释放了，"
    "所以第二次调用会报错：",

    "`%%tape` 自己管理梯度带，所以能分别给出每个目标的梯度：",

    "## E3：持久的梯度带\n\n*勘误：* 文档的代码调用的是 `tape.gradient(y, z)`，但文中给出的输出是 27，这其实是 dz/dx。"
    "y 并不依赖于 z，所以 `tape.gradient(y, z)` 的结果是 `None`；正确的调用是 `tape.gradient(z, x)`：",

    "加上 `-p`，结果对象会保留这条持久的梯度带，之后还可以继续用它求导：",

    "## E4：`watch_accessed_variables=False`\n\n这个参数默认为 `True`，表示自动监视所有可训练变量。设为 `False` 后，"
    "什么都没有被监视，所以梯度是 `None`：",

    "## E5：手动监视\n\n这时可以用 `watch()` 手动指定要监视的变量。在 `%%tape` 单元格里，`tapemagic.watch(x)` "
    "就相当于 `tape.watch(x)`：",

    "## E6：监视常量\n\n用 `tf.constant` 创建的 x 是张量，不是可训练变量，但同样可以被监视：",

    "## E7 和 E8：对两个自变量求偏导数\n\n二元函数 f = x² + 2y² + 1 在 (3, 4) 处。把两个自变量放在一个列表里，"
    "就能一次求出两个偏导数；用一个变量接收时，得到的是由两个张量组成的列表：",

    "## E9：用嵌套的梯度带求二阶导数\n\n内层梯度带 tape1 求出一阶导数 first_grads，外层梯度带 tape2 再对它求导，"
    "得到二阶导数。`%%tape -n 2` 也是这样嵌套两层梯度带：",

    "## E10：向量\n\n同一个 f，x 和 y 换成长度为 3 的一维张量。求导的过程不变，结果也是长度为 3 的一维张量，逐元素计算：",
]
CODE["000_gradienttape_basics"] = {"# the document's call": "# 文档里的调用"}
TAIL["000_gradienttape_basics"] = [
    "下一篇：[001 求导、梯度与 MNIST 上的多层感知机](001_gradients_and_mlp.ipynb)",
]

MARKDOWN["001_gradients_and_mlp"] = [
    "# 求导、梯度与 MNIST 上的多层感知机\n\n" + nav("001_gradients_and_mlp") + "\n\n"
    "来源：文档 001（`001_0f6a20324f027438.txt`），一篇中文教程：先求一个导数，再求一个小回归问题中损失的梯度，"
    "然后在 MNIST 上训练一个多层感知机（MLP），有 GPU 时用 GPU。",

    "## E11：x³ + 2x² + 1 在 x = 4 处的导数\n\n导数是 3x² + 4x = 64：",

    "## E12：回归损失的梯度\n\npred = x·w + b = 6，loss = (6 − 3)² + (6 − 4)² = 13。\n\n"
    "*勘误：* 文档 1.2 节说 `grads` 是一个“变量列表”，由梯度带把结果保存进去。其实它是 `tape.gradient` 返回的"
    "梯度列表，每个变量对应一个梯度：∂loss/∂w 和 ∂loss/∂b。",

    "## E13：MNIST 上的多层感知机\n\n`tapemagic.datasets.mnist.load_data()` 就是能离线使用的 "
    "`tf.keras.datasets.mnist.load_data()`：先从一个目录（`TAPEMAGIC_MNIST_DIR`）读取四个原始 IDX 文件，"
    "没有就用 Keras 的缓存和下载，再不行就用公开的镜像，每个文件都核对 sha256。",

    "文档在有 GPU 时用 GPU 训练。TensorFlow 会把计算放在它看到的第一块 GPU 上，没有 GPU 就用 CPU"
    "（`pip install \"tapemagic[gpu]\"` 会安装 `tensorflow[and-cuda]`）：",

    "按文档的写法搭建模型。在 Keras 3 里，`Flatten(input_shape=(28, 28))` 会给出警告；现在的写法是先放一个 "
    "`Input` 层，再接 `Flatten()`。",

    "训练之前，先看一批数据的损失对每个权重的梯度，也就是优化器将要看到的梯度（源变量是单元格用到的可训练变量）：",

    "文档说训练 5 个 epoch 后测试准确率约为 0.978；这里检查上面这次训练至少达到 0.97：",

    "## E14–E16：三种改进\n\n按文档的写法搭建：LeakyReLU、批归一化（BatchNormalization），以及 L2 正则化加 Dropout。"
    "在 Keras 3 里，`LeakyReLU(alpha=0.2)` 要写成 `LeakyReLU(negative_slope=0.2)`。",

    "## 四种模型的梯度，逐层来看\n\n这些改进对梯度做了什么？源变量是 Keras 模型的变量时，`%%tape` 的结果里还有"
    "梯度流：`r.layers` 从输入层开始，每个层和变量一行，列出梯度的范数 ‖g‖、最大的元素、恰好为 0 的元素所占比例、"
    "‖g‖/‖w‖，看起来不对劲的地方（梯度消失、梯度爆炸、死掉的 ReLU 单元、梯度为 `None` 及其原因）用文字标出来，"
    "并配一张各层范数的对数坐标图。文档的模型和它的三种改进用同一个随机种子重新搭建，在 500 张训练图片上、"
    "以训练模式计算，并且像 `fit` 那样把 L2 惩罚项（`model.losses`）加进损失：",

    "第一个全连接层的偏置，梯度只有 1e-7 左右，被标为梯度消失：批归一化紧接着这一层减去了批均值，所以这里的偏置"
    "根本改变不了输出（通常的做法是在批归一化之前用 `Dense(128, use_bias=False)`）。移动均值和移动方差完全没有梯度："
    "批归一化在前向计算时直接更新它们，所以 `model.trainable_variables` 里没有它们。第一层权重的梯度有四分之一恰好"
    "为 0：这些权重读的像素在全部 500 张图片里都是 0（下面数一数）。\n\n"
    "再对每种模型各做一次，分别在初始化时和训练一个 epoch 之后，每个时刻一张图，用同一个对数坐标"
    "（`tapemagic.tape` 是 `%%tape` 的 Python 写法）：",

    "每种模型按文档的方式训练一个 epoch（不输出日志，日志上面已经看过了），然后再算一遍同样的梯度：",

    "初始化时，批归一化让第一个全连接层的梯度是其他模型的两倍多（2.86，其他为 1.15 到 1.26）；训练一个 epoch 的 "
    "Adam 之后，随着损失下降，所有梯度都变小了：没有批归一化的模型缩小约 5 到 6 倍，有批归一化的第一层缩小 12 倍。"
    "L2 几乎不改变范数（1.21 对 1.15），但它给每个权重的梯度加上 2 · 0.001 · w，所以第一层权重的梯度里没有一个"
    "恰好为 0，而其他模型有 26 % 到 34 %（这些权重连着始终为黑的像素；用 ReLU 时，还有一些权重连着亮的像素，"
    "但它通向的单元在这个像素亮着的图片上输出始终为 0）。训练一个 epoch 后，文档模型的 128 个 ReLU 单元里有一个在这 500 张图片上死掉了；"
    "LeakyReLU 的斜率永远不为 0，所以它的单元不会死。",

    "## 快速训练\n\n同一个模型，换一种喂数据的方式：图片用 float32（而不是 float64），放进一个会缓存、打乱、分批和"
    "预取的 `tf.data` 管道；批大小从 32 改为 128，同时把学习率提高到 3e-3 并按余弦曲线衰减，这样准确率不会下降；"
    "`steps_per_execution=64` 让 Keras 每次调用运行 64 步，而不是一步。在 GPU 上还会用 XLA（`jit_compile=True`）"
    "和混合精度；在测量时用的 2 个 CPU 核上，XLA 反而让每个 epoch 慢了约 3 倍，所以在 CPU 上不开。",

    "## 多块 GPU，多台机器\n\n分布式训练交给 TensorFlow 的分布策略，模型代码不用改。`MirroredStrategy` 在本机的每块 "
    "GPU 上各放一份模型副本，并对梯度求平均；没有 GPU 时，它在 CPU 上作为一个副本运行。在它的 scope 里搭建和编译模型，"
    "全局批大小按副本数放大：",

    "多台机器用 `MultiWorkerMirroredStrategy`。每台机器运行同一个脚本，用环境变量 `TF_CONFIG` 列出所有 worker，"
    "并说明自己是哪一个；这个分布策略必须在程序一开始、在其他 TensorFlow 调用之前创建。两个 worker 时：",

    "脚本里用它代替 `MirroredStrategy()`：\n\n```python\nstrategy = tf.distribute.MultiWorkerMirroredStrategy()\n"
    "with strategy.scope():\n    model = ...  # 和上面一样搭建、编译\nmodel.fit(dataset, epochs=5)  # dataset 的批大小就是全局批大小\n```\n\n"
    "0 号 worker 是 chief，负责写检查点和日志。上面的地址只是示例；每个 worker 都必须能通过各自的端口访问到其他 worker。",
]
CODE["001_gradients_and_mlp"] = {
    "# the device depends on the machine": "# 用哪个设备取决于这台机器",
    "# probabilities sum to 1": "# 概率之和为 1",
    "\"\"\"Records each epoch's wall time.\"\"\"": "\"\"\"记录每个 epoch 用的时间。\"\"\"",
    "# training logs and timings vary from run to run": "# 训练日志和耗时每次运行都不一样",
    "# training logs vary from run to run": "# 训练日志每次运行都不一样",
    "# a twin of fresh['BatchNormalization']: the same seed, the same numbers":
        "# 与 fresh['BatchNormalization'] 一模一样：同一个随机种子，同样的数",
    "\"\"\"What the cell above shows, for any model: one real run under the tape.\"\"\"":
        "\"\"\"上面那个单元格显示的内容，对任意模型：在梯度带下真实地运行一次。\"\"\"",
    "# the pipeline shuffles": "# 数据管道自己会打乱顺序",
    "# the devices depend on the machine": "# 有哪些设备取决于这台机器",
    "print('training on', device)": "print('训练设备：' + device)",
    "print('test accuracy after 5 epochs >= 0.97:', test_acc >= 0.97)":
        "print('训练 5 个 epoch 后，测试准确率 >= 0.97：', test_acc >= 0.97)",
    "print('every variant >= 0.95:', sorted(variants))": "print('每种改进都 >= 0.95：', sorted(variants))",
    "{kernel.zeros:6.1%} of its gradient is exactly 0 at init')": "初始化时梯度有 {kernel.zeros:6.1%} 恰好为 0')",
    "print(f'pixels that are 0 in all 500 images: {": "print(f'在全部 500 张图片里都为 0 的像素：{",
    "print('fast configuration test accuracy >= 0.975:', fast_acc >= 0.975)":
        "print('快速配置的测试准确率 >= 0.975：', fast_acc >= 0.975)",
    "print('one replica per device; the global batch is', global_batch // strategy.num_replicas_in_sync, 'per replica')":
        "print(f'每个设备一个副本；全局批大小按每个副本 {global_batch // strategy.num_replicas_in_sync} 个样本计')",
    "print('one mirrored epoch >= 0.9:', mirrored_acc >= 0.9)": "print('MirroredStrategy 训练一个 epoch 后 >= 0.9：', mirrored_acc >= 0.9)",
    # The flags are in Chinese here: tell them apart by their kind, not by their English words.
    "                        if row.flag and not row.flag.startswith('None'):\n"
    "                            words = row.flag if row.flag.startswith('dead') else row.flag.split(':')[0]\n":
        "                        kind = getattr(row.flag, 'kind', '')  # 标记的种类，与语言无关\n"
        "                        if row.flag and kind != 'none':\n"
        "                            words = row.flag if kind == 'dead' else row.flag.replace('：', ':').split(':')[0]\n",
}
TAIL["001_gradients_and_mlp"] = [
    "下一篇：[002 自动微分是怎样工作的](002_how_autodiff_works.ipynb)",
]

MARKDOWN["002_how_autodiff_works"] = [
    "# 自动微分是怎样工作的\n\n" + nav("002_how_autodiff_works") + "\n\n"
    "来源：文档 002（`002_69bfc9bacbcef12f.txt`），《深度学习实操》附录 B“深入解析 TensorFlow 自动微分”的概要："
    "手动微分、有限差分近似、前向模式自动微分和反向模式自动微分，全部以 f(x, y) = x²y + y + 2 在 (3, 4) 处为例。",

    "## E17：用变量做反向模式自动微分",

    "## E18：同样的计算，改用被监视的常量",

    "## E19：手动微分\n\n按微积分的求导法则，∂f/∂x = 2xy，∂f/∂y = x² + 1。对这样的简单函数没有问题，"
    "但函数一复杂，手动推导就非常繁琐，而且容易出错：",

    "## E20：有限差分近似\n\nε 越小，(f(x + ε, y) − f(x, y)) / ε 就越接近导数，但只到某一点为止，再往下舍入误差就占了上风："
    "误差先随 ε 成比例地减小（截断误差），然后像“机器精度 / ε”那样增大。中心差分 (f(x + ε) − f(x − ε)) / 2ε "
    "的误差随 ε² 减小，`%%tape --check` 用的就是中心差分。",

    "`%%tape --check` 按数据类型选取步长（机器精度的立方根），用中心差分来核对：",

    "## E21：用对偶数做前向模式自动微分\n\n对偶数 a + bε（ε² = 0）在每一步运算中同时带着函数值和导数。把 x 设为 3 + 1ε，"
    "就得到 f(3 + ε, 4) = 42 + 24ε：ε 的系数 24 就是 ∂f/∂x。有几个输入，就要做几遍前向计算。",

    "TensorFlow 的前向模式是 `tf.autodiff.ForwardAccumulator`；`%%tape --forward` 对每个源变量元素各运行一遍，"
    "并给出两种模式各用了几遍：",

    "`--graph --forward` 把这几遍前向计算画在计算图上：对每个源变量，显示每个节点向前传递的切向量，也就是它那个"
    "对偶数的 ε 部分。从 x 出发（x 的切向量为 1），在 x² 处得到 2x · 1 = 6，在 x²·y 处得到 6 · 4 = 24，"
    "一直到 f 都是 24：这就是 f(3 + ε, 4) = 42 + 24ε。从 y 出发，最后得到 10。",

    "## E22：反向模式自动微分\n\n一遍前向计算把所有运算记录下来；从 f 出发的一遍反向计算就同时给出全部偏导数，"
    "24 和 10 一起得到。有 n 个输入、一个输出时，前向模式要做 n 遍，反向模式只要一遍。这就是训练神经网络（几百万个"
    "权重，一个损失）要用反向模式的原因，也是 TensorFlow 采用反向模式的原因。",

    "`--graph` 把这一遍反向计算画出来：每个节点的伴随值 ∂f/∂节点，从 f（伴随值为 1）一直传回到源变量。"
    "看 y：它进入了两个运算，所以有两份贡献传回给它，经过 x²·y 的 x² = 9 和经过 `+ y` 的 1，"
    "它的伴随值就是两者之和 ∂f/∂y = 10 = x² + 1。x 经过 x² 得到 2x · y = 24。",
]
CODE["002_how_autodiff_works"] = {
    "\"\"\"a + b·ε with ε² = 0.\"\"\"": "\"\"\"a + b·ε，其中 ε² = 0。\"\"\"",
    "# seeds x: the ε part is df/dx": "# 给 x 加上 ε：ε 的系数就是 df/dx",
    "# seeds y: the ε part is df/dy": "# 给 y 加上 ε：ε 的系数就是 df/dy",
}
TAIL["002_how_autodiff_works"] = [
    "下一篇：[003 即时执行模式下的 GradientTape 教程](003_eager_tutorial.ipynb)",
]

MARKDOWN["003_eager_tutorial"] = [
    "# 即时执行模式下的 GradientTape 教程\n\n" + nav("003_eager_tutorial") + "\n\n"
    "来源：文档 003（`003_79e022ef0b8d3fa1.txt`），TensorFlow 1.x 时代的一篇教程。TensorFlow 用 `tf.GradientTape` "
    "把上下文中执行的所有运算“记录”到梯度带上，再用梯度带和每个运算的梯度，以反向模式求出梯度。\n\n"
    "*勘误：* 文档一开头调用了 `tf.enable_eager_execution()`，这是 TensorFlow 1.x 的写法；TensorFlow 2 默认就是即时执行，"
    "这个函数已经不存在了。页面上的代码在复制时还丢了大写字母（`tf.gradienttape`、`tf.variable`、`persistent=true`），"
    "下面分别写作 `tf.GradientTape`、`tf.Variable` 和 `persistent=True`。",

    "## E23：对输入求梯度\n\nz = (Σx)²，所以对于全是 1 的 2×2 矩阵，每个元素的 dz/dx 都是 2Σx = 8：",

    "## E24：对中间值求梯度\n\n也可以对梯度带记录过程中算出来的中间值求梯度：",

    "y 只存在于单元格内部，所以要用保留下来的持久梯度带（`-p`）来求它的梯度：",

    "用 `--graph` 则不必专门去求：计算图上每个中间值都标着伴随值。y 的伴随值就是 dz/dy = 8：y 同时是乘法 y·y 的"
    "两个输入，每个输入各传回 y = 4。x 的每个元素经过求和，都从 y 那里得到 8。",

    "## E25：持久的梯度带，求两个梯度\n\n默认情况下，调用 `gradient()` 之后梯度带持有的资源就立即释放。要对同一个计算求"
    "多个梯度，就要创建持久的梯度带，这样可以多次调用 `gradient()`：",

    "在计算图上：z = y·y 给 y 的伴随值是 2y = 18；y = x·x 再把它经过两个输入各传给 x 一次，每次 18 · 3，"
    "合起来是 108 = 4x³。",

    "## E26：Python 控制流照样被记录\n\n梯度带是在运算执行时把它们记录下来的，所以 Python 的控制流（`if`、`while`、"
    "`for`）自然就能处理：",

    "## E27：用嵌套的梯度带求高阶梯度\n\n如果在梯度带的上下文里计算梯度，这个梯度计算本身也会被记录下来，"
    "所以同样的 API 也能求高阶梯度：",
]
CODE["003_eager_tutorial"] = {
    "# 108.0 (4*x^3 at x = 3)": "# 108.0（x = 3 处的 4x³）",
}
TAIL["003_eager_tutorial"] = [
    "四篇文档的例子到这里就全部讲完了。全部笔记本：\n\n" + NOTEBOOK_LIST + "\n\n"
    "全部选项见 `%%tape?` 和[中文说明](https://github.com/tapemagic/tapemagic/blob/main/README.zh-CN.md)。",
]
