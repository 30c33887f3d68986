"""``--graph``: the computation graph TensorFlow really ran for a cell, with values and adjoints.

During the one real run, :class:`OpRecorder` holds TensorFlow's op callback (the hook
:class:`.effects.OpLog` uses): every op TensorFlow executes eagerly is recorded with its input
and output tensors (kept alive while recording, so identities stay stable) and the Keras layers,
``tf.function`` calls and ``tf.custom_gradient`` calls on the Python stack when it ran (a cheap
frame walk). :func:`build` then turns the record into a :class:`~tapemagic._graph.TapeGraph`:

- nodes in execution order: the sources (a variable's reads all map to the source as the user
  named it), the constants the ops consumed (tensors no recorded op produced, variables that are
  no source), then one node per op;
- adjoints ∂target/∂node for every float node from the real run's tape, in one reverse pass;
- edges with TensorFlow's own gradient function of the consuming op evaluated at its adjoint
  (``ops._gradient_registry``, called as the tape calls it, on a stand-in for the op), so the
  contributions on the edges leaving a node add up to its adjoint;
- with ``--forward``, one ForwardAccumulator replay per source, recorded the same way, gives each
  node's tangent (the dual numbers of forward mode).

How it meets the rest of the engine (decisions, see also the tests in tests/test_graph_engine.py):

- ``--graph`` never traces: the graph is read from the ops of the real run and the adjoints from its
  tapes, so a cell that would be traced runs on eager tapes (a note says so).
- With several targets the graph is drawn for the first (a note names the others); with ``-n 2``,
  ``--hessian``, ``--jacobian``, ``--hvp`` or ``--check`` the graph shows the first-order adjoints and
  the rest of the result is unchanged. ``--graph --explore`` is refused (TapeSpec): the graph is of the
  one real run, while --explore re-runs the cell at each slider position.
- ``--graph --forward`` replays the cell once per source, under the same rules as ``--forward``: refused
  before anything runs when the code shows an effect, skipped with a note when only the run shows one.
- A variable passed straight to an op is read inside TensorFlow's C++ fast path, which calls no op
  callback: the tape that recorded the read says which variable it was (for variables the cell's tapes
  do not watch, a tape of the recorder's own, watching only those, is asked instead).
- At most :data:`MAX_OPS` ops become nodes; the rest are counted in ``left_out`` and a note says so.

Nothing here knows IPython or the renderers; every word a user reads is written as ``_()``.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from .._graph import CONSTANT, OP, SOURCE, GraphEdge, GraphGroup, GraphNode, TapeGraph
from .._i18n import _
from . import words
from .sources import Source, as_variable, is_float

__all__ = ["OpRecorder", "build", "MAX_OPS", "recording"]

MAX_OPS = 2000  # ops drawn at most; beyond it the graph says how many were left out
# Ops that only keep variables' books: never a node.
_BOOKKEEPING = frozenset({"VarIsInitializedOp", "DisableCopyOnRead", "DestroyResourceOp", "NoOp", "VarHandleOp",
                          "VariableShape"})
_READ = "ReadVariableOp"
# Ops that read only a tensor's shape: no gradient flows through them, and none is expected to.
_STRUCTURAL = frozenset({"Shape", "ShapeN", "Size", "Rank", "BroadcastArgs", "BroadcastGradientArgs"})
_FORWARDPROP = os.path.join("eager", "forwardprop.py")  # where TensorFlow computes forward-mode tangents
_FUNCTION_NAME = re.compile(r"^__(?:inference|forward|backward)_(.+?)_\d+$")


# -- recording ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Scope:
    """A Python call on the stack when an op ran: a Keras layer, a tf.function, a custom gradient."""

    key: int               # id of its frame (the frame is kept alive while recording, so ids are unique)
    kind: str              # "layer", "function", "custom_gradient"
    name: str
    owner: Any = None      # the layer (its variables name the ones it reads)


@dataclasses.dataclass
class _Op:
    type: str
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]
    attrs: tuple[Any, ...]
    scopes: tuple[_Scope, ...]          # outermost first
    paused: bool = False                # the tapes were stopped (tape.stop_recording) when it ran
    wrapper: bool = False               # run by tf.custom_gradient itself after the function returned

    @property
    def function_call(self) -> bool:
        from tensorflow.python.framework import op_def_registry

        return op_def_registry.get(self.type) is None


_CODES: dict[Any, str] | None = None


def _scope_codes() -> dict[Any, str]:
    """The code objects whose frames mark a scope (looked up once)."""
    global _CODES
    if _CODES is None:
        codes: dict[Any, str] = {}
        try:
            from keras.src.layers.layer import Layer

            codes[inspect.unwrap(Layer.__call__).__code__] = "layer"
        except Exception:  # noqa: BLE001 - no Keras, or another layout: layers are not grouped
            pass
        try:
            from tensorflow.python.eager.polymorphic_function import polymorphic_function

            codes[inspect.unwrap(polymorphic_function.Function.__call__).__code__] = "function"
        except Exception:  # noqa: BLE001
            pass
        try:
            from tensorflow.python.ops import custom_gradient

            codes[custom_gradient._eager_mode_decorator.__code__] = "custom_gradient"
        except Exception:  # noqa: BLE001
            pass
        try:
            from tensorflow.python.ops import script_ops

            codes[script_ops.EagerFunc.__call__.__code__] = "py_function"  # a tf.py_function's Python body
        except Exception:  # noqa: BLE001
            pass
        _CODES = codes
    return _CODES


class OpRecorder:
    """Records every op TensorFlow runs eagerly while active (``with OpRecorder() as ops:``).

    The frame that enters it bounds the frame walk: scopes are looked for only in what that
    frame calls. At most ``cap`` ops that become nodes are kept; ``left_out`` counts the rest."""

    def __init__(self, cap: int = MAX_OPS, unwatched: Sequence[Any] = ()) -> None:
        self.cap = cap
        # A tape of its own for the variables the cell's tapes do not watch (trainable=False, or all of them
        # under --no-auto-watch): it tells which of them an op read inside TensorFlow (see _implicit_reads).
        self.unwatched = list(unwatched)
        self.own_tape: tf.GradientTape | None = None
        self.ops: list[_Op] = []
        self.left_out = 0
        self._counted = 0
        self._stop: Any = None
        self._frames: dict[int, Any] = {}     # scope frames, kept alive while recording
        self._scopes: dict[int, _Scope] = {}
        self._active = False

    def __enter__(self) -> "OpRecorder":
        from tensorflow.python.framework import op_callbacks

        self._stop = sys._getframe(1)
        if self.unwatched:
            self.own_tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
            self.own_tape.__enter__()
            for variable in self.unwatched:
                self.own_tape.watch(variable)
        op_callbacks.add_op_callback(self._callback)
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        from tensorflow.python.framework import op_callbacks

        if self._active:
            op_callbacks.remove_op_callback(self._callback)
            self._active = False
            if self.own_tape is not None:
                self.own_tape.__exit__(None, None, None)
        self._stop = None
        self._frames.clear()

    def _callback(self, op_type: Any, inputs: Any, attrs: Any, outputs: Any, op_name: Any = None,
                  graph: Any = None) -> None:
        if graph is not None:
            return None  # an op added to a graph being traced: it runs later, as one function call
        name = op_type.decode() if isinstance(op_type, bytes) else str(op_type)
        counts = name not in _BOOKKEEPING and name != _READ
        from tensorflow.python import pywrap_tfe

        scopes, wrapper = self._walk()
        if scopes is None:
            return None  # forward mode computing a tangent (a ForwardAccumulator replay): not the cell's op
        if self._counted >= self.cap:
            self.left_out += counts
            return None
        if counts:
            self._counted += 1
        self.ops.append(_Op(name, tuple(inputs or ()), tuple(outputs or ()), tuple(attrs or ()), scopes,
                            paused=bool(pywrap_tfe.TFE_Py_TapeSetIsStopped()), wrapper=wrapper))
        return None

    def _walk(self) -> tuple[tuple[_Scope, ...] | None, bool]:
        codes = _scope_codes()
        found: list[_Scope] = []
        wrapper = False
        frame = sys._getframe(2)
        while frame is not None and frame is not self._stop:
            if frame.f_code.co_filename.endswith(_FORWARDPROP):
                return None, False
            kind = codes.get(frame.f_code)
            if kind is not None:
                scope = self._scopes.get(id(frame))
                if scope is None or self._frames.get(id(frame)) is not frame:
                    scope = self._scope(kind, frame)
                if not found and kind == "custom_gradient":
                    # The decorator's own ops (the Identity of each output, the reads of its inputs) run
                    # after the function returned its gradient function.
                    wrapper = "grad_fn" in frame.f_locals
                found.append(scope)
            frame = frame.f_back
        return tuple(reversed(found)), wrapper

    def _scope(self, kind: str, frame: Any) -> _Scope:
        local = frame.f_locals
        owner = None
        if kind == "layer":
            owner = local.get("self")
            name = str(getattr(owner, "name", type(owner).__name__))
        elif kind == "function":
            function = local.get("self")
            python = getattr(function, "_python_function", None)
            name = str(getattr(python, "__name__", None) or getattr(function, "_name", "function"))
        elif kind == "py_function":
            python = getattr(local.get("self"), "_func", None)
            name = str(getattr(python, "__name__", "py_function"))
        else:
            wrapped = local.get("f")
            name = str(getattr(wrapped, "__name__", "custom_gradient"))
        scope = _Scope(id(frame), kind, name, owner)
        self._frames[id(frame)] = frame
        self._scopes[id(frame)] = scope
        return scope


class _Nothing:
    ops: list[_Op] = []
    left_out = 0

    def __enter__(self) -> "_Nothing":
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def recording(on: bool, namespace: dict[str, Any] | None = None, auto_watch: bool = True) -> Any:
    """An :class:`OpRecorder` when ``on``, else a context that records nothing. ``namespace``: where
    the variables the cell may read are (their names and, for those the tapes do not watch, which
    tensor read which variable)."""
    if not on:
        return _Nothing()
    variables = {id(v): v for v in _variables_in(namespace, ()) if is_float(v.dtype)}
    return OpRecorder(MAX_OPS, [v for v in variables.values() if not (auto_watch and v.trainable)])


# -- building ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Built:
    """A node being built: where its value and adjoint come from."""

    kind: str
    op: str
    name: str = ""
    tensors: tuple[Any, ...] = ()   # its outputs (a leaf: the one tensor or the variable)
    variable: Any = None
    source: Source | None = None
    record: _Op | None = None
    group: int | None = None
    step: int = 0
    inputs: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # (node, output, index)
    adjoints: list[Any] = dataclasses.field(default_factory=list)                   # per output
    reason: str | None = None
    no_gradient: str | None = None
    failure: str | None = None   # why the tape could not give its adjoint
    inner: bool = False          # computed inside a custom gradient's function
    in_python: bool = False      # run by the Python code of a tf.py_function
    custom_outputs: bool = False  # an output of a custom gradient (the tape's custom op)


def _numpy(value: Any) -> Any:
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, tf.IndexedSlices):
        value = tf.convert_to_tensor(value)
    if isinstance(value, tf.Variable):
        value = value.read_value()
    try:
        if value.dtype in (tf.resource, tf.variant):
            return None
        return np.asarray(value.numpy())
    except Exception:  # noqa: BLE001 - a value that cannot be shown is shown as none
        return None


def _times(gradient: Any, adjoint: np.ndarray) -> np.ndarray:
    """A vector-Jacobian product at 1 times a scalar adjoint, in the gradient's dtype."""
    value = np.asarray(_numpy(gradient))
    return np.asarray(value * adjoint.astype(value.dtype), dtype=value.dtype)


def _floating(tensor: Any) -> bool:
    try:
        return bool(is_float(tf.as_dtype(tensor.dtype)))
    except Exception:  # noqa: BLE001
        return False


def _variables_in(namespace: dict[str, Any] | None, extra: Iterable[Any]) -> list[Any]:
    """Every tf.Variable the graph may meet: the extra ones first, then the namespace's own and
    those of the Keras objects in it."""
    found: list[Any] = list(extra)
    for name, value in (namespace or {}).items():
        if name.startswith("_"):
            continue
        if isinstance(value, tf.Variable):
            found.append(value)
        elif as_variable(value) is not None:
            found.append(as_variable(value))
        elif type(value).__module__.startswith("keras") and hasattr(value, "variables"):
            try:
                found.extend(v for v in (as_variable(w) for w in value.variables) if v is not None)
            except Exception:  # noqa: BLE001 - an unbuilt model
                pass
    return found


class _Builder:
    def __init__(self, recorder: OpRecorder, target_name: str, target: Any, tape: tf.GradientTape,
                 sources: Sequence[Source], namespace: dict[str, Any] | None, naming: Callable[..., str],
                 watched: Sequence[Any], reasons: dict[str, str], cell: Any,
                 gradients: dict[str, Any] | None = None) -> None:
        self.recorder = recorder
        self.target_name = target_name
        self.target = target
        self.tape = tape
        self.sources = list(sources)
        self.namespace = namespace
        self.naming = naming
        self.watched = list(watched)
        self.reasons = reasons
        self.gradients = gradients or {}
        self.cell = cell
        self.notes: list[str] = []
        self.nodes: list[_Built] = []
        self.groups: list[GraphGroup] = []
        self._group_of: dict[int, int] = {}
        self._by_tensor: dict[int, tuple[int, int]] = {}   # id(tensor) -> (node, output)
        self._by_variable: dict[int, int] = {}             # id(variable) -> node
        self._handles: dict[int, Any] = {}                 # id(handle) -> variable
        self._consumers: dict[int, list[int]] = {}         # id(tensor) -> the op nodes it flows into
        self._keep: list[Any] = []
        for variable in _variables_in(namespace, [s.value for s in self.sources if s.is_variable] + self.watched):
            self._add_variable(variable)

    def _add_variable(self, variable: Any) -> None:
        try:
            self._handles.setdefault(id(variable.handle), variable)
            self._keep.append(variable)
        except Exception:  # noqa: BLE001 - a variable without an eager handle
            pass

    # -- leaves ------------------------------------------------------------------------------------
    def _variable_node(self, variable: Any, read: Any = None) -> int:
        found = self._by_variable.get(id(variable))
        if found is not None:
            if self.nodes[found].tensors == () and read is not None:
                self.nodes[found].tensors = (read,)
            return found
        source = next((s for s in self.sources if s.value is variable), None)
        kind = SOURCE if source is not None and source.differentiable else CONSTANT
        name = source.name if source is not None else self.naming(variable, self.sources)
        node = _Built(kind, "Variable", name, (read,) if read is not None else (), variable=variable, source=source)
        self.nodes.append(node)
        self._by_variable[id(variable)] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def _leaf(self, tensor: Any) -> int:
        source = next((s for s in self.sources if not s.is_variable and s.value is tensor), None)
        if source is not None:
            node = _Built(SOURCE if source.differentiable else CONSTANT, "Tensor", source.name, (tensor,), source=source)
        else:
            node = _Built(CONSTANT, "Const", "", (tensor,))
        self.nodes.append(node)
        self._by_tensor[id(tensor)] = (len(self.nodes) - 1, 0)
        return len(self.nodes) - 1

    # -- the record ----------------------------------------------------------------------------------
    def build_nodes(self) -> None:
        records = self.recorder.ops
        produced = {id(t) for record in records for t in record.outputs}
        implicit = self._implicit_reads(records, produced)
        # Sources first, in the order named (also those the run never used: drawn apart, with the reason).
        for source in self.sources:
            if source.is_variable:
                self._variable_node(source.value)
            elif id(source.value) not in self._by_tensor:
                self._leaf(source.value)
        step = 0
        for record in records:
            if record.type in _BOOKKEEPING:
                continue
            if record.type == _READ and record.inputs:
                variable = self._handles.get(id(record.inputs[0]))
                if variable is not None and record.outputs:
                    node = self._variable_node(variable, record.outputs[0])
                    self._by_tensor[id(record.outputs[0])] = (node, 0)
                    continue
            inputs = []
            for index, tensor in enumerate(record.inputs):
                inputs.append((*self._input(tensor, implicit), index))
            step += 1
            node = _Built(OP, record.type, tensors=record.outputs, record=record, step=step, inputs=inputs,
                          group=self._group(record.scopes))
            if record.function_call:
                node.op = self._function_name(record)
            node.in_python = any(scope.kind == "py_function" for scope in record.scopes)
            if any(scope.kind == "custom_gradient" for scope in record.scopes):
                innermost = next(scope for scope in reversed(record.scopes) if scope.kind == "custom_gradient")
                node.custom_outputs = record.wrapper and record.scopes[-1] is innermost
                node.inner = not node.custom_outputs
            self.nodes.append(node)
            for tensor in record.inputs:
                self._consumers.setdefault(id(tensor), []).append(len(self.nodes) - 1)
            for output, tensor in enumerate(record.outputs):
                self._by_tensor[id(tensor)] = (len(self.nodes) - 1, output)

    def _input(self, tensor: Any, implicit: dict[int, Any]) -> tuple[int, int]:
        found = self._by_tensor.get(id(tensor))
        if found is not None:
            return found
        if getattr(tensor, "dtype", None) == tf.resource and id(tensor) in self._handles:
            return self._variable_node(self._handles[id(tensor)]), 0
        if id(tensor) in implicit:
            node = self._variable_node(implicit[id(tensor)], tensor)
            self._by_tensor[id(tensor)] = (node, 0)
            return node, 0
        return self._leaf(tensor), 0

    def _implicit_reads(self, records: list[_Op], produced: set[int]) -> dict[int, Any]:
        """A variable passed straight to an op is read inside TensorFlow's C++ fast path, which
        records the read on the tape but calls no op callback: such an input looks like a constant.
        The tape knows which variable it read: its gradient with respect to that variable is 1."""
        sources = {id(s.value) for s in self.sources if not s.is_variable}
        candidates = [v for v in {id(v): v for v in [s.value for s in self.sources if s.is_variable and s.differentiable]
                                  + self.watched}.values() if is_float(v.dtype)]
        unknown: dict[int, Any] = {}
        layers = {scope.key: scope.owner for record in records for scope in record.scopes
                  if scope.kind == "layer" and scope.owner is not None}
        for layer in {id(owner): owner for owner in layers.values()}.values():
            # The variables of the layers that ran (also those made in the cell) get their handles and names.
            for variable in self._owned(layer):
                self._add_variable(variable)
                if is_float(variable.dtype) and variable.trainable and all(variable is not c for c in candidates):
                    candidates.append(variable)
        for record in records:
            for tensor in record.inputs:
                if (id(tensor) not in produced and id(tensor) not in sources and _floating(tensor)
                        and id(tensor) not in unknown):
                    unknown[id(tensor)] = tensor
        found: dict[int, Any] = {}
        tapes = [(self.tape, candidates), (self.recorder.own_tape, list(self.recorder.unwatched))]
        for key, tensor in unknown.items():
            for tape, among in tapes:
                among = [v for v in among if tuple(v.shape) == tuple(tensor.shape) and v.dtype == tensor.dtype]
                if tape is None or not among:
                    continue
                try:
                    grads = tape.gradient(tensor, among)
                except Exception:  # noqa: BLE001 - not on the tape at all
                    continue
                hits = [v for v, g in zip(among, grads) if g is not None]
                if len(hits) == 1:
                    found[key] = hits[0]
                    self._add_variable(hits[0])
                    break
        return found

    @staticmethod
    def _owned(layer: Any) -> list[Any]:
        try:
            return [v for v in (as_variable(w) for w in layer.variables) if v is not None]
        except Exception:  # noqa: BLE001
            return []

    def _group(self, scopes: tuple[_Scope, ...]) -> int | None:
        parent = None
        for scope in scopes:
            group = self._group_of.get(scope.key)
            if group is None:
                group = len(self.groups)
                kind = "function" if scope.kind == "py_function" else scope.kind  # Python run by a tf.py_function
                self.groups.append(GraphGroup(group, kind, scope.name, parent))
                self._group_of[scope.key] = group
            parent = group
        return parent

    @staticmethod
    def _function_name(record: _Op) -> str:
        for scope in reversed(record.scopes):
            if scope.kind == "function":
                return scope.name
        match = _FUNCTION_NAME.match(record.type)
        return match.group(1) if match else record.type

    # -- names -------------------------------------------------------------------------------------
    def name_nodes(self) -> None:
        """The user's own names: the target, then the names the cell bound to this run's tensors."""
        stores = getattr(self.cell, "stores", {}) or {}
        names = sorted((name for name in (self.namespace or {}) if not name.startswith("_")),
                       key=lambda name: (name not in stores, stores.get(name, 0), name))
        for name in names:
            value = self.namespace[name]
            if tf.is_tensor(value) and not isinstance(value, tf.Variable):
                found = self._by_tensor.get(id(value))
                if found is not None and found[1] == 0 and not self.nodes[found[0]].name:
                    self.nodes[found[0]].name = name
        if tf.is_tensor(self.target) and not isinstance(self.target, tf.Variable):
            found = self._by_tensor.get(id(self.target))
            if found is not None and found[1] == 0 and self.nodes[found[0]].kind == OP:
                self.nodes[found[0]].name = self.target_name

    # -- adjoints ----------------------------------------------------------------------------------
    def adjoints(self) -> None:
        """∂target/∂node for every float node, from the real run's tape in one reverse pass."""
        from .sources import is_differentiable_target

        wanted: list[tuple[int, int, Any]] = []
        for position, node in enumerate(self.nodes):
            node.adjoints = [None] * max(1, len(node.tensors))
            if node.variable is not None:
                if is_float(node.variable.dtype):
                    wanted.append((position, 0, node.variable))
                continue
            for output, tensor in enumerate(node.tensors):
                if _floating(tensor):
                    wanted.append((position, output, tensor))
        if not wanted or not is_differentiable_target(self.target):
            return
        try:
            grads = self.tape.gradient(self.target, [w[2] for w in wanted])
        except (LookupError, tf.errors.OpError):
            # An op with no gradient on the way, or one TensorFlow differentiates only once (a tf.py_function,
            # whose one gradient the result's own derivatives took): one pass per node, to keep the others.
            from .why import failed_again, no_gradient

            grads = []
            for position, _output, tensor in wanted:
                try:
                    grads.append(self.tape.gradient(self.target, tensor))
                except LookupError as error:
                    grads.append(None)
                    self.nodes[position].failure = no_gradient(error)
                except tf.errors.OpError as error:
                    source = self.nodes[position].source
                    # A source's adjoint is its gradient, which the result already holds from the first pass.
                    grads.append(self.gradients.get(source.name) if source is not None else None)
                    self.nodes[position].failure = failed_again(error)
        for (position, output, _tensor), grad in zip(wanted, grads):
            self.nodes[position].adjoints[output] = grad

    # -- edges -------------------------------------------------------------------------------------
    def edges(self) -> list[GraphEdge]:
        edges: list[GraphEdge] = []
        custom: dict[int | None, list[int]] = {}
        for position, node in enumerate(self.nodes):
            if node.kind != OP:
                continue
            if node.inner or node.custom_outputs:  # one call of a custom gradient, whatever group inside it ran the op
                custom.setdefault(self._custom_group_id(node), []).append(position)
                continue
            contributions, locals_ = self._vjp(node)
            for (source, output, index), contribution, local in zip(node.inputs, contributions, locals_):
                adjoints = self.nodes[source].adjoints
                if output >= len(adjoints) or adjoints[output] is None:
                    contribution = None  # no adjoint to add up to (a constant): none shown on its edges either
                edges.append(GraphEdge(source, position, index, local, contribution, output=output))
        for members in custom.values():
            edges.extend(self._custom_edges(members))
        edges.sort(key=lambda edge: (edge.target, edge.index))
        return edges

    def _out_grads(self, node: _Built) -> list[Any] | None:
        if all(adjoint is None for adjoint in node.adjoints):
            return None
        grads = []
        for tensor, adjoint in zip(node.tensors, node.adjoints):
            if adjoint is None:
                adjoint = tf.zeros_like(tensor) if _floating(tensor) else None
            elif isinstance(adjoint, tf.IndexedSlices):
                adjoint = tf.convert_to_tensor(adjoint)
            grads.append(adjoint)
        return grads

    def _vjp(self, node: _Built) -> tuple[list[Any], list[Any]]:
        """The op's vector-Jacobian product at its adjoint, per input (the edges' contributions), and
        the local derivative ∂out/∂in where both are scalars."""
        record = node.record
        count = len(record.inputs)
        out_grads = self._out_grads(node)
        scalar_out = len(record.outputs) == 1 and _floating(record.outputs[0]) and record.outputs[0].shape == ()
        scalar_in = [(_floating(t) and t.shape == ()) or self._scalar_variable(t) for t in record.inputs]
        if record.function_call:
            contributions = self._tape_vjp(node, out_grads) if out_grads is not None else [None] * count
            locals_ = [None] * count
            first = record.outputs[0] if record.outputs else None
            if first is not None and _floating(first) and first.shape == () and any(scalar_in):
                seed = [tf.ones_like(first)] + [None] * (len(record.outputs) - 1)
                locals_ = [g if scalar_in[i] else None for i, g in enumerate(self._tape_vjp(node, seed))]
            return contributions, locals_
        from tensorflow.python.eager import backprop
        from tensorflow.python.framework import ops

        if not record.outputs or record.type in _STRUCTURAL:
            return [None] * count, [None] * count  # an assignment, or a shape: nothing flows back, nothing to mark
        try:
            function = ops._gradient_registry.lookup(record.type)
        except LookupError as error:
            node.no_gradient = _no_gradient_registered(record.type, error)
            return [None] * count, [None] * count
        if function is None:
            node.no_gradient = _not_differentiable(record.type)
            return [None] * count, [None] * count
        if not any(_floating(t) for t in record.outputs) and any(_floating(t) for t in record.inputs):
            dtypes = ", ".join(sorted({t.dtype.name for t in record.outputs})) or "none"
            node.no_gradient = _("{op} gives a result of dtype {dtype}: an integer or bool result has no gradient, "
                                 "so no gradient flows back through it to its inputs", op=record.type, dtype=dtypes)
            return [None] * count, [None] * count

        def call(grads: list[Any]) -> list[Any]:
            mock = backprop._MockOp(record.attrs, record.inputs, record.outputs, record.type, None)
            found = function(mock, *grads)
            found = list(found) if isinstance(found, (list, tuple)) else [found]
            return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in found[:count]] + \
                [None] * max(0, count - len(found))

        try:
            floats = [i for i, t in enumerate(record.inputs) if _floating(t)]
            locals_ = [None] * count
            if scalar_out:
                # One call at 1: the local derivatives, and (a vector-Jacobian product being linear in the
                # output's adjoint) every contribution as that times the adjoint.
                ones = call([tf.ones_like(record.outputs[0])])
                locals_ = [g if scalar_in[i] else None for i, g in enumerate(ones)]
                adjoint = _numpy(out_grads[0]) if out_grads is not None else None
                contributions = [None if g is None or adjoint is None else _times(g, adjoint) for g in ones]
                probe = ones
            else:
                contributions = call(out_grads) if out_grads is not None else [None] * count
                probe = contributions if out_grads is not None else (
                    call([tf.ones_like(t) if _floating(t) else None for t in record.outputs]) if floats else [])
            if floats and all(probe[i] is None for i in floats):
                node.no_gradient = _none_gradient(record.type)
            return contributions, locals_
        except Exception:  # noqa: BLE001 - a gradient function that needs more than the stand-in op gives
            contributions = self._tape_vjp(node, out_grads) if out_grads is not None else [None] * count
            return contributions, [None] * count

    def _scalar_variable(self, tensor: Any) -> bool:
        """A handle passed to a call, of a float scalar variable."""
        variable = self._handles.get(id(tensor)) if getattr(tensor, "dtype", None) == tf.resource else None
        return variable is not None and is_float(variable.dtype) and variable.shape == ()

    def _differentiable_input(self, record: _Op, index: int) -> Any:
        tensor = record.inputs[index]
        if getattr(tensor, "dtype", None) == tf.resource:
            return self._handles.get(id(tensor))
        return tensor if _floating(tensor) else None

    def _tape_vjp(self, node: _Built, out_grads: list[Any] | None) -> list[Any]:
        """A function call (its gradient is the function's own, kept by the tape): the vector-Jacobian
        product from the call's outputs to each input, from the tape. The tape gives the total derivative
        with respect to an input tensor, which also counts the paths on which that input flows into another
        input of the call; those are taken off, later inputs first: the part of input i's total that comes
        through input j is the tape's gradient of input j with respect to input i at j's own part."""
        record = node.record
        count = len(record.inputs)
        result: list[Any] = [None] * count
        if out_grads is None:
            return result
        pairs = [(t, g) for t, g in zip(record.outputs, out_grads) if g is not None and _floating(t)]
        if not pairs:
            return result
        positions = [entry[0] for entry in node.inputs]
        wrts = {i: self._differentiable_input(record, i) for i in range(count)}
        slots = [i for i in range(count) if wrts[i] is not None]
        repeated = {i for i in slots if sum(record.inputs[j] is record.inputs[i] for j in slots) > 1}
        feeds = {i: [j for j in slots if j != i and record.inputs[j].dtype != tf.resource
                     and self._flows_into(record.inputs[i], positions[i], positions[j], node)] for i in slots}
        failed = set(repeated)
        pending = [i for i in slots if i not in repeated]
        if repeated:
            self.notes.append(_("{op}: the same tensor is passed to the call more than once, and the tape's gradient "
                                "cannot be split between those edges; they show no contribution", op=node.op))
        while pending:
            ready = [i for i in pending if not any(j in pending for j in feeds[i])]
            if not ready:
                break
            for i in ready:
                pending.remove(i)
                if any(j in failed for j in feeds[i]):
                    failed.add(i)
                    continue
                try:
                    total = self.tape.gradient([p[0] for p in pairs], wrts[i], output_gradients=[p[1] for p in pairs])
                    total = tf.convert_to_tensor(total) if isinstance(total, tf.IndexedSlices) else total
                    for j in feeds[i]:
                        if result[j] is None or total is None:
                            continue
                        through = self.tape.gradient(record.inputs[j], wrts[i], output_gradients=result[j])
                        if through is not None:
                            total = total - tf.convert_to_tensor(through)
                    result[i] = total
                except Exception as error:  # noqa: BLE001 - the tape could not take it: no contribution shown
                    failed.add(i)
                    first = (str(error).strip().splitlines() or [""])[0][:160]
                    self.notes.append(_("{op}: TensorFlow could not differentiate it again for the graph ({error}), so "
                                        "its edges show no contribution (a tf.py_function, for one, is differentiated "
                                        "only once)", op=node.op, error=f"{type(error).__name__}: {first}"))
        return result

    def _flows_into(self, tensor: Any, source: int, other: int, node: _Built) -> bool:
        """Whether ``tensor`` (an input of ``node``, from node ``source``) also flows into node ``other``.
        A variable's read is its own tensor: only what that read feeds counts."""
        if self.nodes[source].variable is not None and getattr(tensor, "dtype", None) != tf.resource:
            users = [p for p in self._consumers.get(id(tensor), []) if self.nodes[p] is not node]
            return any(user == other or self._reaches(user, other) for user in users)
        return source != other and self._reaches(source, other)

    def _custom_edges(self, members: list[int]) -> list[GraphEdge]:
        """A tf.custom_gradient call: the tape differentiates it as one op, with the custom gradient,
        from its outputs to its inputs. The edge from an outside node into the call carries that
        node's whole contribution (on the first such edge); the edges inside carry none."""
        inside = set(members)
        outputs = [p for p in members if self.nodes[p].custom_outputs]
        pairs = [(self.nodes[p].tensors[0], self.nodes[p].adjoints[0]) for p in outputs
                 if self.nodes[p].tensors and self.nodes[p].adjoints[0] is not None]
        edges = []
        done: set[tuple[int, int]] = set()
        for position in members:
            node = self.nodes[position]
            for source, output, index in node.inputs:
                contribution = None
                if source not in inside and (source, output) not in done and pairs:
                    done.add((source, output))
                    if self.nodes[source].adjoints[output] is not None:
                        contribution = self._custom_vjp(source, output, pairs, inside)
                edges.append(GraphEdge(source, position, index, None, contribution, output=output))
        return edges

    def _custom_vjp(self, source: int, output: int, pairs: list[tuple[Any, Any]], inside: set[int]) -> Any:
        node = self.nodes[source]
        wrt = node.variable if node.variable is not None else (node.tensors[output] if node.tensors else None)
        if wrt is None:
            return None
        outside = {s for p in inside for s, _o, _i in self.nodes[p].inputs if s not in inside}
        if any(other != source and self._reaches(source, other) for other in outside):
            self.notes.append(_("a custom gradient's input also reaches it through another input, so the tape cannot "
                                "split the gradient between its edges; those edges show no contribution"))
            return None
        try:
            grad = self.tape.gradient([p[0] for p in pairs], wrt, output_gradients=[p[1] for p in pairs])
        except Exception:  # noqa: BLE001
            return None
        return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad

    _ancestors: list[int] | None = None

    def _reaches(self, node: int, other: int) -> bool:
        """Whether data flows from ``node`` into ``other`` (``node`` is an ancestor of ``other``).
        Every node's inputs were made before it, so one pass in order finds all ancestors (as bits)."""
        if self._ancestors is None or len(self._ancestors) != len(self.nodes):
            bits: list[int] = []
            for built in self.nodes:
                mask = 0
                for source, _output, _index in built.inputs:
                    mask |= (1 << source) | bits[source]
                bits.append(mask)
            self._ancestors = bits
        return bool(self._ancestors[other] >> node & 1)

    # -- reasons -----------------------------------------------------------------------------------
    def reasons_(self) -> None:
        from .sources import is_differentiable_target

        target_ok = is_differentiable_target(self.target)
        downstream = self._downstream_of_target()
        found = self._by_tensor.get(id(self.target)) if tf.is_tensor(self.target) else None
        target = found[0] if found is not None else None
        for position, node in enumerate(self.nodes):
            if node.adjoints and node.adjoints[0] is not None:
                continue
            value = node.variable if node.variable is not None else (node.tensors[0] if node.tensors else None)
            if value is None:
                node.reason = _("the op has no output, so there is nothing to differentiate")
            elif not target_ok:
                node.reason = _("the target {target} is not a floating-point tensor, so nothing has a gradient "
                                "with respect to it", target=self.target_name)
            elif not is_float(tf.as_dtype(value.dtype)):
                node.reason = _("dtype {dtype}: only floating-point tensors have gradients", dtype=value.dtype.name)
            elif node.in_python:
                node.reason = _("run by the Python code of a tf.py_function: the tape records the py_function as one "
                                "operation and has no record of the operations inside it")
            elif node.failure:
                node.reason = node.failure
            elif node.source is not None and node.source.name in self.reasons:
                node.reason = self.reasons[node.source.name]
            elif node.inner:
                group = self._custom_group(node)
                node.reason = _("computed inside the tf.custom_gradient function {name}: the tape differentiates that "
                                "call with its custom gradient, not through these ops", name=group)
            elif node.record is not None and node.record.paused:
                node.reason = _("recorded while the tape was paused (tape.stop_recording): the tape has no record of "
                                "this op")
            elif node.kind == CONSTANT and node.variable is None:
                node.reason = _("a constant: the tape did not watch it, so it has no gradient (name it as a source, "
                                "or call tapemagic.watch on it, to see one)")
            elif node.kind == CONSTANT and all(node.variable is not v for v in self.watched) and node.name:
                node.reason = _("{name} was not watched (a variable with trainable=False, or --no-auto-watch), so the "
                                "tape has no gradient for it", name=node.name)
            elif node.kind == CONSTANT and all(node.variable is not v for v in self.watched):
                node.reason = _("this variable was not watched (trainable=False, or --no-auto-watch), so the tape has "
                                "no gradient for it")
            elif position in downstream:
                blockers = sorted({self.nodes[p].op for p in downstream[position]})
                node.reason = _("its paths to the target {target} pass through operations without a gradient ({ops}), "
                                "so no gradient flows back to it", target=self.target_name, ops=", ".join(blockers))
            elif target is not None and (position == target or self._reaches(position, target)):
                node.reason = _("computed only from values the tape does not watch (constants), so the tape did not "
                                "record it and has no gradient for it")
            else:
                node.reason = _("does not reach the target {target}: no recorded path leads from it to the target",
                                target=self.target_name)

    def _custom_group_id(self, node: _Built) -> int | None:
        """The innermost custom gradient group a node was computed in (a layer or tf.function inside it may
        be the node's own group)."""
        group = node.group
        while group is not None and self.groups[group].kind != "custom_gradient":
            group = self.groups[group].parent
        return group

    def _custom_group(self, node: _Built) -> str:
        """The name of the innermost custom gradient a node was computed in."""
        group = self._custom_group_id(node)
        return self.groups[group].name if group is not None else "custom_gradient"

    def _downstream_of_target(self) -> dict[int, set[int]]:
        """Nodes that do reach the target, but only through nodes marked without a gradient: the blockers."""
        target = self._by_tensor.get(id(self.target)) if tf.is_tensor(self.target) else None
        if target is None:
            return {}
        blocked: dict[int, set[int]] = {}
        for position, node in enumerate(self.nodes):
            if node.no_gradient and (position == target[0] or self._reaches(position, target[0])):
                for source, _output, _index in node.inputs:
                    mask = (1 << source) | self._ancestors[source]
                    ancestor = 0
                    while mask:
                        if mask & 1:
                            blocked.setdefault(ancestor, set()).add(position)
                        mask >>= 1
                        ancestor += 1
        return blocked

    # -- the record for the renderers ------------------------------------------------------------
    def graph(self, edges: list[GraphEdge], tangents: dict[str, list[Any]], forward_sources: tuple[str, ...],
              notes: list[str]) -> TapeGraph:
        # Leaves first (sources as named, then constants in the order first used), then ops as they ran.
        leaves = [p for p, n in enumerate(self.nodes) if n.kind == SOURCE] + \
                 [p for p, n in enumerate(self.nodes) if n.kind == CONSTANT]
        order = leaves + [p for p, n in enumerate(self.nodes) if n.kind == OP]
        new_id = {old: new for new, old in enumerate(order)}
        nodes = []
        for old in order:
            node = self.nodes[old]
            value_of = node.tensors[0] if node.tensors else (node.variable if node.variable is not None else None)
            value = _numpy(value_of)
            shape = tuple(int(d) for d in value_of.shape) if value_of is not None and value_of.shape.rank is not None else ()
            dtype = tf.as_dtype(value_of.dtype).name if value_of is not None else ""
            adjoint = _numpy(node.adjoints[0]) if node.adjoints else None
            node_tangents = {name: values[old] for name, values in tangents.items() if values[old] is not None}
            nodes.append(GraphNode(
                id=new_id[old], kind=node.kind, op=node.op, name=node.name, value=value, shape=shape, dtype=dtype,
                adjoint=adjoint, adjoint_reason=node.reason if adjoint is None else None, tangents=node_tangents,
                group=node.group, no_gradient=node.no_gradient, step=node.step, outputs=max(1, len(node.tensors)),
            ))
        final_edges = tuple(dataclasses.replace(edge, source=new_id[edge.source], target=new_id[edge.target],
                                                local=_numpy(edge.local), contribution=_numpy(edge.contribution))
                            for edge in edges)
        return TapeGraph(target=self.target_name, nodes=tuple(nodes), edges=final_edges, groups=tuple(self.groups),
                         forward_sources=forward_sources, notes=tuple(dict.fromkeys(notes + self.notes)),
                         left_out=self.recorder.left_out)


# -- forward mode ------------------------------------------------------------------------------------
def _tangents(builder: _Builder, body: Any, everything: list[Source], notes: list[str],
              result_notes: list[str]) -> tuple[dict[str, list[Any]], tuple[str, ...], int, bool]:
    """One ForwardAccumulator replay per float source, recorded like the real run; each node's tangent
    is read where the replay ran the same ops in the same order. Returns the tangents, the sources,
    how many replays ran (one caught changing state included), and whether one was caught."""
    from .body import ReplayLeftTrace

    sources = [s for s in everything if s.differentiable]
    ops_real = [r.type for r in builder.recorder.ops]
    op_positions = [p for p, n in enumerate(builder.nodes) if n.kind == OP]
    real_records = [builder.nodes[p].record for p in op_positions]
    found: dict[str, list[Any]] = {}
    passes = 0
    for source in sources:
        value = source.value.read_value() if source.is_variable else source.value
        direction = tf.ones_like(value)
        replay = OpRecorder(cap=builder.recorder.cap)
        try:
            with tf.autodiff.ForwardAccumulator(source.value, direction) as accumulator:
                try:
                    with replay:
                        body.replay(everything)
                finally:
                    passes += 1  # a replay caught changing state ran too
                if [r.type for r in replay.ops] != ops_real or replay.left_out != builder.recorder.left_out:
                    notes.append(_("--forward: the replay for {source} ran other operations than the real run (the "
                                   "code took another path), so the graph shows no tangents", source=source.name))
                    return {}, (), passes, False
                index = {id(r): i for i, r in enumerate(builder.recorder.ops)}
                tangents: list[Any] = [None] * len(builder.nodes)
                for position, record in zip(op_positions, real_records):
                    again = replay.ops[index[id(record)]]
                    node = builder.nodes[position]
                    if not again.outputs or not _floating(again.outputs[0]):
                        continue
                    jvp = accumulator.jvp(again.outputs[0])
                    if jvp is None and not (node.inner or record.paused):
                        jvp = tf.zeros_like(again.outputs[0])  # untouched by the direction: tangent 0
                    tangents[position] = _numpy(jvp)
        except ReplayLeftTrace as error:
            notes.append(_("--forward stopped: a replay ran what the real run had not ({effects}); no further run was "
                           "made, and the graph shows no tangents", effects=str(error)))
            result_notes.append(notes[-1])
            return {}, (), passes, True
        except Exception as error:  # noqa: BLE001 - forward mode failing must not lose the graph
            first = (str(error).strip().splitlines() or [""])[0][:200]
            notes.append(_("--forward: TensorFlow's forward mode failed going through the cell ({error}); the graph "
                           "shows no tangents", error=f"{type(error).__name__}: {first}"))
            return {}, (), passes, False
        for position, node in enumerate(builder.nodes):
            if node.kind == OP:
                continue
            leaf = node.variable if node.variable is not None else (node.tensors[0] if node.tensors else None)
            if leaf is None or not is_float(tf.as_dtype(leaf.dtype)):
                continue
            if node.source is source:
                tangents[position] = _numpy(direction)
            else:
                tangents[position] = np.zeros(tuple(leaf.shape), dtype=tf.as_dtype(leaf.dtype).as_numpy_dtype)
        found[source.name] = tangents
    scalar = all(not s.value.shape.rank for s in sources)
    notes.append(_("--graph --forward: one ForwardAccumulator pass per source, each a replay of the cell; the direction "
                   "is 1 for a scalar source and all ones for a tensor source, so a node's tangent for {source} is the "
                   "derivative of its value along that direction", source=", ".join(s.name for s in sources))
                 if not scalar else
                 _("--graph --forward: one ForwardAccumulator pass per source, each a replay of the cell with that "
                   "source's tangent 1 and the others' 0 (the dual numbers a + bε of forward mode)"))
    return found, tuple(s.name for s in sources), passes, False


# -- entry point -------------------------------------------------------------------------------------
def build(recorder: OpRecorder, *, target_name: str, target: Any, tape: tf.GradientTape, sources: Sequence[Source],
          namespace: dict[str, Any] | None, naming: Callable[..., str], watched: Sequence[Any],
          reasons: dict[str, str], body: Any, forward: bool, effects: Sequence[str], targets: Sequence[str],
          gradients: dict[str, Any] | None = None) -> tuple[TapeGraph | None, list[str], dict[str, int]]:
    """The graph of the run just recorded, for ``target_name``. ``reasons`` and ``gradients``: the
    result's for that target (a source's None gradient is explained in the same words). Returns the
    graph, notes for the result (what ran again), and pass counts. Should drawing fail (an op
    TensorFlow cannot differentiate again in a way not foreseen here), the result keeps every
    derivative, has no graph, and a note says why: the graph never costs the user the result."""
    try:
        return _build(recorder, target_name=target_name, target=target, tape=tape, sources=sources,
                      namespace=namespace, naming=naming, watched=watched, reasons=reasons, body=body,
                      forward=forward, effects=effects, targets=targets, gradients=gradients)
    except Exception as error:  # noqa: BLE001 - see above (a replay that left a trace is handled inside)
        first = (str(error).strip().splitlines() or [""])[0][:200]
        return None, [_("--graph could not draw this cell ({error}); the derivatives above are complete",
                        error=f"{type(error).__name__}: {first}")], {}


def _build(recorder: OpRecorder, *, target_name: str, target: Any, tape: tf.GradientTape, sources: Sequence[Source],
           namespace: dict[str, Any] | None, naming: Callable[..., str], watched: Sequence[Any],
           reasons: dict[str, str], body: Any, forward: bool, effects: Sequence[str], targets: Sequence[str],
           gradients: dict[str, Any] | None) -> tuple[TapeGraph, list[str], dict[str, int]]:
    notes: list[str] = []
    result_notes: list[str] = []
    passes: dict[str, int] = {}
    if len(targets) > 1:
        notes.append(_("the graph is drawn for the first target, {target}; the other targets ({others}) are in the "
                       "table", target=target_name, others=", ".join(targets[1:])))
    builder = _Builder(recorder, target_name, target, tape, sources, namespace, naming, watched, reasons,
                       getattr(body, "cell", None), gradients)
    builder.build_nodes()
    builder.name_nodes()
    builder.adjoints()
    edges = builder.edges()
    builder.reasons_()
    if recorder.left_out:
        notes.append(_("the graph shows the first {shown} operations the cell ran; {left} more were left out (a graph "
                       "this size is read better by layer: name fewer sources, or draw a smaller cell)",
                       shown=recorder.cap, left=recorder.left_out))
    if tf.is_tensor(target) and id(target) not in builder._by_tensor and not isinstance(target, tf.Variable):
        notes.append(_("the target {target} is no output of an operation the graph shows (it was computed before the "
                       "cell, or after the operations left out)", target=target_name))
    tangents: dict[str, list[Any]] = {}
    forward_sources: tuple[str, ...] = ()
    if forward:
        if effects:
            notes.append(_("--graph --forward: no tangents, because each forward pass runs the cell again and a second "
                           "run would change state ({effects})", effects=words.joined(effects[:3])))
        else:
            tangents, forward_sources, count, caught = _tangents(builder, body, list(sources), notes, result_notes)
            passes["graph_forward"] = count
            if caught:
                pass  # the note says what the replay was caught doing, and that no further run was made
            elif count and getattr(body, "kind", "") == "cell":
                result_notes.append(_("--graph --forward ran the cell's code {count} more times (forward-mode passes, "
                                      "one per source), on a copy of the namespace as it was before "
                                      "the cell, printing nothing; the cell changes no state, so this left no trace",
                                      count=count))
            elif count:
                result_notes.append(_("--graph --forward ran the function {count} more times (forward-mode passes, "
                                      "one per source), with its printed output swallowed; it changes "
                                      "no state, so this left no trace", count=count))
    graph = builder.graph(edges, tangents, forward_sources, notes)
    return graph, result_notes, passes


def _no_gradient_registered(op: str, error: LookupError) -> str:
    from .why import no_gradient

    return no_gradient(error) if op in str(error) else _(
        "TensorFlow has no gradient registered for {op}, so a backward pass stops there", op=op)


def _not_differentiable(op: str) -> str:
    if op == "StopGradient":
        return _("tf.stop_gradient blocks the gradient on purpose: no gradient flows back through it")
    return _("TensorFlow marks {op} as not differentiable (tf.no_gradient): no gradient flows back through it to its "
             "inputs", op=op)


def _none_gradient(op: str) -> str:
    return _("TensorFlow's gradient of {op} is None for every input (its output is piecewise constant, as rounding "
             "is): no gradient flows back through it", op=op)
