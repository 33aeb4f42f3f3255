"""DeformRT: a CPU inference runtime for ONNX models with deformable convolutions.

    import deformrt
    with deformrt.InferenceSession("model.onnx", threads=2) as session:
        (probabilities,) = session.run(None, {"image": image})

The API is onnxruntime's (InferenceSession, SessionOptions, RunOptions, get_modelmeta, ...), so
code written for onnxruntime runs with `import deformrt as ort`.

Set DEFORMRT_LIBRARY to choose which libdeformrt.so is loaded.
"""

from . import _capi
from ._capi import ElementType, Status
from .session import (DeformRTError, ExecutionMode, GraphOptimizationLevel, InferenceSession, ModelMetadata,
                      NodeArg, RunOptions, SessionOptions, get_all_providers, get_available_providers,
                      get_device)

__all__ = [
    "DeformRTError",
    "ElementType",
    "ExecutionMode",
    "GraphOptimizationLevel",
    "InferenceSession",
    "ModelMetadata",
    "NodeArg",
    "RunOptions",
    "SessionOptions",
    "Status",
    "get_all_providers",
    "get_available_providers",
    "get_device",
    "get_version",
    "__version__",
]


def get_version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _capi.drt_version().decode("ascii")


# The version has one source, the library's drt_version() (DRT_VERSION_* in include/deformrt.h).
__version__: str = get_version()
