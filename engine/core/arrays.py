"""Array type aliases of the core, and the read-only views it hands out.

The core's state lives in numpy arrays it mutates in place; what it gives callers is
marked non-writeable, so that a caller who writes into a result gets an error instead
of silently changing the engine's counts or alert state.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["F64", "I32", "I64", "Bool", "read_only", "read_only_copy"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]

A = TypeVar("A", bound=np.ndarray[Any, Any])


def read_only(a: A) -> A:
    """A non-writeable view of `a`: no copy, so it shows later changes of `a`."""
    view = a.view()
    view.flags.writeable = False
    return view


def read_only_copy(a: A) -> A:
    """A non-writeable copy of `a`, as it is now."""
    out = a.copy()
    out.flags.writeable = False
    return out
