"""The Python API: InferenceSession, NodeArg and DeformRTError, shaped like onnxruntime's."""

from __future__ import annotations

import ctypes
import enum
import operator
import os
import threading
import warnings
from ctypes import POINTER, byref, c_char_p, c_int32, c_int64, c_size_t, c_void_p
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _capi
from ._capi import ElementType, Status

_NUMPY_DTYPE_OF = {
    ElementType.FLOAT: np.dtype(np.float32),
    ElementType.UINT8: np.dtype(np.uint8),
    ElementType.INT8: np.dtype(np.int8),
    ElementType.UINT16: np.dtype(np.uint16),
    ElementType.INT16: np.dtype(np.int16),
    ElementType.INT32: np.dtype(np.int32),
    ElementType.INT64: np.dtype(np.int64),
    ElementType.BOOL: np.dtype(np.bool_),
    ElementType.FLOAT16: np.dtype(np.float16),
    ElementType.DOUBLE: np.dtype(np.float64),
    ElementType.UINT32: np.dtype(np.uint32),
    ElementType.UINT64: np.dtype(np.uint64),
}
_ELEMENT_TYPE_OF = {dtype: element_type for element_type, dtype in _NUMPY_DTYPE_OF.items()}

# onnxruntime's NodeArg.type spellings.
_TYPE_NAME_OF = {
    ElementType.UNDEFINED: "undefined",
    ElementType.FLOAT: "float",
    ElementType.UINT8: "uint8",
    ElementType.INT8: "int8",
    ElementType.UINT16: "uint16",
    ElementType.INT16: "int16",
    ElementType.INT32: "int32",
    ElementType.INT64: "int64",
    ElementType.STRING: "string",
    ElementType.BOOL: "bool",
    ElementType.FLOAT16: "float16",
    ElementType.DOUBLE: "double",
    ElementType.UINT32: "uint32",
    ElementType.UINT64: "uint64",
}

_USUAL_MAX_RANK = 8
# What get_providers() reports; both names are accepted in `providers` (onnxruntime code asks for
# CPUExecutionProvider, which is what DeformRT is).
_PROVIDERS = ["DeformRTExecutionProvider", "CPUExecutionProvider"]
_INT32_RANGE = range(-(2**31), 2**31)
_UINT64_RANGE = range(0, 2**64)


class DeformRTError(RuntimeError):
    """A failed DeformRT call: `status` is the drt_status code, `message` the library's text."""

    def __init__(self, status: int, message: str):
        try:
            status = Status(status)
        except ValueError:  # a code appended by a newer library
            status = int(status)
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else f"status {self.status}"
        return f"[DeformRT] {name}: {self.message}"


def _check(status: int) -> None:
    if status == Status.OK:
        return
    message = (_capi.drt_last_error_message() or b"").decode("utf-8", "replace")
    if not message:
        message = (_capi.drt_status_string(status) or b"").decode("utf-8", "replace")
    raise DeformRTError(status, message)


def _type_string(element_type: int) -> str:
    name = _TYPE_NAME_OF.get(element_type)
    return f"tensor({name})" if name else f"tensor(unknown type {element_type})"


def _element_type_of_dtype(dtype: np.dtype) -> Optional[int]:
    # Byte order does not change the element type; the array is converted to native order later.
    return _ELEMENT_TYPE_OF.get(np.dtype(dtype).newbyteorder("="))


def _dtype_string(dtype: np.dtype) -> str:
    element_type = _element_type_of_dtype(dtype)
    return _type_string(element_type) if element_type is not None else f"numpy {np.dtype(dtype)}"


def _encode_name(name: Any, what: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"{what} names must be str, got {type(name).__name__}")
    encoded = name.encode("utf-8")
    if b"\0" in encoded:
        raise DeformRTError(Status.INVALID_ARGUMENT, f"{what} name {name!r} contains a NUL character")
    return encoded


class NodeArg:
    """A graph input or output as declared by the model, like onnxruntime.NodeArg.

    shape lists the declared dims as onnxruntime does: an int for a fixed dim, the symbolic name
    (str, such as 'batch') for a named dynamic dim, None for an unnamed one; [] when the model
    declares no shape (or a scalar). type is an onnxruntime-style string such as 'tensor(float)'.
    """

    __slots__ = ("name", "type", "shape", "element_type")

    def __init__(self, name: str, element_type: int, shape: List[Union[int, str, None]]):
        self.name = name
        self.type = _type_string(element_type)
        self.shape = shape
        self.element_type = element_type

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


def _read_node_args(model, count_fn, name_fn, type_fn, shape_fn, dim_name_fn) -> List[NodeArg]:
    count = c_size_t()
    _check(count_fn(model, byref(count)))
    node_args = []
    for index in range(count.value):
        name = c_char_p()
        _check(name_fn(model, index, byref(name)))
        element_type = c_int32()
        _check(type_fn(model, index, byref(element_type)))
        rank = c_size_t()
        status = shape_fn(model, index, None, 0, byref(rank))
        if status != Status.BUFFER_TOO_SMALL:
            _check(status)
        dims = (c_int64 * rank.value)()
        _check(shape_fn(model, index, dims, rank.value, byref(rank)))
        try:
            element_type_value = ElementType(element_type.value)
        except ValueError:
            element_type_value = element_type.value
        shape: List[Union[int, str, None]] = []
        for axis, dim in enumerate(dims):
            if dim >= 0:
                shape.append(dim)
                continue
            dim_name = c_char_p()
            _check(dim_name_fn(model, index, axis, byref(dim_name)))
            shape.append((dim_name.value or b"").decode("utf-8", "replace") or None)
        node_args.append(NodeArg((name.value or b"").decode("utf-8", "replace"), element_type_value, shape))
    return node_args


class ModelMetadata:
    """What the model file says about itself, as onnxruntime.ModelMetadata (read-only values)."""

    __slots__ = ("producer_name", "producer_version", "domain", "description", "graph_name",
                 "graph_description", "version", "custom_metadata_map")

    def __init__(self, model) -> None:
        def text(function) -> str:
            value = c_char_p()
            _check(function(model, byref(value)))
            return (value.value or b"").decode("utf-8", "replace")

        self.producer_name: str = text(_capi.drt_model_producer_name)
        self.producer_version: str = text(_capi.drt_model_producer_version)
        self.domain: str = text(_capi.drt_model_domain)
        self.description: str = text(_capi.drt_model_description)
        self.graph_name: str = text(_capi.drt_model_graph_name)
        self.graph_description: str = text(_capi.drt_model_graph_description)
        version = c_int64()
        _check(_capi.drt_model_version(model, byref(version)))
        self.version: int = version.value
        count = c_size_t()
        _check(_capi.drt_model_metadata_count(model, byref(count)))
        custom: Dict[str, str] = {}
        for index in range(count.value):
            key = c_char_p()
            _check(_capi.drt_model_metadata_key(model, index, byref(key)))
            value = c_char_p()
            _check(_capi.drt_model_metadata_lookup(model, key.value, byref(value)))
            custom[(key.value or b"").decode("utf-8", "replace")] = (value.value or b"").decode("utf-8", "replace")
        self.custom_metadata_map: Dict[str, str] = custom

    def __repr__(self) -> str:
        return (f"ModelMetadata(producer_name={self.producer_name!r}, graph_name={self.graph_name!r}, "
                f"domain={self.domain!r}, version={self.version}, custom_metadata_map={self.custom_metadata_map!r})")


class RunOptions:
    """Options for InferenceSession.run, as onnxruntime.RunOptions.

    terminate: set to True (from any thread) to stop every run using these options; a run checks
        before each node and raises DeformRTError with status CANCELLED. It stays set until set
        back to False, so a run started while it is set stops at once.
    log_severity_level, log_verbosity_level, run_tag, logid, only_execute_path_to_fetches,
        add_run_config_entry: accepted for compatibility (DeformRT reports through exceptions
        only, and always runs just the nodes the fetched outputs need).
    """

    def __init__(self) -> None:
        self._free = _capi.drt_run_options_free
        handle = POINTER(_capi.drt_run_options)()
        _check(_capi.drt_run_options_create(byref(handle)))
        self._handle = handle
        self._terminate = False
        self.log_severity_level: int = 2
        self.log_verbosity_level: int = 0
        self.run_tag: str = ""
        self.logid: str = ""
        self.only_execute_path_to_fetches: bool = False
        self._config: Dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise DeformRTError(Status.INVALID_ARGUMENT, f"RunOptions has no config entry {key!r}")
        return self._config[key]

    @property
    def terminate(self) -> bool:
        return self._terminate

    @terminate.setter
    def terminate(self, value: bool) -> None:
        value = bool(value)
        _check(_capi.drt_run_options_set_terminate(self._handle, 1 if value else 0))
        self._terminate = value

    def __del__(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle:
            self._free(handle)


def _load_model(path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview]):
    model = POINTER(_capi.drt_model)()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)  # no copy for bytes; the library copies what it keeps
        _check(_capi.drt_model_load_memory(data, len(data), byref(model)))
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        path = os.fsencode(path_or_bytes)
        if b"\0" in path:
            raise DeformRTError(Status.INVALID_ARGUMENT,
                                f"model path {path_or_bytes!r} contains a NUL character")
        _check(_capi.drt_model_load_file(path, byref(model)))
    else:
        raise TypeError("InferenceSession needs a path (str or os.PathLike) or the model's bytes, "
                        f"got {type(path_or_bytes).__name__}")
    return model


class _OutputBuffer:
    """Owns one output drt_tensor; the numpy array made from it keeps it alive through its base,
    so outputs reach Python without a copy and the tensor is freed with the last view of it."""

    def __init__(self, tensor, dims, dtype, address):
        self._tensor = tensor
        self.__array_interface__ = {"version": 3, "shape": tuple(dims), "typestr": dtype.str,
                                    "data": (address, False)}

    def __del__(self):
        tensor, self._tensor = self._tensor, None
        if tensor is not None and _capi is not None:
            _capi.drt_tensor_free(tensor)


def _wrap_output(tensor) -> np.ndarray:
    """A numpy array over an output tensor's memory; takes ownership of `tensor` on success."""
    element_type = c_int32()
    _check(_capi.drt_tensor_element_type(tensor, byref(element_type)))
    dtype = _NUMPY_DTYPE_OF.get(element_type.value)
    if dtype is None:
        raise DeformRTError(Status.UNSUPPORTED,
                            f"the binding cannot return an output of type {_type_string(element_type.value)}")
    # Most outputs fit a small buffer, which saves asking for the rank first.
    dims = (c_int64 * _USUAL_MAX_RANK)()
    rank = c_size_t()
    status = _capi.drt_tensor_shape(tensor, dims, _USUAL_MAX_RANK, byref(rank))
    if status == Status.BUFFER_TOO_SMALL:
        dims = (c_int64 * rank.value)()
        status = _capi.drt_tensor_shape(tensor, dims, rank.value, byref(rank))
    _check(status)
    dims = dims[: rank.value]
    byte_size = c_size_t()
    _check(_capi.drt_tensor_byte_size(tensor, byref(byte_size)))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if expected != byte_size.value:
        raise DeformRTError(Status.INTERNAL,
                            f"output tensor of shape {dims} and type {_type_string(element_type.value)} "
                            f"reports {byte_size.value} bytes, expected {expected}")
    if expected == 0:
        _capi.drt_tensor_free(tensor)
        return np.empty(dims, dtype=dtype)
    data = c_void_p()
    _check(_capi.drt_tensor_data(tensor, byref(data)))
    return np.asarray(_OutputBuffer(tensor, dims, dtype, data.value))


class GraphOptimizationLevel(enum.IntEnum):
    """Which graph passes a session runs, numbered and named as onnxruntime's."""
    ORT_DISABLE_ALL = 0       # the graph runs as imported
    ORT_ENABLE_BASIC = 1      # constant folding; Identity, Dropout and dead nodes removed
    ORT_ENABLE_EXTENDED = 2   # + BatchNormalization folded and epilogues fused into convolutions
    ORT_ENABLE_ALL = 99       # every pass, channels-last layout included (the default)


class ExecutionMode(enum.IntEnum):
    """Accepted for compatibility: a DeformRT session always runs its nodes in order."""
    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class SessionOptions:
    """Settings for InferenceSession, named as onnxruntime's SessionOptions.

    intra_op_num_threads: threads one run may use (0: one per core).
    inter_op_num_threads: accepted for compatibility; a session runs its nodes one after another.
    graph_optimization_level: a GraphOptimizationLevel (default ORT_ENABLE_ALL).
    enable_profiling: record per-node timings; InferenceSession.end_profiling() writes them as
        "<profile_file_prefix>_<date>_<time>.json" (Chrome trace, onnxruntime's layout).
    memory_limit: cap in bytes on the tensor memory one session plans (None: the library default).
    log_severity_level: 0..4 as onnxruntime's (checked; DeformRT reports through exceptions only,
        so it changes nothing). log_verbosity_level, execution_mode, enable_mem_pattern,
        enable_cpu_mem_arena: accepted for compatibility.
    extra_outputs: DeformRT's own: names of intermediate values the session also offers as
        outputs (run() can name them; the graph passes keep them).
    """

    def __init__(self) -> None:
        self.intra_op_num_threads: int = 0
        self.inter_op_num_threads: int = 0
        self.graph_optimization_level: GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.enable_profiling: bool = False
        self.profile_file_prefix: str = "deformrt_profile"
        self.memory_limit: Optional[int] = None
        self.log_severity_level: int = 2
        self.log_verbosity_level: int = 0
        self.execution_mode: ExecutionMode = ExecutionMode.ORT_SEQUENTIAL
        self.enable_mem_pattern: bool = True
        self.enable_cpu_mem_arena: bool = True
        self.extra_outputs: List[str] = []
        self._config: Dict[str, str] = {}

    def add_session_config_entry(self, key: str, value: str) -> None:
        """Accepted for compatibility; DeformRT reads no configuration entries."""
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        if key not in self._config:
            raise DeformRTError(Status.INVALID_ARGUMENT, f"SessionOptions has no config entry {key!r}")
        return self._config[key]


def get_available_providers() -> List[str]:
    """The execution providers a session accepts, as onnxruntime.get_available_providers()."""
    return list(_PROVIDERS)


def get_all_providers() -> List[str]:
    """As onnxruntime.get_all_providers(): the providers this build knows (all available)."""
    return list(_PROVIDERS)


def get_device() -> str:
    """As onnxruntime.get_device(): DeformRT runs on the CPU."""
    return "CPU"


# onnxruntime's other execution providers (onnxruntime.get_all_providers() of 1.32): code written
# for them (providers=["CUDAExecutionProvider", "CPUExecutionProvider"]) runs on DeformRT with the
# warning onnxruntime gives for a provider it lacks; any other name is a mistake and an error.
_OTHER_ORT_PROVIDERS = frozenset([
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider", "OpenVINOExecutionProvider",
    "DnnlExecutionProvider", "VitisAIExecutionProvider", "QNNExecutionProvider", "NnapiExecutionProvider",
    "VSINPUExecutionProvider", "JsExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
    "RknpuExecutionProvider", "WebNNExecutionProvider", "WebGpuExecutionProvider", "XnnpackExecutionProvider",
    "CANNExecutionProvider", "AzureExecutionProvider", "ROCMExecutionProvider", "ArmNNExecutionProvider",
    "ACLExecutionProvider", "TvmExecutionProvider", "SNPEExecutionProvider"])


def _check_providers(providers, provider_options) -> None:
    if providers is None:
        if provider_options is not None:
            raise ValueError("provider_options is given without providers")
        return
    if isinstance(providers, (str, bytes)) or not isinstance(providers, Sequence):
        raise TypeError(f"providers must be a list of names or (name, options) pairs, got {providers!r}")
    if provider_options is not None:
        if not isinstance(provider_options, Sequence) or len(provider_options) != len(providers):
            raise ValueError("'providers' and 'provider_options' should be the same length if both are given.")
        for options in provider_options:
            if not isinstance(options, Mapping):
                raise TypeError(f"each provider_options entry must be a dict, got {options!r}")
    for provider in providers:
        if isinstance(provider, (tuple, list)):
            if len(provider) != 2 or not isinstance(provider[1], Mapping):
                raise TypeError(f"a provider given as a pair must be (name, options dict), got {provider!r}")
            name = provider[0]
        else:
            name = provider
        if not isinstance(name, str):
            raise TypeError(f"providers must be names or (name, options) pairs, got {provider!r}")
        if name in _PROVIDERS:
            continue
        if name in _OTHER_ORT_PROVIDERS:
            warnings.warn(f"Specified provider '{name}' is not in available provider names. "
                          f"Available providers: '{', '.join(_PROVIDERS)}'", stacklevel=3)
            continue
        raise ValueError(f"unknown execution provider {name!r}: DeformRT runs as {' or '.join(map(repr, _PROVIDERS))} "
                         "(onnxruntime's other providers are accepted with a warning)")


class InferenceSession:
    """Loads an ONNX model and runs it.

    path_or_bytes: a file path (str or os.PathLike) or the serialized model (bytes-like).
    sess_options: a SessionOptions (None: the defaults).
    providers, provider_options: accepted as onnxruntime's; DeformRT is one CPU provider
        ("DeformRTExecutionProvider", also answering to "CPUExecutionProvider"). Another
        onnxruntime provider's name (CUDA, TensorRT, ...) is warned about, as onnxruntime does for
        a provider it lacks; a name onnxruntime does not know either raises ValueError, and so does
        provider_options of another length than providers.
    threads: threads one run may use (1..256; 0 or None: one per core); overrides
        sess_options.intra_op_num_threads.
    memory_limit: cap in bytes on the tensor memory the session plans (None: the library default);
        overrides sess_options.memory_limit.

    run() may be called from several threads; calls on one session run one at a time.
    """

    def __init__(self, path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview],
                 sess_options: Optional[SessionOptions] = None, providers: Optional[Sequence[Any]] = None,
                 provider_options: Optional[Sequence[Any]] = None, *,
                 threads: Optional[int] = None, memory_limit: Optional[int] = None):
        # Bound here so close() still works from __del__ during interpreter shutdown.
        self._free_session = _capi.drt_session_free
        self._free_model = _capi.drt_model_free
        self._lock = threading.Lock()
        self._session = None
        self._model = None
        if sess_options is not None and not isinstance(sess_options, SessionOptions):
            raise TypeError(f"sess_options must be a deformrt.SessionOptions, got {type(sess_options).__name__}")
        _check_providers(providers, provider_options)
        options_in = sess_options or SessionOptions()
        self._sess_options = options_in
        severity = options_in.log_severity_level
        if not isinstance(severity, int) or isinstance(severity, bool) or not 0 <= severity <= 4:
            raise DeformRTError(Status.INVALID_ARGUMENT,
                                f"log_severity_level must be 0 (verbose) .. 4 (fatal), got {severity!r}")
        extra_outputs = [_encode_name(name, "extra output") for name in options_in.extra_outputs]
        if threads is None and options_in.intra_op_num_threads:
            threads = options_in.intra_op_num_threads
        if memory_limit is None:
            memory_limit = options_in.memory_limit
        level = operator.index(options_in.graph_optimization_level)
        if level not in _INT32_RANGE:
            raise DeformRTError(Status.INVALID_ARGUMENT, f"graph_optimization_level {level} is out of range")
        profile_prefix = None
        if options_in.enable_profiling:
            profile_prefix = os.fsencode(options_in.profile_file_prefix)
            if b"\0" in profile_prefix:
                raise DeformRTError(Status.INVALID_ARGUMENT, "profile_file_prefix contains a NUL character")
        threads = None if threads is None else operator.index(threads)
        memory_limit = None if memory_limit is None else operator.index(memory_limit)
        if threads is not None and threads not in _INT32_RANGE:
            raise DeformRTError(Status.INVALID_ARGUMENT, f"threads must be 0..256, got {threads}")
        if memory_limit is not None and memory_limit not in _UINT64_RANGE:
            raise DeformRTError(Status.INVALID_ARGUMENT,
                                f"memory_limit must be 0..2**64-1 bytes, got {memory_limit}")

        self._model = _load_model(path_or_bytes)
        try:
            self._inputs = _read_node_args(
                self._model, _capi.drt_model_input_count, _capi.drt_model_input_name,
                _capi.drt_model_input_element_type, _capi.drt_model_input_shape,
                _capi.drt_model_input_dim_name)
            self._outputs = _read_node_args(
                self._model, _capi.drt_model_output_count, _capi.drt_model_output_name,
                _capi.drt_model_output_element_type, _capi.drt_model_output_shape,
                _capi.drt_model_output_dim_name)
            self._metadata = ModelMetadata(self._model)
            self._input_element_types = {node.name: node.element_type for node in self._inputs}

            options = POINTER(_capi.drt_session_options)()
            _check(_capi.drt_session_options_create(byref(options)))
            try:
                if threads is not None:
                    _check(_capi.drt_session_options_set_threads(options, threads))
                if memory_limit is not None:
                    _check(_capi.drt_session_options_set_memory_limit(options, memory_limit))
                _check(_capi.drt_session_options_set_graph_optimization_level(options, level))
                for name in extra_outputs:
                    _check(_capi.drt_session_options_add_output(options, name))
                if profile_prefix is not None:
                    _check(_capi.drt_session_options_set_profiling(options, profile_prefix))
                session = POINTER(_capi.drt_session)()
                _check(_capi.drt_session_create(self._model, options, byref(session)))
                self._session = session
            finally:
                _capi.drt_session_options_free(options)
            # Everything the session needs is in it: freeing the model now releases the weights
            # the graph passes replaced (about one copy of the convolution weights).
            model, self._model = self._model, None
            self._free_model(model)
        except BaseException:
            self.close()
            raise

    def get_providers(self) -> List[str]:
        return list(_PROVIDERS)

    def get_provider_options(self) -> Dict[str, Dict[str, str]]:
        return {name: {} for name in _PROVIDERS}

    def get_session_options(self) -> SessionOptions:
        return self._sess_options

    def get_modelmeta(self) -> ModelMetadata:
        """The model's producer, graph name, domain, description, version and custom metadata."""
        return self._metadata

    def get_overridable_initializers(self) -> List[NodeArg]:
        """Always [] in DeformRT: initializers are constants (folded into the graph when the session
        is made), so an initializer a model also lists as a graph input cannot be fed; feeding one
        is refused as an unknown input. (onnxruntime lists such initializers here.)"""
        return []

    def end_profiling(self) -> str:
        """Writes the per-node profile recorded since the session was made (Chrome-trace JSON)
        and stops profiling; returns the file's path, or "" when profiling is off."""
        with self._lock:
            if self._session is None:
                raise DeformRTError(Status.INVALID_ARGUMENT, "the session is closed")
            path = c_char_p()
            _check(_capi.drt_session_end_profiling(self._session, byref(path)))
            return os.fsdecode(path.value or b"")

    def get_inputs(self) -> List[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> List[NodeArg]:
        """The model's outputs as it declares them (onnxruntime also fills in dims the model leaves
        unknown when its shape inference knows them; DeformRT reports the declaration)."""
        return list(self._outputs)

    def run(self, output_names: Optional[Sequence[str]], input_feed: Mapping[str, Any],
            run_options: Optional[RunOptions] = None) -> List[np.ndarray]:
        """Runs the model on input_feed ({input name: array}) and returns the outputs named in
        output_names (None or []: the model's outputs, in graph order; SessionOptions.extra_outputs
        only by name) as numpy arrays that own the library's output memory (no copy is made).
        run_options: a RunOptions; setting its terminate from another thread stops the run
        between nodes with DeformRTError (status CANCELLED)."""
        if run_options is not None and not isinstance(run_options, RunOptions):
            raise TypeError(f"run_options must be a deformrt.RunOptions, got {type(run_options).__name__}")
        if isinstance(output_names, (str, bytes)):
            raise TypeError("output_names must be a list of names or None, not a single name")
        if not isinstance(input_feed, Mapping):
            raise TypeError(f"input_feed must be a mapping of input names to arrays, "
                            f"got {type(input_feed).__name__}")
        encoded_inputs = [_encode_name(name, "input") for name in input_feed]
        # An empty list also means all outputs, as in onnxruntime.
        encoded_outputs = ([_encode_name(name, "output") for name in output_names]
                           if output_names is not None and len(output_names) > 0 else None)

        with self._lock:
            if self._session is None:
                raise DeformRTError(Status.INVALID_ARGUMENT, "the session is closed")
            # The arrays stay referenced here until the borrowed tensors are freed.
            arrays = []
            tensors = []
            try:
                for name, value in input_feed.items():
                    array, element_type = self._prepare_input(name, value)
                    arrays.append(array)
                    tensors.append(self._borrow(array, element_type))
                input_count = len(tensors)
                input_names = (c_char_p * input_count)(*encoded_inputs)
                input_tensors = (POINTER(_capi.drt_tensor) * input_count)(*tensors)
                if encoded_outputs is None:
                    output_count = len(self._outputs)
                    output_names_array = None
                else:
                    output_count = len(encoded_outputs)
                    output_names_array = (c_char_p * output_count)(*encoded_outputs)
                outputs = (POINTER(_capi.drt_tensor) * output_count)()
                if run_options is None:
                    _check(_capi.drt_session_run(self._session, input_names, input_tensors,
                                                 input_count, output_names_array, output_count,
                                                 outputs))
                else:
                    # `outputs` is all NULL: the library makes every output tensor.
                    _check(_capi.drt_session_run_with_options(
                        self._session, run_options._handle, input_names, input_tensors, input_count,
                        output_names_array, output_count, outputs))
                # Each wrapped tensor is owned by its array; free only those not wrapped (on error).
                # (The pointer objects view `outputs`' memory, so it must not be overwritten.)
                results = []
                try:
                    for tensor in outputs:
                        results.append(_wrap_output(tensor))
                    return results
                finally:
                    for tensor in outputs[len(results):]:
                        _capi.drt_tensor_free(tensor)
            finally:
                for tensor in tensors:
                    _capi.drt_tensor_free(tensor)

    def _prepare_input(self, name: str, value: Any):
        """The array to hand to the library: `value` itself when it is C-contiguous, aligned and
        of the declared type; otherwise a converted copy. Unsafe casts are refused."""
        declared_type = self._input_element_types.get(name, ElementType.UNDEFINED)
        declared_dtype = _NUMPY_DTYPE_OF.get(declared_type)
        if declared_type != ElementType.UNDEFINED and declared_dtype is None:
            raise DeformRTError(Status.UNSUPPORTED,
                                f"input {name!r} has type {_type_string(declared_type)}, "
                                "which DeformRT cannot run")
        if not isinstance(value, np.ndarray):
            # Lists and scalars take the declared type, as in onnxruntime.
            value = np.asarray(value, dtype=declared_dtype)
        if declared_dtype is None:
            element_type = _element_type_of_dtype(value.dtype)
            if element_type is None:
                raise DeformRTError(Status.INVALID_ARGUMENT,
                                    f"input {name!r} has numpy dtype {value.dtype}, "
                                    "which DeformRT does not support")
            target_dtype = _NUMPY_DTYPE_OF[element_type]
        else:
            element_type = declared_type
            target_dtype = declared_dtype
            if value.dtype != target_dtype and not np.can_cast(value.dtype, target_dtype, "safe"):
                raise DeformRTError(Status.INVALID_ARGUMENT,
                                    f"unexpected input data type for input {name!r}: actual "
                                    f"{_dtype_string(value.dtype)}, expected {_type_string(declared_type)}")
        flags = value.flags
        if value.dtype == target_dtype and flags.c_contiguous and flags.aligned:
            return value, element_type
        return np.require(value, dtype=target_dtype, requirements=["C_CONTIGUOUS", "ALIGNED"]), element_type

    @staticmethod
    def _borrow(array: np.ndarray, element_type: int):
        shape = (c_int64 * array.ndim)(*array.shape)
        tensor = POINTER(_capi.drt_tensor)()
        _check(_capi.drt_tensor_create_borrowed(element_type, shape, array.ndim, array.ctypes.data,
                                                array.nbytes, byref(tensor)))
        return tensor

    def close(self) -> None:
        """Frees the session and its model; further run() calls raise. Safe to call twice."""
        with self._lock:
            session, self._session = self._session, None
            model, self._model = self._model, None
        if session:
            self._free_session(session)
        if model:
            self._free_model(model)

    def __enter__(self) -> "InferenceSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __del__(self) -> None:
        # __init__ may have failed before these were set.
        if getattr(self, "_lock", None) is not None:
            self.close()
