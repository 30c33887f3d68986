"""The engine: one real run of a cell or a function under nested tapes, and every derivative asked for.

Knows nothing of IPython or of the renderers. Where things are:

- ``core.py``     :class:`Engine`, which puts the parts below together into a ``TapeResult``
- ``body.py``     what runs: a cell (``CellBody``) or a function (``FunctionBody``)
- ``cell.py``     a cell's code, compiled once, and what its syntax tells
- ``sources.py``  the sources a line names, made differentiable (Keras variables included)
- ``derive.py``   derivatives from tapes: gradients, higher orders, Jacobians, Hessians
- ``effects.py``  whether a second run of the code would leave a trace
- ``trace.py``    the traced, XLA-compiled path and its content-keyed cache
- ``seeds.py``    identity seeds taken out of traced Jacobians
- ``methods.py``  forward mode, finite-difference checks, the Hessian-vector product's vector
- ``why.py``      every reason a derivative is None, in words
"""
from __future__ import annotations

from .core import Engine
from .derive import watch

__all__ = ["Engine", "watch"]
