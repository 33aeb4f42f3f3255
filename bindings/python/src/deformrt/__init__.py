"""DeformRT: a CPU inference runtime for ONNX models with deformable convolutions.

    import deformrt
    with deformrt.InferenceSession("model.onnx", threads=2) as session:
        (probabilities,) = session.run(None, {"image": image})

Set DEFORMRT_LIBRARY to choose which libdeformrt.so is loaded.
"""

from . import _capi
from ._capi import ElementType, Status
from .session import (DeformRTError, GraphOptimizationLevel, InferenceSession, NodeArg, SessionOptions,
                      get_available_providers)

__all__ = [
    "DeformRTError",
    "ElementType",
    "GraphOptimizationLevel",
    "InferenceSession",
    "NodeArg",
    "SessionOptions",
    "Status",
    "get_available_providers",
    "get_version",
    "__version__",
]


def get_version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _capi.drt_version().decode("ascii")


__version__ = get_version()
