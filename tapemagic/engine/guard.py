"""Size guard: refuse a Hessian or a Jacobian that cannot fit, before it is computed.

A Hessian over n source elements is an n × n matrix, and TensorFlow holds several such
matrices while it computes one (pfor vectorizes the n vector-Jacobian products, so every op of
the gradient becomes an n × n op; XLA and the identity seeds add their own). Asked for one that
does not fit, TensorFlow does not fail cleanly: the kernel is killed by the OOM killer or
segfaults, or an allocation fails deep inside pfor. So the engine estimates the PEAK memory first,
compares it with what this process can still use, and refuses with the size and cheaper
alternatives.

Pure Python (and tapemagic's message catalog): nothing here imports TensorFlow (``check_sources`` only reads the shapes and dtypes
of the tensors it is given), so the estimates and messages cost nothing to compute.

Measured peak factors: the rise of the peak resident memory (``VmHWM``, reset just before) while
one derivative is computed, divided by the bytes of its n × n float32 result; CPU, TensorFlow 2.21,
2 cores, one fresh process per point (the script is in the docstring of ``tests/test_edges_size.py``).
"sin" is ``sum(sin(x) x²)`` (element-wise), "mat" adds ``xᵀAx`` (a matmul); "eager" is
``tape.jacobian`` of the gradient on nested eager tapes (tapemagic's eager path), "xla" the same in
a ``tf.function(jit_compile=True)``, "tapemagic" ``%%tape x --hessian`` on ``y = f(x)`` (the real
run, then the traced path with the identity seeds taken out). Jacobians: ``tape.jacobian`` of
``sin(x) x²`` ("sin") or of ``A @ sin(x)`` ("mat")::

    Hessian          n=4000  n=8000       Jacobian          n=4000  n=8000
    eager sin         5.86    6.03        eager sin          3.11    3.03
    eager mat        10.42    8.95        eager mat          1.36      -
    xla sin           3.03    2.28        xla sin            3.01    2.27
    xla mat           6.16    6.04        xla mat            4.11      -
    tapemagic sin     2.27    2.03        tapemagic sin      2.18    2.02
    tapemagic mat     1.39    1.05        tapemagic mat      1.25      -

Below n = 3000 fixed costs dominate (XLA compiling the graph: 70 to 130 MiB at n = 500), hence
:data:`FIXED_BYTES`. Which path will run is only known after the cell ran (an effect seen by
TensorFlow's op log sends it to the eager tapes, and a trace that fails falls back to them too),
so the factors cover the eager path: 12 for a Hessian (the worst measured, 10.4, and some margin),
5 for a Jacobian (worst 4.1).
"""
from __future__ import annotations

import math
import os
import re
import resource
import sys
from typing import Any, Iterable

from .._i18n import _
from .._spec import SpecError

__all__ = [
    "ENV", "HESSIAN_FACTOR", "JACOBIAN_FACTOR", "FIXED_BYTES", "available_bytes", "parse_size", "format_bytes",
    "hessian_bytes", "jacobian_bytes", "order_bytes", "check_hessian", "check_sources", "check_jacobian", "check_order",
    "largest_square",
]

#: Environment variable that replaces the detected free memory, in bytes or with a suffix
#: (``2G``, ``512M``, ``1.5GiB``): tests use it to simulate a small machine.
ENV = "TAPEMAGIC_MEMORY_LIMIT"

#: Peak bytes of a Hessian computation, per byte of the n × n result (see the module docstring).
HESSIAN_FACTOR = 12.0
#: Peak bytes of a (pfor-vectorized) Jacobian, per byte of the m × n result.
JACOBIAN_FACTOR = 5.0
#: What any traced Hessian or Jacobian costs regardless of its size (XLA compiling the graph).
FIXED_BYTES = 128 << 20
#: Only refuse when the estimate is above this share of the free memory: the cell's own
#: tensors, the tapes and the rest of the notebook need room too.
HEADROOM = 0.8
# A request that needs at most this beyond FIXED_BYTES is not checked against the machine's memory (unless TAPEMAGIC_MEMORY_LIMIT is set):
# reading /proc and the cgroups cost a warm re-run of a small Hessian a quarter of its time, and a kernel
# that cannot find 32 MiB more is not one a refusal would save.
UNCHECKED_BYTES = 32 << 20

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_DTYPES = {2: "float16", 4: "float32", 8: "float64", 16: "complex128"}
_NO_LIMIT = 1 << 60  # cgroup v1 writes 9223372036854771712 for "no limit"


# ----------------------------------------------------------------------------- free memory

def parse_size(text: str) -> int:
    """Bytes from ``"2147483648"``, ``"2G"``, ``"512M"``, ``"1.5GiB"`` or ``"64k"`` (binary units).

    Raises ValueError for anything else, with the accepted forms in the message.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(_("{text} is not a size: write bytes (2147483648) or a number with K, M, G or T (2G, 512M)",
                           text=repr(text)))
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _plainly_fits(needed: int, fixed: int = FIXED_BYTES) -> bool:
    """Small enough not to read the machine's memory for: at most UNCHECKED_BYTES beyond the ``fixed`` part
    the estimate includes (FIXED_BYTES for Hessians and Jacobians, none for -n)."""
    return needed - fixed <= UNCHECKED_BYTES and not os.environ.get(ENV, "").strip()


def available_bytes() -> int:
    """Memory this process can still use, in bytes.

    The smallest of: ``MemAvailable`` in ``/proc/meminfo``; each memory cgroup this process is in
    (v2 ``memory.max`` minus ``memory.current``, v1 ``memory.limit_in_bytes`` minus
    ``memory.usage_in_bytes``, the page cache it could reclaim not counted as used), up to the
    root of the hierarchy; and ``RLIMIT_AS`` / ``RLIMIT_DATA`` minus the process's current
    virtual / data size where those limits are set. Where none of these can be read (not
    Linux), the free physical pages ``os.sysconf`` reports, and failing that no limit at all.

    ``TAPEMAGIC_MEMORY_LIMIT`` (bytes, or ``2G``) replaces all of this when set.
    """
    override = os.environ.get(ENV, "").strip()
    if override:
        try:
            return parse_size(override)
        except ValueError as error:
            raise SpecError(_("{variable}: {error}", variable=ENV, error=error)) from None
    found = [value for value in (_meminfo_available(), _cgroup_available(), _rlimit_available()) if value is not None]
    if not found:
        found = [value for value in (_sysconf_available(),) if value is not None]
    return max(0, min(found)) if found else sys.maxsize


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def _meminfo_available(path: str = "/proc/meminfo") -> int | None:
    text = _read(path)
    if text is None:
        return None
    fields = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    if "MemAvailable" in fields:
        return fields["MemAvailable"]
    if "MemFree" in fields:  # kernels before 3.14
        return fields["MemFree"] + fields.get("Cached", 0)
    return None


def _cgroup_available(root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> int | None:
    """The least room left in any memory cgroup above this process (v2 and v1), or None."""
    text = _read(self_cgroup) or ""
    v2_path, v1_path = None, None
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "" and line.startswith("0::"):
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    rooms = []
    # v2: the unified hierarchy is mounted at root (or at root/unified on hybrid systems).
    for base in (root, os.path.join(root, "unified")):
        if os.path.exists(os.path.join(base, "cgroup.controllers")):
            rooms += _walk(base, v2_path, "memory.max", "memory.current", "inactive_file")
            break
    rooms += _walk(os.path.join(root, "memory"), v1_path, "memory.limit_in_bytes", "memory.usage_in_bytes",
                   "total_inactive_file")
    return min(rooms) if rooms else None


def _walk(base: str, path: str | None, limit_name: str, usage_name: str, reclaimable: str) -> list[int]:
    """Limit minus usage of each cgroup from this process's own up to ``base``. Inside a container
    the process's path is often not visible below ``base`` (the container's root is its cgroup):
    then ``base`` itself is the cgroup."""
    if not os.path.isdir(base):
        return []
    directories = []
    parts = [part for part in (path or "").split("/") if part]
    for depth in range(len(parts), -1, -1):
        directory = os.path.join(base, *parts[:depth])
        if os.path.isdir(directory):
            directories.append(directory)
    rooms = []
    for directory in directories:
        limit = _number(_read(os.path.join(directory, limit_name)))
        usage = _number(_read(os.path.join(directory, usage_name)))
        if limit is None or usage is None or limit >= _NO_LIMIT:
            continue
        stat = _read(os.path.join(directory, "memory.stat")) or ""
        cache = next((int(value) for name, _, value in (line.partition(" ") for line in stat.splitlines())
                      if name == reclaimable and value.strip().isdigit()), 0)
        rooms.append(limit - max(0, usage - cache))
    return rooms


def _number(text: str | None) -> int | None:
    """A cgroup file's number; ``max`` (v2, no limit) is None."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def _rlimit_available(status: str = "/proc/self/status") -> int | None:
    """RLIMIT_AS minus the virtual size and RLIMIT_DATA minus the data size, where set."""
    fields = {}
    for line in (_read(status) or "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * 1024
    rooms = []
    for limit_kind, used in ((resource.RLIMIT_AS, fields.get("VmSize")), (getattr(resource, "RLIMIT_DATA", None), fields.get("VmData"))):
        if limit_kind is None:
            continue
        try:
            soft, _ = resource.getrlimit(limit_kind)
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        rooms.append(soft - (used or 0))
    return min(rooms) if rooms else None


def _sysconf_available() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


# ----------------------------------------------------------------------------- estimates

def hessian_bytes(source_elements: int, itemsize: int) -> int:
    """Estimated PEAK memory of a Hessian over ``source_elements`` flattened source elements:
    the n × n result times :data:`HESSIAN_FACTOR`, plus :data:`FIXED_BYTES`."""
    n = max(0, int(source_elements))
    return int(HESSIAN_FACTOR * n * n * int(itemsize)) + FIXED_BYTES


def jacobian_bytes(target_elements: int, source_elements: int, itemsize: int) -> int:
    """Estimated PEAK memory of one pfor-vectorized Jacobian: the m × n result times
    :data:`JACOBIAN_FACTOR`, plus :data:`FIXED_BYTES`."""
    m, n = max(0, int(target_elements)), max(0, int(source_elements))
    return int(JACOBIAN_FACTOR * m * n * int(itemsize)) + FIXED_BYTES


def order_bytes(source_elements: int, itemsize: int, order: int) -> int:
    """Estimated memory of ``-n ORDER`` beyond the cell itself: element-wise derivatives keep one
    tensor the size of the sources per order, and each order's gradient graph holds a few more
    (the tapes of the cell's own run, which no estimate here can know, come on top)."""
    return int(4 * max(1, int(order)) * max(0, int(source_elements)) * int(itemsize))


def largest_square(available: int, itemsize: int) -> int:
    """The largest n whose Hessian fits in ``available`` bytes (by :func:`hessian_bytes`)."""
    room = HEADROOM * available - FIXED_BYTES
    if room <= 0:
        return 0
    n = int(math.isqrt(int(room / (HESSIAN_FACTOR * itemsize))))
    while n > 0 and hessian_bytes(n, itemsize) > HEADROOM * available:
        n -= 1
    return n


def format_bytes(size: float) -> str:
    """``37.3 GiB``, ``11.2 GiB``, ``224 GiB``, ``512 MiB``: binary units, three significant digits."""
    for unit, scale in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}" if value >= 10 else f"{value:.2f} {unit}"
    return _("{count} bytes", count=int(size))


def _dtype(itemsize: int, dtype: str | None) -> str:
    return dtype or _DTYPES.get(int(itemsize)) or _("{size}-byte", size=int(itemsize))


def _nice(n: int) -> int:
    """n rounded down to 1, 2 or 5 times a power of ten (a slice size people would write)."""
    if n < 1:
        return 0
    power = 10 ** (len(str(n)) - 1)
    return max(step * power for step in (1, 2, 5) if step * power <= n)


# ----------------------------------------------------------------------------- checks

def check_hessian(total_source_elements: int, itemsize: int, what: str = "--hessian", *,
                  dtype: str | None = None, names: Iterable[str] = ()) -> None:
    """Raise SpecError when a Hessian over ``total_source_elements`` flattened float elements
    (all sources together) would not fit in :func:`available_bytes`; return None when it fits.

    ``what`` names the option in the message; ``dtype`` the element type (else guessed from
    ``itemsize``); ``names`` the sources, for the slice the message suggests. Call it after the
    sources are resolved and before the cell runs: the magic turns the SpecError into a
    UsageError and nothing has run.
    """
    n = int(total_source_elements)
    needed = hessian_bytes(n, itemsize)
    if _plainly_fits(needed):
        return None
    free = available_bytes()
    if needed <= HEADROOM * free:
        return None
    result = n * n * int(itemsize)
    fits = _nice(largest_square(free, itemsize))
    name = next(iter(names), "x")
    part = f"{name}_part = {name}[:{fits}]" if fits else f"{name}_part = {name}[:10]"
    fields = dict(what=what, n=f"{n:,}", size=format_bytes(result), dtype=_dtype(itemsize, dtype),
                  peak=format_bytes(needed), free=format_bytes(free), fits=f"{fits:,}", part=part, name=name)
    if fits:
        raise SpecError(_(
            "{what} over {n} source elements needs about {size} (a {n} × {n} {dtype} matrix, and more while it is "
            "computed: about {peak} at the peak); this machine has {free} free, enough for a Hessian over about "
            "{fits} elements. Use --hvp V for a Hessian-vector product, -n 2 for the element-wise second derivative, "
            "or name a slice of the source ({part} in an earlier cell, and %%tape {name}_part --hessian on a cell "
            "that uses {name}_part).", **fields))
    raise SpecError(_(
        "{what} over {n} source elements needs about {size} (a {n} × {n} {dtype} matrix, and more while it is "
        "computed: about {peak} at the peak); this machine has {free} free. Use --hvp V for a Hessian-vector "
        "product, -n 2 for the element-wise second derivative, or name a slice of the source ({part} in an earlier "
        "cell, and %%tape {name}_part --hessian on a cell that uses {name}_part).", **fields))


def check_sources(sources: Iterable[Any], what: str = "--hessian") -> None:
    """:func:`check_hessian` for the engine's resolved sources (objects with ``name``, ``value``
    holding a tensor or variable, and ``differentiable``): the Hessian spans every float source,
    flattened, at the widest of their dtypes. The slice the message suggests is of the largest."""
    floats = [source for source in sources if getattr(source, "differentiable", True)]
    if not floats:
        return None
    sizes = [int(source.value.shape.num_elements() or 0) for source in floats]
    widest = max(floats, key=lambda source: int(source.value.dtype.size))
    by_size = [source.name for _, source in sorted(zip(sizes, floats), key=lambda pair: -pair[0])]
    return check_hessian(sum(sizes), int(widest.value.dtype.size), what,
                         dtype=getattr(widest.value.dtype, "name", None), names=by_size)


def check_jacobian(target_elements: int, source_elements: int, itemsize: int, *,
                   dtype: str | None = None, target: str | None = None, source: str | None = None) -> str | None:
    """Why a Jacobian of ``target_elements`` by ``source_elements`` cannot be computed here (a
    sentence to show beside the None Jacobian), or None when it fits.

    The Jacobian is taken after the cell ran, so this does not raise: the caller leaves the
    Jacobian None with this reason and keeps everything else.
    """
    m, n = int(target_elements), int(source_elements)
    needed = jacobian_bytes(m, n, itemsize)
    if _plainly_fits(needed):
        return None
    free = available_bytes()
    if needed <= HEADROOM * free:
        return None
    if target and source:
        jacobian = _("the Jacobian of {target} with respect to {source}", target=target, source=source)
    elif target:
        jacobian = _("the Jacobian of {target}", target=target)
    elif source:
        jacobian = _("the Jacobian with respect to {source}", source=source)
    else:
        jacobian = _("the Jacobian")
    rows = max(0, int((HEADROOM * free - FIXED_BYTES) / (JACOBIAN_FACTOR * max(n, 1) * int(itemsize))))
    smaller = f"{target or 'y'}[:{_nice(rows)}]" if rows else f"{target or 'y'}[:10]"
    return _(
        "{jacobian} was not computed: it would be a {m} × {n} {dtype} matrix of {size} and needs about {peak} at "
        "the peak while it is computed; this machine has {free} free. Use --jacobian on a smaller target "
        "(t = {smaller} in the cell, then -t t), name a slice of the source, or take the gradient of a weighted "
        "sum (a vector-Jacobian product) instead", jacobian=jacobian, m=f"{m:,}", n=f"{n:,}",
        dtype=_dtype(itemsize, dtype), size=format_bytes(m * n * int(itemsize)), peak=format_bytes(needed),
        free=format_bytes(free), smaller=smaller)


def check_order(total_source_elements: int, itemsize: int, order: int) -> None:
    """Raise SpecError when ``-n ORDER``'s element-wise derivatives alone would not fit.
    They grow linearly in the sources, so this only refuses sources that barely fit themselves."""
    needed = order_bytes(total_source_elements, itemsize, order)
    if _plainly_fits(needed, fixed=0):
        return None
    free = available_bytes()
    if needed <= HEADROOM * free:
        return None
    raise SpecError(_(
        "-n {order} over {n} source elements needs about {size} for its derivatives alone; this machine has "
        "{free} free. Ask for a lower order or name a slice of the source.",
        order=order, n=f"{int(total_source_elements):,}", size=format_bytes(needed), free=format_bytes(free)))
