"""DeformRT as an onnx backend (`onnx.backend.base.Backend`), so onnx's backend test suite and
code written against that interface can run models on DeformRT:

    import deformrt.backend as backend
    rep = backend.prepare(model)                 # a ModelProto, serialized bytes or a path
    outputs = rep.run([x])                       # inputs in graph order (or a {name: array} dict)
    outputs = backend.run_node(node, [x, y])     # one node, wrapped in a model

Requires the `onnx` package (the binding itself does not).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from .session import InferenceSession, SessionOptions

_DEVICES = ("CPU",)


def _device_name(device: Optional[str]) -> str:
    # onnx passes "CPU" or "CUDA"; a "CPU:0" style index is accepted.
    return (device or "CPU").split(":", 1)[0].upper()


class DeformRTBackendRep(BackendRep):
    """A prepared model: one InferenceSession, run on positional or named inputs."""

    def __init__(self, session: InferenceSession):
        self.session = session
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: Any, **kwargs: Any) -> Tuple[Any, ...]:
        """inputs: a list or tuple in the order of the graph's inputs (those that are not
        initializers), a {name: array} mapping, or one array for a one-input model. Returns the
        outputs in graph order as a named tuple."""
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
                inputs = [inputs]
            if len(inputs) > len(self._input_names):
                raise ValueError(f"{len(inputs)} inputs given, the model has {len(self._input_names)}")
            # onnx leaves trailing optional inputs out of a data set.
            feeds = dict(zip(self._input_names, inputs))
        outputs = self.session.run(None, feeds)
        return namedtupledict("Outputs", self._output_names)(*outputs)


class DeformRTBackend(Backend):
    """onnx.backend.base.Backend over deformrt.InferenceSession (CPU only)."""

    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> DeformRTBackendRep:
        """model: a ModelProto, serialized bytes or a path. kwargs: `threads`, `memory_limit`,
        `graph_optimization_level` (as InferenceSession / SessionOptions take them). Model checks
        and operator support are the library's: an unsupported model raises DeformRTError."""
        if not cls.supports_device(device):
            raise RuntimeError(f"DeformRT runs on the CPU only, not on {device!r}")
        if isinstance(model, onnx.ModelProto):
            model = model.SerializeToString()
        elif isinstance(model, (str, os.PathLike)):
            with open(model, "rb") as f:
                model = f.read()
        options = SessionOptions()
        if "graph_optimization_level" in kwargs:
            options.graph_optimization_level = kwargs.pop("graph_optimization_level")
        threads = kwargs.pop("threads", None)
        memory_limit = kwargs.pop("memory_limit", None)
        session = InferenceSession(model, options, threads=threads, memory_limit=memory_limit)
        return DeformRTBackendRep(session)

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> Tuple[Any, ...]:
        rep = cls.prepare(model, device, **kwargs)
        try:
            return rep.run(inputs)
        finally:
            rep.session.close()

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Optional[Sequence[Tuple[np.dtype, Tuple[int, ...]]]] = None,
                 **kwargs: Any) -> Tuple[Any, ...]:
        """Runs one node on `inputs` (a list matching node.input, or a {name: array} mapping).
        kwargs: `opset_version` (default: the newest opset onnx knows for the node's domain),
        plus prepare's options. outputs_info gives each output's (dtype, shape) when known."""
        opset = kwargs.pop("opset_version", None)
        if isinstance(inputs, Mapping):
            values = dict(inputs)
        else:
            names = [name for name in node.input if name]
            if len(inputs) != len(names):
                raise ValueError(f"node {node.name or node.op_type} has {len(names)} inputs, {len(inputs)} given")
            values = dict(zip(names, inputs))
        graph_inputs = []
        for name, value in values.items():
            array = np.asarray(value)
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape)))
        graph_outputs = []
        for index, name in enumerate(n for n in node.output if n):
            if outputs_info is not None and index < len(outputs_info):
                dtype, shape = outputs_info[index]
                graph_outputs.append(helper.make_tensor_value_info(
                    name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)))
            else:
                graph_outputs.append(helper.make_empty_tensor_value_info(name))
        graph = helper.make_graph([node], f"{node.op_type}_node", graph_inputs, graph_outputs)
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        if opset is None:
            opset = onnx.defs.onnx_opset_version() if domain == "" else 1
        opsets = [helper.make_opsetid(domain, opset)]
        if domain != "":
            opsets.append(helper.make_opsetid("", onnx.defs.onnx_opset_version()))
        model = helper.make_model(graph, opset_imports=opsets)
        rep = cls.prepare(model, device, **kwargs)
        try:
            return rep.run(values)
        finally:
            rep.session.close()

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return _device_name(device) in _DEVICES


# The module-level names onnx's backend convention expects (`import deformrt.backend as backend`).
is_compatible = DeformRTBackend.is_compatible
prepare = DeformRTBackend.prepare
run_model = DeformRTBackend.run_model
run_node = DeformRTBackend.run_node
supports_device = DeformRTBackend.supports_device
