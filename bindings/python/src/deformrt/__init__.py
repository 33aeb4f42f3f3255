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
    "get_cpu_tier",
    "get_version",
    "__version__",
]


def get_version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _capi.drt_version().decode("ascii")


def get_cpu_tier() -> str:
    """The instruction-set tier the library runs on: "baseline", "avx2" or "avx512" (chosen at
    load from the CPU, or by DEFORMRT_CPU), or "generic" for a library built without the Makefile.
    Raises DeformRTError when DEFORMRT_CPU names a tier this CPU lacks or no tier at all."""
    import ctypes
    from .session import _check
    name = ctypes.c_char_p()
    _check(_capi.drt_cpu_tier(ctypes.byref(name)))
    return name.value.decode("ascii")


# The version has one source, the library's drt_version() (DRT_VERSION_* in include/deformrt.h).
__version__: str = get_version()
