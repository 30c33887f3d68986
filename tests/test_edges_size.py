"""At the edges, item 1: a Hessian or a Jacobian too big for the machine is refused before it is
computed, with its size and cheaper alternatives, instead of killing the kernel.

The estimates in ``tapemagic/engine/guard.py`` come from this measurement (the rise of the peak
resident memory of a fresh process, ``VmHWM`` reset just before the derivative; one process per point;
``python measure.py MODE FUNC N`` for MODE in eager, xla, cell, jac_eager, jac_xla, jac_cell, FUNC in
sin, mat, N in 500..8000)::

    import os, sys
    mode, func, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    x = tf.Variable(tf.random.uniform([n], seed=1))
    A = (tf.constant(np.random.default_rng(0).standard_normal((n, n)).astype("float32"))
         if func == "mat" else None)

    def f(x):                                   # sum(sin(x) x²) (+ xᵀAx)
        y = tf.reduce_sum(tf.sin(x) * x**2)
        return y if A is None else y + tf.tensordot(x, tf.linalg.matvec(A, x), 1)

    def g(x):                                   # for Jacobians: element-wise, or a matvec
        return tf.sin(x) * x**2 if A is None else tf.linalg.matvec(A, tf.sin(x))

    def hess(x):                                # nested tapes, as tapemagic's eager path
        with tf.GradientTape(persistent=True) as outer:
            with tf.GradientTape() as inner:
                y = f(x)
            grad = inner.gradient(y, x)
        return outer.jacobian(grad, x)

    def jac(x):
        with tf.GradientTape() as t:
            y = g(x)
        return t.jacobian(y, x)

    def status(name):                           # kB, from /proc/self/status
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(name + ":"))

    open("/proc/self/clear_refs", "w").write("5")   # the peak (VmHWM) starts again from what is resident
    base = status("VmRSS")
    if mode == "eager":
        h = hess(x)
    elif mode == "xla":
        h = tf.function(hess, jit_compile=True)(x)
    elif mode == "jac_eager":
        h = jac(x)
    elif mode == "jac_xla":
        h = tf.function(jac, jit_compile=True)(x)
    else:                                       # through tapemagic, as %%tape x --hessian / --jacobian
        from tapemagic import _api
        from tapemagic._spec import parse_line
        line, cell = ("x --hessian", "y = f(x)") if mode == "cell" else ("x --jacobian", "y = g(x)")
        r = _api.run_code(_api.new_engine(), parse_line(line), cell,
                          {"x": x, "tf": tf, "A": A, "f": f, "g": g}, prefix="tape-cell")
        h = r.hessian if mode == "cell" else r.jacobian["x"]
    h = np.asarray(h)
    peak = status("VmHWM")
    print(mode, func, n, f"{(peak - base) * 1024 / (n * n * 4):.2f} x the result")

The factors chosen (``HESSIAN_FACTOR``, ``JACOBIAN_FACTOR``, ``FIXED_BYTES``) and the table of
measurements are in guard.py's docstring.
"""
from __future__ import annotations

import os
import re
import resource
import sys
import textwrap

import pytest

from tapemagic._spec import SpecError
from tapemagic.engine import guard

GiB = 1 << 30
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def machine(monkeypatch):
    """Simulate a machine with the given free memory (TAPEMAGIC_MEMORY_LIMIT)."""
    def set_free(size: str) -> None:
        monkeypatch.setenv(guard.ENV, size)
    return set_free


# ----------------------------------------------------------------------------- sizes and free memory

@pytest.mark.parametrize("text, size", [
    ("2147483648", 2 * GiB), ("2G", 2 * GiB), ("2g", 2 * GiB), ("2GiB", 2 * GiB), ("2GB", 2 * GiB),
    ("512M", 512 << 20), ("1.5G", 3 * GiB // 2), ("64k", 64 << 10), (" 1T ", 1 << 40), ("100B", 100),
])
def test_parse_size(text, size):
    assert guard.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "two gigs", "2X", "-1G", "1e9", "G"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="is not a size"):
        guard.parse_size(text)


def test_the_environment_variable_replaces_the_detected_memory(machine):
    machine("2G")
    assert guard.available_bytes() == 2 * GiB
    machine("123456")
    assert guard.available_bytes() == 123456


def test_a_bad_environment_variable_is_a_usage_error(machine):
    machine("lots")
    with pytest.raises(SpecError, match="TAPEMAGIC_MEMORY_LIMIT"):
        guard.available_bytes()


def test_available_bytes_is_the_smallest_limit(monkeypatch):
    monkeypatch.delenv(guard.ENV, raising=False)
    monkeypatch.setattr(guard, "_meminfo_available", lambda: 10 * GiB)
    monkeypatch.setattr(guard, "_cgroup_available", lambda: 3 * GiB)
    monkeypatch.setattr(guard, "_rlimit_available", lambda: None)
    assert guard.available_bytes() == 3 * GiB
    monkeypatch.setattr(guard, "_rlimit_available", lambda: GiB)
    assert guard.available_bytes() == GiB
    monkeypatch.setattr(guard, "_rlimit_available", lambda: -5)  # already over its limit
    assert guard.available_bytes() == 0


def test_available_bytes_falls_back_when_nothing_can_be_read(monkeypatch):
    monkeypatch.delenv(guard.ENV, raising=False)
    for helper in ("_meminfo_available", "_cgroup_available", "_rlimit_available"):
        monkeypatch.setattr(guard, helper, lambda: None)
    monkeypatch.setattr(guard, "_sysconf_available", lambda: 5 * GiB)
    assert guard.available_bytes() == 5 * GiB
    monkeypatch.setattr(guard, "_sysconf_available", lambda: None)
    assert guard.available_bytes() == sys.maxsize


def test_this_machine_has_some_memory_free(monkeypatch):
    monkeypatch.delenv(guard.ENV, raising=False)
    free = guard.available_bytes()
    assert 0 < free <= (guard._meminfo_available() or sys.maxsize)


def test_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:         1000000 kB\nMemAvailable:   11744052 kB\n")
    assert guard._meminfo_available(str(meminfo)) == 11744052 * 1024
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:         1000 kB\nCached:          2000 kB\n")
    assert guard._meminfo_available(str(meminfo)) == 3000 * 1024
    assert guard._meminfo_available(str(tmp_path / "missing")) is None


def _files(root, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def test_cgroup_v2_limit_minus_usage_up_the_hierarchy(tmp_path):
    _files(tmp_path, {
        "proc": "0::/user.slice/notebook\n",
        "cg/cgroup.controllers": "cpu memory\n",
        "cg/memory.max": "max\n",  # the root: no limit
        "cg/memory.current": "999999999999\n",
        "cg/user.slice/memory.max": str(8 * GiB),
        "cg/user.slice/memory.current": str(1 * GiB),
        "cg/user.slice/notebook/memory.max": str(2 * GiB),
        "cg/user.slice/notebook/memory.current": str(GiB + (100 << 20)),
        "cg/user.slice/notebook/memory.stat": f"anon 1\ninactive_file {100 << 20}\nactive_file 5\n",
    })
    # The page cache it could reclaim (inactive_file) is not counted as used.
    assert guard._cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == GiB
    (tmp_path / "cg/user.slice/memory.current").write_text(str(int(7.5 * GiB)))
    assert guard._cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == GiB // 2


def test_cgroup_v2_inside_a_container_whose_root_is_its_cgroup(tmp_path):
    _files(tmp_path, {
        "proc": "0::/\n",
        "cg/cgroup.controllers": "memory\n",
        "cg/memory.max": str(4 * GiB),
        "cg/memory.current": str(GiB),
    })
    assert guard._cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == 3 * GiB


def test_cgroup_v1(tmp_path):
    _files(tmp_path, {
        "proc": "12:pids:/\n4:memory:/process_api/abc\n0::/\n",
        "cg/memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
        "cg/memory/memory.usage_in_bytes": "2284068864\n",
        "cg/memory/process_api/abc/memory.limit_in_bytes": str(6 * GiB),
        "cg/memory/process_api/abc/memory.usage_in_bytes": str(3 * GiB),
        "cg/memory/process_api/abc/memory.stat": f"inactive_file 4096\ntotal_inactive_file {GiB}\n",
    })
    assert guard._cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) == 4 * GiB
    (tmp_path / "cg/memory/process_api/abc/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert guard._cgroup_available(str(tmp_path / "cg"), str(tmp_path / "proc")) is None


def test_no_cgroup_files(tmp_path):
    assert guard._cgroup_available(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_rlimit_as_minus_the_virtual_size(tmp_path, monkeypatch):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmSize:\t 2097152 kB\nVmData:\t 1048576 kB\n")
    limits = {resource.RLIMIT_AS: (5 * GiB, resource.RLIM_INFINITY), resource.RLIMIT_DATA: (resource.RLIM_INFINITY,) * 2}
    monkeypatch.setattr(resource, "getrlimit", lambda kind: limits[kind])
    assert guard._rlimit_available(str(status)) == 3 * GiB
    limits[resource.RLIMIT_DATA] = (2 * GiB, resource.RLIM_INFINITY)
    assert guard._rlimit_available(str(status)) == GiB
    limits[resource.RLIMIT_AS] = limits[resource.RLIMIT_DATA] = (resource.RLIM_INFINITY,) * 2
    assert guard._rlimit_available(str(status)) is None


# ----------------------------------------------------------------------------- estimates

def test_format_bytes():
    assert guard.format_bytes(100_000 ** 2 * 4) == "37.3 GiB"
    assert guard.format_bytes(11.2 * GiB) == "11.2 GiB"
    assert guard.format_bytes(2 * GiB) == "2.00 GiB"
    assert guard.format_bytes(224 * GiB) == "224 GiB"
    assert guard.format_bytes(512 << 20) == "512 MiB"
    assert guard.format_bytes(1.5 * (1 << 40)) == "1.50 TiB"
    assert guard.format_bytes(100) == "100 bytes"


def test_hessian_bytes_is_the_peak_not_just_the_result():
    result = 100_000 ** 2 * 4
    assert guard.hessian_bytes(100_000, 4) >= guard.HESSIAN_FACTOR * result > 2 * result
    assert guard.hessian_bytes(100_000, 8) > 1.99 * guard.hessian_bytes(100_000, 4)
    assert guard.hessian_bytes(2000, 4) < 4 * guard.hessian_bytes(1000, 4)  # the fixed part
    assert guard.hessian_bytes(0, 4) == guard.FIXED_BYTES


def test_jacobian_bytes():
    assert guard.jacobian_bytes(1000, 100_000, 4) >= guard.JACOBIAN_FACTOR * 1000 * 100_000 * 4
    assert guard.jacobian_bytes(1000, 100_000, 4) == guard.jacobian_bytes(100_000, 1000, 4)
    assert guard.jacobian_bytes(10, 10, 4) < guard.FIXED_BYTES + 10_000


def test_order_bytes_grows_linearly():
    assert guard.order_bytes(1_000_000, 4, 2) == 2 * guard.order_bytes(1_000_000, 4, 1)
    assert guard.order_bytes(1_000_000, 4, 2) < 100 << 20


def test_largest_square_fits_and_one_more_does_not():
    for free in (GiB, 2 * GiB, 11 * GiB, 100 * GiB):
        n = guard.largest_square(free, 4)
        assert guard.hessian_bytes(n, 4) <= guard.HEADROOM * free < guard.hessian_bytes(n + 1, 4)
    assert guard.largest_square(1 << 20, 4) == 0


# ----------------------------------------------------------------------------- checks

def test_the_hessian_of_100000_elements_is_refused_with_its_size_and_the_alternatives(machine):
    machine("11.2G")
    with pytest.raises(SpecError) as caught:
        guard.check_hessian(100_000, 4, names=["x"])
    message = str(caught.value)
    assert message.startswith("--hessian over 100,000 source elements needs about 37.3 GiB "
                              "(a 100,000 × 100,000 float32 matrix, and more while it is computed")
    assert "this machine has 11.2 GiB free" in message
    assert "--hvp V for a Hessian-vector product" in message
    assert "-n 2 for the element-wise second derivative" in message
    assert "x_part = x[:" in message and "%%tape x_part --hessian" in message


def test_the_slice_suggested_fits(machine):
    machine("2G")
    with pytest.raises(SpecError) as caught:
        guard.check_hessian(100_000, 4, names=["w"])
    size = int(re.search(r"w_part = w\[:(\d+)\]", str(caught.value)).group(1))
    assert 1000 <= size < 100_000
    assert f"enough for a Hessian over about {size:,} elements" in str(caught.value)
    assert guard.check_hessian(size, 4) is None


def test_a_hessian_that_fits_passes(machine):
    machine("2G")
    assert guard.check_hessian(2000, 4) is None
    assert guard.check_hessian(0, 4) is None
    assert guard.check_hessian(3, 8) is None


def test_the_peak_counts_not_only_the_result(machine):
    """A Hessian whose result alone fits but whose computation does not is refused."""
    machine("2G")
    n = 20_000  # 1.49 GiB of float32: the result fits in 2 GiB, computing it does not
    assert n * n * 4 < 2 * GiB
    with pytest.raises(SpecError, match="1.49 GiB"):
        guard.check_hessian(n, 4)


def test_the_message_names_the_option_and_the_dtype(machine):
    machine("1G")
    with pytest.raises(SpecError, match=r"^-n 2 with --hessian over 50,000 .* float64 matrix"):
        guard.check_hessian(50_000, 8, what="-n 2 with --hessian")
    with pytest.raises(SpecError, match="bfloat16"):
        guard.check_hessian(50_000, 2, dtype="bfloat16")


def test_a_jacobian_too_big_gives_a_reason_and_does_not_raise(machine):
    machine("2G")
    reason = guard.check_jacobian(1_000_000, 100_000, 4, target="y", source="x")
    assert reason.startswith("the Jacobian of y with respect to x was not computed: it would be a "
                             "1,000,000 × 100,000 float32 matrix of 373 GiB")
    assert "this machine has 2.00 GiB free" in reason and "--jacobian on a smaller target" in reason
    size = int(re.search(r"t = y\[:(\d+)\]", reason).group(1))
    assert guard.check_jacobian(size, 100_000, 4) is None
    assert guard.check_jacobian(100, 100_000, 4) is None
    assert "Jacobian was not computed" in guard.check_jacobian(100_000, 100_000, 4)


def test_order_is_refused_only_when_the_sources_barely_fit(machine):
    machine("1G")
    assert guard.check_order(1_000_000, 4, 4) is None
    with pytest.raises(SpecError, match="^-n 3 over 100,000,000 source elements"):
        guard.check_order(100_000_000, 4, 3)


def test_check_sources_counts_every_float_source_at_the_widest_dtype(machine):
    import tensorflow as tf
    from tapemagic.engine.sources import Source

    machine("2G")
    small = [Source("b", tf.Variable(tf.zeros(10))), Source("steps", tf.Variable(tf.zeros(100, tf.int32)))]
    assert guard.check_sources(small) is None
    assert guard.check_sources([]) is None
    sources = [Source("b", tf.Variable(tf.zeros(10, tf.float64))), Source("w", tf.Variable(tf.zeros([200, 250]))), *small]
    with pytest.raises(SpecError) as caught:
        guard.check_sources(sources)
    message = str(caught.value)  # 10 + 50,000 + 10 float elements; the int32 source is not differentiated
    assert message.startswith("--hessian over 50,020 source elements needs about 18.6 GiB (a 50,020 × 50,020 float64")
    assert "w_part = w[:" in message


def test_guard_does_not_import_tensorflow():
    source = open(guard.__file__, encoding="utf-8").read()
    assert not re.search(r"^(import|from) tensorflow", source, re.MULTILINE)


# ----------------------------------------------------------------------------- through a real kernel

def _kernel_spec_missing() -> str | None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
        from jupyter_client.manager import start_new_kernel  # noqa: F401
    except ImportError as error:
        return f"jupyter_client is not installed ({error})"
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return "no python3 kernel spec (pip install ipykernel)"
    return None


class _Kernel:
    def __init__(self, manager, client) -> None:
        self.manager, self.client = manager, client

    def run(self, code: str, timeout: float = 240) -> tuple[dict, str]:
        """Run code; the reply's content and everything shown (streams, results, errors) as text."""
        shown: list[str] = []

        def keep(message: dict) -> None:
            content = message["content"]
            kind = message["header"]["msg_type"]
            if kind == "stream":
                shown.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                shown.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                shown.append("\n".join([f"{content['ename']}: {content['evalue']}", *content["traceback"]]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=keep, allow_stdin=False)
        content = reply["content"]
        if content.get("status") == "error":
            shown.append(f"{content.get('ename')}: {content.get('evalue')}")
        return content, "\n".join(shown)


@pytest.fixture
def small_kernel():
    """A real IPython kernel told it has 2 GiB (TAPEMAGIC_MEMORY_LIMIT=2G) and held to about that
    for real: after TensorFlow has loaded (its import reserves much virtual memory, so the limit
    cannot be set at start), the kernel caps its own address space (RLIMIT_AS) at what it uses plus
    3 GiB. A 37 GiB Hessian that got past the guard then fails to allocate instead of taking the
    machine's memory from everything else."""
    reason = _kernel_spec_missing()
    if reason:
        pytest.skip(reason)
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, guard.ENV: "2G", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": REPO}
    manager, client = start_new_kernel(startup_timeout=120, kernel_name="python3", env=env, cwd=REPO)
    kernel = _Kernel(manager, client)
    try:
        content, shown = kernel.run(textwrap.dedent("""
            import resource
            import tensorflow as tf
            tf.reduce_sum(tf.zeros(3))  # TensorFlow's thread pools and allocators, before the cap
            def _tapemagic_vm_size():
                for line in open("/proc/self/status"):
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
            _cap = _tapemagic_vm_size() + (3 << 30)
            resource.setrlimit(resource.RLIMIT_AS, (_cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
        """))
        assert content["status"] == "ok", shown
        yield kernel
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_hessian_too_big_for_the_machine_is_a_usage_error_and_the_kernel_lives(small_kernel):
    kernel = small_kernel
    for code in ("%load_ext tapemagic", "keep = 42\nx = tf.Variable(tf.zeros(100000))"):
        content, shown = kernel.run(code)
        assert content["status"] == "ok", shown

    content, shown = kernel.run("%%tape x --hessian\ny = tf.reduce_sum(x**2)")

    assert content["status"] == "error", shown
    assert "UsageError" in shown, shown
    assert "GiB" in shown and "100,000" in shown and "--hvp" in shown, shown
    assert small_kernel.manager.is_alive()
    content, shown = kernel.run("print(keep, 'y' in dir())")
    assert content["status"] == "ok", shown
    assert shown.strip() == "42 False"  # alive, its state kept, and the cell never ran
