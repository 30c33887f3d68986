"""Train document 001's MNIST MLP two ways in one run, on the same data, and compare.

    python benchmarks/mlp_train.py --backend tensorflow --mnist-dir ../shared/data/mnist

``document``: the seed exactly (batch 32, Adam 1e-3, 5 epochs, validation on the test set
each epoch, float64 inputs as ``x / 255.0`` gives). ``fast``: float32 inputs kept in a
cached, shuffled, prefetched pipeline (tf.data on the TensorFlow backend, arrays on JAX),
a larger batch with a learning rate raised to keep the accuracy, XLA (``jit_compile``),
``steps_per_execution``, and mixed precision on a GPU only. Prints, for each, the median
seconds per epoch after the first, the total seconds, the test accuracy, and the ratio.
A benchmark, not a test: the suite only checks that it runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the document's configuration (default 5)")
    parser.add_argument("--fast-epochs", type=int, default=6)
    parser.add_argument("--fast-batch", type=int, default=128)
    parser.add_argument("--fast-lr", type=float, default=3e-3)
    parser.add_argument("--steps-per-execution", type=int, default=64)
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="XLA for the fast configuration; auto: on a GPU only (on 2 CPU cores it made an epoch "
                             "about 3x slower when measured here)")
    parser.add_argument("--mnist-dir", default=os.environ.get("TAPEMAGIC_MNIST_DIR", str(REPO.parent / "shared" / "data" / "mnist")))
    parser.add_argument("--limit", type=int, default=0, help="use only this many training images (a smoke test)")
    parser.add_argument("--only", choices=("document", "fast", "both"), default="both")
    return parser.parse_args()


def load(directory: str, limit: int):
    sys.path.insert(0, str(REPO))
    from tapemagic.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(directory=directory, keras=False, mirrors=())
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    return (x_train, y_train), (x_test, y_test)


class EpochTimes:
    """A Keras callback that records each epoch's wall time."""

    def __init__(self, keras):
        class Callback(keras.callbacks.Callback):
            def __init__(inner):
                super().__init__()
                inner.times = []

            def on_epoch_begin(inner, epoch, logs=None):
                inner.started = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                inner.times.append(time.perf_counter() - inner.started)

        self.callback = Callback()


def document_model(keras):
    """The seed's model, spelled for Keras 3 (an Input layer instead of Flatten(input_shape=...))."""
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10),
    ])


def run_document(keras, data, epochs: int) -> dict:
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = x_train / 255.0, x_test / 255.0  # float64, as the document does
    keras.utils.set_random_seed(0)
    model = document_model(keras)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    times = EpochTimes(keras).callback
    started = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, validation_data=(x_test, y_test), verbose=0, callbacks=[times])
    total = time.perf_counter() - started
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    return {"times": times.times, "total": total, "accuracy": accuracy}


def run_fast(keras, data, args, on_gpu: bool) -> dict:
    (x_train, y_train), (x_test, y_test) = data
    jit = args.jit == "on" or (args.jit == "auto" and on_gpu)
    x_train = (x_train.astype("float32") / 255.0)
    x_test = (x_test.astype("float32") / 255.0)
    keras.utils.set_random_seed(0)
    if on_gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, dtype="float32"),  # logits in float32 under mixed precision
    ])
    steps = -(-len(x_train) // args.fast_batch)
    schedule = keras.optimizers.schedules.CosineDecay(args.fast_lr, decay_steps=steps * args.fast_epochs, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  jit_compile=jit, steps_per_execution=args.steps_per_execution)
    times = EpochTimes(keras).callback
    started = time.perf_counter()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        train = (tf.data.Dataset.from_tensor_slices((x_train, y_train)).cache()
                 .shuffle(len(x_train), seed=0, reshuffle_each_iteration=True)
                 .batch(args.fast_batch).prefetch(tf.data.AUTOTUNE))
        model.fit(train, epochs=args.fast_epochs, verbose=0, callbacks=[times])
    else:
        model.fit(x_train, y_train, batch_size=args.fast_batch, epochs=args.fast_epochs, shuffle=True, verbose=0, callbacks=[times])
    total = time.perf_counter() - started
    accuracy = model.evaluate(x_test, y_test, batch_size=2048, verbose=0)[1]
    if on_gpu:
        keras.mixed_precision.set_global_policy("float32")
    return {"times": times.times, "total": total, "accuracy": accuracy, "jit": jit}


def describe(name: str, result: dict) -> str:
    later = result["times"][1:] or result["times"]
    return (f"{name:9s} epochs {len(result['times']):2d}  s/epoch (median after the first) {statistics.median(later):7.3f}  "
            f"total s {result['total']:7.2f}  test accuracy {result['accuracy']:.4f}")


def main() -> None:
    args = parse()
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    data = load(args.mnist_dir, args.limit)
    if args.backend == "jax":
        import jax

        devices = jax.devices()
        on_gpu = devices[0].platform == "gpu"
        device = f"{devices[0].platform}: {devices[0].device_kind}"
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        on_gpu = bool(gpus)
        device = f"GPU: {gpus[0].name}" if gpus else f"CPU ({os.cpu_count()} cores)"
    print(f"backend {args.backend}, keras {keras.__version__}, device {device}, train images {len(data[0][0])}")
    results = {}
    if args.only in ("document", "both"):
        results["document"] = run_document(keras, data, args.epochs)
        print(describe("document", results["document"]), flush=True)
    if args.only in ("fast", "both"):
        results["fast"] = run_fast(keras, data, args, on_gpu)
        print(describe("fast", results["fast"]) + f"  (batch {args.fast_batch}, lr {args.fast_lr}, "
              f"steps_per_execution {args.steps_per_execution}, jit_compile {results['fast']['jit']}, mixed precision {'on' if on_gpu else 'off'})", flush=True)
    if len(results) == 2:
        ratio = results["fast"]["total"] / results["document"]["total"]
        print(f"ratio fast/document: total time {ratio:.3f}, accuracy {results['fast']['accuracy']:.4f} vs {results['document']['accuracy']:.4f}")


if __name__ == "__main__":
    main()
