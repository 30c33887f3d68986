"""The cells of 001_gradients_and_mlp.ipynb (document 001: derivatives, gradients, and an MLP on MNIST)."""
from __future__ import annotations

SETUP = "%load_ext tapemagic\nimport tensorflow as tf\nimport numpy as np"

MLP = [
    ("md", "# Derivatives, gradients and an MLP on MNIST\n\nSource: document 001 (`001_0f6a20324f027438.txt`), a "
           "Chinese tutorial: a derivative, a gradient of a small regression loss, then a multilayer perceptron "
           "trained on MNIST, on a GPU where there is one."),
    ("code", SETUP),
    ("md", "## E11: the derivative of x³ + 2x² + 1 at x = 4\n\n3x² + 4x = 64:"),
    ("code", "def f(x):\n    return x**3 + 2*x**2 + 1\n\nx = tf.constant(4.0)\nwith tf.GradientTape() as g:\n    g.watch(x)\n"
             "    y = f(x)\ndy_dx = g.gradient(y, x)\nprint(dy_dx.numpy())"),
    ("code", "%%tape x\ny = f(x)"),
    ("md", "## E12: the gradient of a regression loss\n\npred = x·w + b = 6, loss = (6 − 3)² + (6 − 4)² = 13.\n\n"
           "*Erratum:* section 1.2 calls `grads` a \"variable list\" that the tape fills. It is the list of "
           "gradients that `tape.gradient` returns, one per variable: ∂loss/∂w and ∂loss/∂b."),
    ("code", "x = tf.constant([[1., 2.]])\ny = tf.constant([[3.], [4.]])\nw = tf.Variable([[1.], [2.]])\nb = tf.Variable(1.)\n"
             "with tf.GradientTape() as tape:\n    pred = tf.matmul(x, w) + b\n    loss = tf.reduce_sum(tf.square(pred - y))\n"
             "grads = tape.gradient(loss, [w, b])\nprint(grads)"),
    ("code", "%%tape w b\npred = tf.matmul(x, w) + b\nloss = tf.reduce_sum(tf.square(pred - y))"),
    ("md", "## E13: an MLP on MNIST\n\n`tapemagic.datasets.mnist.load_data()` is `tf.keras.datasets.mnist.load_data()` "
           "made to work offline: it reads the four original IDX files from a directory (`TAPEMAGIC_MNIST_DIR`), "
           "else Keras's cache and download, else public mirrors, and checks every file's sha256."),
    ("code", "from tapemagic.datasets import mnist\n\n(x_train, y_train), (x_test, y_test) = mnist.load_data()\n"
             "x_train, x_test = x_train / 255.0, x_test / 255.0\nprint(x_train.shape, y_train.shape)"),
    ("md", "The document trains on a GPU where there is one. TensorFlow places the work on the first GPU it "
           "sees, else on the CPU (`pip install \"tapemagic[gpu]\"` installs `tensorflow[and-cuda]`):"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# the device depends on the machine\ngpus = tf.config.list_physical_devices('GPU')\n"
             "device = f'GPU: {gpus[0].name}' if gpus else 'CPU'\nprint('training on', device)"),
    ("code", "assert device == 'CPU' or device.startswith('GPU')"),
    ("md", "The model as the document builds it. In Keras 3, `Flatten(input_shape=(28, 28))` warns; the current "
           "spelling is an `Input` layer followed by `Flatten()`."),
    ("code", "tf.keras.utils.set_random_seed(0)\nmodel = tf.keras.models.Sequential([\n    tf.keras.Input(shape=(28, 28)),\n"
             "    tf.keras.layers.Flatten(),\n    tf.keras.layers.Dense(128, activation='relu'),\n    tf.keras.layers.Dropout(0.2),\n"
             "    tf.keras.layers.Dense(10),\n])\npredictions = model(x_train[:1]).numpy()\nprint(predictions.shape)\n"
             "print(round(float(tf.reduce_sum(tf.nn.softmax(predictions))), 4))  # probabilities sum to 1"),
    ("md", "Before training, the gradient of one batch's loss with respect to every weight, as the optimizer will "
           "see it (the sources are the trainable variables the cell touched):"),
    ("code", "loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)\n"
             "batch_x, batch_y = tf.constant(x_train[:32], tf.float32), y_train[:32]"),
    ("code", "%%tape --display text\nloss = loss_fn(batch_y, model(batch_x, training=False))"),
    ("code", "import time\n\nclass EpochTimer(tf.keras.callbacks.Callback):\n    \"\"\"Records each epoch's wall time.\"\"\"\n\n"
             "    def on_train_begin(self, logs=None):\n        self.times = []\n\n    def on_epoch_begin(self, epoch, logs=None):\n"
             "        self.started = time.perf_counter()\n\n    def on_epoch_end(self, epoch, logs=None):\n"
             "        self.times.append(time.perf_counter() - self.started)\n\n"
             "model.compile(optimizer='adam', loss=loss_fn, metrics=['accuracy'])"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# training logs vary from run to run\ntimer = EpochTimer()\nstarted = time.perf_counter()\n"
             "history = model.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test), callbacks=[timer], verbose=2)\n"
             "document_seconds = time.perf_counter() - started\ntest_loss, test_acc = model.evaluate(x_test, y_test, verbose=2)"),
    ("md", "The document reports about 0.978 after 5 epochs; the run above is checked to be at least 0.97:"),
    ("code", "assert test_acc >= 0.97, test_acc\nprint('test accuracy after 5 epochs >= 0.97:', test_acc >= 0.97)"),
    ("md", "## E14–E16: three variants\n\nAs the document builds them: LeakyReLU, BatchNormalization, and L2 with "
           "Dropout. In Keras 3, `LeakyReLU(alpha=0.2)` is spelled `LeakyReLU(negative_slope=0.2)`."),
    ("code", "from tensorflow.keras import layers, regularizers\n\ndef leaky():\n    return [layers.Dense(128), layers.LeakyReLU(negative_slope=0.2), layers.Dropout(0.5)]\n\n"
             "def batch_norm():\n    return [layers.Dense(128), layers.BatchNormalization(), layers.ReLU(), layers.Dropout(0.5)]\n\n"
             "def l2_dropout():\n    return [layers.Dense(128, activation='relu', kernel_regularizer=regularizers.l2(0.001)), layers.Dropout(0.5)]\n\n"
             "def variant(hidden):\n    tf.keras.utils.set_random_seed(0)\n"
             "    m = tf.keras.Sequential([tf.keras.Input(shape=(28, 28)), layers.Flatten(), *hidden(), layers.Dense(10)])\n"
             "    m.compile(optimizer='adam', loss=loss_fn, metrics=['accuracy'])\n    return m"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# training logs vary from run to run\nvariants = {}\n"
             "for name, hidden in [('LeakyReLU', leaky), ('BatchNormalization', batch_norm), ('L2 + Dropout', l2_dropout)]:\n"
             "    m = variant(hidden)\n    m.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test), verbose=0)\n"
             "    variants[name] = m.evaluate(x_test, y_test, verbose=0)[1]\n    print(f'{name:20s} test accuracy {variants[name]:.4f}')"),
    ("code", "assert all(accuracy >= 0.95 for accuracy in variants.values()), variants\nprint('every variant >= 0.95:', sorted(variants))"),
    ("md", "## The four variants' gradients, layer by layer\n\nWhat do these choices do to the gradients? With a Keras "
           "model's variables as the sources, the result of `%%tape` also holds the gradient flow: `r.layers`, one row "
           "per layer and variable (input layer first) with the gradient's norm ‖g‖, its largest element, the share of "
           "exact zeros, ‖g‖/‖w‖, and a flag in words where something looks wrong (vanishing, exploding, dead ReLU "
           "units, a `None` gradient and why), with a chart of each layer's norm on a log scale. The document's model "
           "and its three variants, rebuilt from the same seed, on 500 training images, in training mode and with the "
           "L2 penalties (`model.losses`), as `fit` computes the loss:"),
    ("code", "import tapemagic\n\ndef relu():\n    return [layers.Dense(128, activation='relu'), layers.Dropout(0.2)]\n\n"
             "flow_x, flow_y = tf.constant(x_train[:500], tf.float32), y_train[:500]\n"
             "fresh = {name: variant(hidden) for name, hidden in\n"
             "         [('ReLU', relu), ('LeakyReLU', leaky), ('BatchNormalization', batch_norm), ('L2 + Dropout', l2_dropout)]}\n"
             "bn_model = variant(batch_norm)  # a twin of fresh['BatchNormalization']: the same seed, the same numbers"),
    ("code", "%%tape bn_model.trainable_variables -o r --display none\n"
             "loss = loss_fn(flow_y, bn_model(flow_x, training=True)) + sum(bn_model.losses)"),
    ("code", "r.layers"),
    ("md", "The first Dense layer's bias gets a gradient of about 1e-7, flagged as vanishing: BatchNormalization "
           "subtracts the batch mean right after that layer, so a bias there cannot change the output (the usual fix is "
           "`Dense(128, use_bias=False)` before a BatchNormalization). The moving mean and variance have no gradient at "
           "all: BatchNormalization updates them in the forward pass, which is why `model.trainable_variables` leaves them "
           "out. And a quarter of the first kernel's gradient is exactly 0: those weights read pixels that are 0 in all "
           "500 images (counted below).\n\nThe same for each variant, at initialisation and after one epoch, one chart per "
           "moment on one log scale (`tapemagic.tape` is the Python form of `%%tape`):"),
    ("code", "from html import escape\nfrom tapemagic.render import flow as flow_view\n\n"
             "def gradient_flow(m):\n    \"\"\"What the cell above shows, for any model: one real run under the tape.\"\"\"\n"
             "    code = 'loss = loss_fn(flow_y, m(flow_x, training=True)) + sum(m.losses)'\n"
             "    namespace = {'loss_fn': loss_fn, 'flow_x': flow_x, 'flow_y': flow_y, 'm': m}\n"
             "    return tapemagic.tape(code, namespace=namespace, display='none').layers\n\n"
             "class FlowComparison:\n"
             "    \"\"\"Each variant's gradient norm per layer at initialisation and after one epoch: two charts side by side\n"
             "    per variant, on one log scale, in HTML; a table in text.\"\"\"\n\n"
             "    def __init__(self, before, after):\n        self.before, self.after = before, after\n"
             "        self.moments = {'init': before, 'epoch 1': after}\n\n"
             "    def _repr_html_(self):\n"
             "        span = flow_view.decades([norm for tables in self.moments.values() for table in tables.values()\n"
             "                                  for _, _, norm in table.layer_norms()])\n"
             "        rows = []\n"
             "        for name in self.before:\n"
             "            charts = [flow_view.chart(tables[name].layer_norms(), span, flow_view.flagged_layers(tables[name]),\n"
             "                                      bar_width=160) for tables in self.moments.values()]\n"
             "            cells = ''.join(f'<div>{escape(when)}<br>{chart}</div>' for when, chart in zip(self.moments, charts))\n"
             "            rows.append(f'<div><b>{escape(name)}</b><div style=\"display:flex;gap:24px;flex-wrap:wrap\">{cells}</div></div>')\n"
             "        return '<div>' + ''.join(rows) + '</div>'\n\n"
             "    def __repr__(self):\n"
             "        width = max(len(layer) for tables in self.moments.values() for table in tables.values()\n"
             "                    for layer in table.layer_names())\n"
             "        lines = []\n"
             "        for name in self.before:\n"
             "            lines.append(f\"{name:{width + 2}s} {'‖g‖ init':>9s} {'epoch 1':>9s}  flags\")\n"
             "            for (layer, _, before), (_, _, after) in zip(self.before[name].layer_norms(), self.after[name].layer_norms()):\n"
             "                flags = {}  # 'bias vanishing' -> the moments it was flagged at\n"
             "                for when, tables in self.moments.items():\n"
             "                    for row in tables[name][layer]:\n"
             "                        if row.flag and not row.flag.startswith('None'):\n"
             "                            words = row.flag if row.flag.startswith('dead') else row.flag.split(':')[0]\n"
             "                            flags.setdefault(f'{row.variable} {words}', []).append(when)\n"
             "                said = ', '.join(f\"{what} ({', '.join(whens)})\" for what, whens in flags.items())\n"
             "                lines.append(f'  {layer:{width}s} {before:9.3g} {after:9.3g}  {said}')\n"
             "        return '\\n'.join(line.rstrip() for line in lines)\n\n"
             "at_init = {name: gradient_flow(m) for name, m in fresh.items()}"),
    ("md", "One epoch of each, as the document trains them (quiet: the logs are above), then the same gradients again:"),
    ("code", "for m in fresh.values():\n    m.fit(x_train, y_train, epochs=1, verbose=0)\n"
             "after_epoch = {name: gradient_flow(m) for name, m in fresh.items()}\nFlowComparison(at_init, after_epoch)"),
    ("code", "for name in fresh:\n    kernel = at_init[name][0]\n"
             "    print(f'{name:19s} {kernel.layer}/{kernel.variable}: {kernel.zeros:6.1%} of its gradient is exactly 0 at init')\n"
             "print(f'pixels that are 0 in all 500 images: {np.mean(np.all(x_train[:500] == 0, axis=0)):.1%}')"),
    ("md", "At initialisation BatchNormalization gives the first Dense layer a gradient more than twice as large as the "
           "other variants do (2.86 against 1.15 to 1.26), and one epoch of Adam shrinks every gradient, as the loss "
           "falls: about 5 to 6 times in the variants without it, 12 times in that first layer with it. L2 hardly "
           "changes the norms (1.21 against 1.15), but it adds 2 · 0.001 · w to every kernel weight's gradient, so none "
           "of its first kernel's gradient is exactly 0, against 26 to 34 % in the other variants (the always-black "
           "pixels, and with ReLU also pairs of a lit pixel and a unit that stays at 0 on it). After one epoch, one of "
           "the 128 ReLU units of the document's model is dead on these 500 images; a LeakyReLU's slope is never 0, so "
           "its units cannot die."),
    ("md", "## Train it fast\n\nThe same model, fed differently: the images as float32 (not float64) in a `tf.data` "
           "pipeline that caches, shuffles, batches and prefetches; batch 128 instead of 32 with the learning rate "
           "raised to 3e-3 and decayed along a cosine, so the accuracy holds; `steps_per_execution=64` so Keras "
           "runs 64 steps per call instead of one. On a GPU, also XLA (`jit_compile=True`) and mixed precision; "
           "on the 2 CPU cores where this was measured, XLA made an epoch about 3× slower, so it is left off there."),
    ("code", "on_gpu = bool(tf.config.list_physical_devices('GPU'))\nif on_gpu:\n    tf.keras.mixed_precision.set_global_policy('mixed_float16')\n\n"
             "batch, epochs = 128, 6\ntrain = (tf.data.Dataset.from_tensor_slices((x_train.astype('float32'), y_train)).cache()\n"
             "         .shuffle(60_000, seed=0).batch(batch).prefetch(tf.data.AUTOTUNE))\n"
             "tf.keras.utils.set_random_seed(0)\nfast = tf.keras.Sequential([\n    tf.keras.Input(shape=(28, 28)), layers.Flatten(),\n"
             "    layers.Dense(128, activation='relu'), layers.Dropout(0.2), layers.Dense(10, dtype='float32'),\n])\n"
             "schedule = tf.keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * len(train), alpha=0.05)\n"
             "fast.compile(optimizer=tf.keras.optimizers.Adam(schedule), loss=loss_fn, metrics=['accuracy'],\n"
             "             jit_compile=on_gpu, steps_per_execution=64)"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# training logs and timings vary from run to run\nfast_timer = EpochTimer()\nstarted = time.perf_counter()\n"
             "fast_history = fast.fit(train, epochs=epochs, callbacks=[fast_timer], shuffle=False, verbose=2)  # the pipeline shuffles\nfast_seconds = time.perf_counter() - started\n"
             "fast_acc = fast.evaluate(x_test.astype('float32'), y_test, verbose=0)[1]\n"
             "tf.keras.mixed_precision.set_global_policy('float32')\n\n"
             "def per_epoch(times):\n    return float(np.median(times[1:]))\n\n"
             "print(f\"{'':10s} {'s/epoch':>8s} {'total s':>8s} {'test acc':>9s}\")\n"
             "print(f\"{'document':10s} {per_epoch(timer.times):8.2f} {document_seconds:8.1f} {test_acc:9.4f}\")\n"
             "print(f\"{'fast':10s} {per_epoch(fast_timer.times):8.2f} {fast_seconds:8.1f} {fast_acc:9.4f}\")\n"
             "print(f'fast / document, total time: {fast_seconds / document_seconds:.2f}')"),
    ("code", "assert fast_acc >= 0.975, fast_acc\nprint('fast configuration test accuracy >= 0.975:', fast_acc >= 0.975)"),
    ("code", "import matplotlib.pyplot as plt\n\nfigure, axes = plt.subplots(1, 2, figsize=(10, 3.5))\n"
             "axes[0].plot(range(1, 6), history.history['accuracy'], 'o-', label='document, batch 32')\n"
             "axes[0].plot(range(1, epochs + 1), fast_history.history['accuracy'], 'o-', label='fast, batch 128')\n"
             "axes[0].set_xlabel('epoch'); axes[0].set_ylabel('training accuracy'); axes[0].legend()\n"
             "axes[1].plot(np.cumsum(timer.times), history.history['loss'], 'o-', label='document')\n"
             "axes[1].plot(np.cumsum(fast_timer.times), fast_history.history['loss'], 'o-', label='fast')\n"
             "axes[1].set_xlabel('seconds'); axes[1].set_ylabel('training loss'); axes[1].legend()\nplt.show()"),
    ("md", "## More than one GPU, more than one machine\n\nTensorFlow's strategies do the distribution; the model "
           "code stays the same. `MirroredStrategy` keeps a copy of the model on each local GPU and averages the "
           "gradients; with no GPU it runs on the CPU as one replica. Build and compile under its scope, and "
           "scale the global batch with the number of replicas:"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# the devices depend on the machine\nstrategy = tf.distribute.MirroredStrategy()\nprint('replicas:', strategy.num_replicas_in_sync)\n"
             "with strategy.scope():\n    mirrored = variant(lambda: [layers.Dense(128, activation='relu'), layers.Dropout(0.2)])\n"
             "global_batch = 128 * strategy.num_replicas_in_sync\n"
             "mirrored_data = (tf.data.Dataset.from_tensor_slices((x_train.astype('float32'), y_train)).cache()\n"
             "                 .shuffle(60_000, seed=0).batch(global_batch).prefetch(tf.data.AUTOTUNE))"),
    ("code", "assert strategy.num_replicas_in_sync >= 1\nprint('one replica per device; the global batch is', global_batch // strategy.num_replicas_in_sync, 'per replica')"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n# training logs vary from run to run\nmirrored.fit(mirrored_data, epochs=1, shuffle=False, verbose=2)  # the pipeline shuffles\n"
             "mirrored_acc = mirrored.evaluate(x_test, y_test, verbose=0)[1]"),
    ("code", "assert mirrored_acc >= 0.9, mirrored_acc\nprint('one mirrored epoch >= 0.9:', mirrored_acc >= 0.9)"),
    ("md", "Several machines use `MultiWorkerMirroredStrategy`. Each machine runs the same script with a "
           "`TF_CONFIG` environment variable that lists every worker and says which one it is; the strategy "
           "must be created first thing in the program, before other TensorFlow calls. For two workers:"),
    ("code", "import json\n\ncluster = {'worker': ['10.0.0.1:12345', '10.0.0.2:12345']}\nfor index in range(2):\n"
             "    print(f\"worker {index}: TF_CONFIG='{json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}})}'\")"),
    ("md", "and in the script, in place of `MirroredStrategy()`:\n\n```python\nstrategy = tf.distribute.MultiWorkerMirroredStrategy()\n"
           "with strategy.scope():\n    model = ...  # built and compiled as above\nmodel.fit(dataset, epochs=5)  # the dataset's batch is the global batch\n```\n\n"
           "Worker 0 is the chief: it writes checkpoints and logs. The addresses above are examples; each worker "
           "must reach the others on its port."),
]
