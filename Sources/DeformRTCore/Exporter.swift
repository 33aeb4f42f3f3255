#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import ONNXProto
import SwiftProtobuf

/// Writes a graph (typically after the passes) back as an ONNX model, to look at what a session
/// runs (`deformrt info --optimized --save`). Fused nodes are in the ai.deformrt domain.
public enum Exporter {
    public static func serialize(_ graph: Graph, graphName: String = "optimized") throws -> [UInt8] {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        model.producerName = "deformrt"
        var domains = graph.opsets
        for node in graph.nodes where domains[node.domain] == nil { domains[node.domain] = 1 }
        model.opsetImport = domains.sorted { $0.key < $1.key }.map { domain, version in
            var opset = Onnx_OperatorSetIdProto()
            opset.domain = domain
            opset.version = Int64(version)
            return opset
        }
        model.graph = graphProto(graph, name: "optimized")
        return try model.serializedBytes()
    }

    /// A graph as ONNX writes it: a subgraph's outer-scope values (its implicit inputs, and the
    /// matching inputs of its node) are referred to by name, not listed.
    private static func graphProto(_ graph: Graph, name graphName: String) -> Onnx_GraphProto {
        var proto = Onnx_GraphProto()
        proto.name = graphName
        let name = { (id: Int) in graph.valueNames[id] }
        proto.node = graph.nodes.map { node in
            var n = Onnx_NodeProto()
            n.name = node.name
            n.opType = node.opType
            n.domain = node.domain
            n.input = node.inputs.dropLast(node.implicitInputCount).map { $0.map(name) ?? "" }
            n.output = node.outputs.map(name)
            n.attribute = node.attributes.sorted { $0.key < $1.key }.map { attribute($0.key, $0.value, name: name) }
            return n
        }
        proto.initializer = graph.initializers.sorted { $0.key < $1.key }.map { tensor($0.value, name: name($0.key)) }
        proto.input = graph.inputs.dropLast(graph.implicitInputCount).map(valueInfo)
        proto.output = graph.outputs.map(valueInfo)
        return proto
    }

    private static func tensor(_ tensor: Tensor, name: String) -> Onnx_TensorProto {
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dataType = tensor.elementType.rawValue
        proto.dims = tensor.shape.map(Int64.init)
        proto.rawData = Data(UnsafeRawBufferPointer(start: tensor.rawPointer, count: tensor.byteCount))
        return proto
    }

    private static func attribute(_ key: String, _ value: AttributeValue, name: (Int) -> String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = key
        switch value {
        case .float(let v): a.type = .float; a.f = v
        case .int(let v): a.type = .int; a.i = Int64(v)
        case .string(let v): a.type = .string; a.s = Data(v.utf8)
        case .tensor(let v): a.type = .tensor; a.t = tensor(v, name: "")
        case .floats(let v): a.type = .floats; a.floats = v
        case .ints(let v): a.type = .ints; a.ints = v.map(Int64.init)
        case .strings(let v): a.type = .strings; a.strings = v.map { Data($0.utf8) }
        case .tensors(let v): a.type = .tensors; a.tensors = v.map { tensor($0, name: "") }
        case .graph(let g): a.type = .graph; a.g = graphProto(g, name: key)
        }
        return a
    }

    private static func valueInfo(_ declaration: ValueDeclaration) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = declaration.name
        var type = Onnx_TypeProto.Tensor()
        if let elementType = declaration.elementType { type.elemType = elementType.rawValue }
        if let shape = declaration.shape {
            var shapeProto = Onnx_TensorShapeProto()
            shapeProto.dim = shape.map { dim in
                var d = Onnx_TensorShapeProto.Dimension()
                if dim >= 0 { d.dimValue = Int64(dim) } else { d.dimParam = "?" }
                return d
            }
            type.shape = shapeProto
        }
        info.type.tensorType = type
        return info
    }
}
