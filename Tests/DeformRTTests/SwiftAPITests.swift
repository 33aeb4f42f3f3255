import DeformRT
import DeformRTKernels
import ONNXProto
import TestSupport
import XCTest

/// The public Swift API end to end, on models built here with the generated ONNX protobuf types.
final class SwiftAPITests: XCTestCase {
    /// Conv(3x3, pad 1) + Relu on a dynamic batch, weights as an initializer.
    private func convReluModel(weights: [Float]) throws -> [UInt8] {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        model.opsetImport = [opset]
        var graph = Onnx_GraphProto()
        graph.name = "conv_relu"
        var w = Onnx_TensorProto()
        w.name = "w"
        w.dataType = 1
        w.dims = [4, 3, 3, 3]
        w.floatData = weights
        graph.initializer = [w]
        func info(_ name: String, _ dims: [Int64?]) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            var tensorType = Onnx_TypeProto.Tensor()
            tensorType.elemType = 1
            var shape = Onnx_TensorShapeProto()
            shape.dim = dims.map { d in
                var dim = Onnx_TensorShapeProto.Dimension()
                if let d { dim.dimValue = d } else { dim.dimParam = "N" }
                return dim
            }
            tensorType.shape = shape
            value.type.tensorType = tensorType
            return value
        }
        graph.input = [info("x", [nil, 3, 5, 6])]
        graph.output = [info("y", [nil, 4, 5, 6]), info("c", [nil, 4, 5, 6])]
        var conv = Onnx_NodeProto()
        conv.opType = "Conv"
        conv.input = ["x", "w"]
        conv.output = ["c"]
        var pads = Onnx_AttributeProto()
        pads.name = "pads"
        pads.type = .ints
        pads.ints = [1, 1, 1, 1]
        conv.attribute = [pads]
        var relu = Onnx_NodeProto()
        relu.opType = "Relu"
        relu.input = ["c"]
        relu.output = ["y"]
        graph.node = [conv, relu]
        model.graph = graph
        return try model.serializedBytes()
    }

    func testRunMatchesTheKernelReference() throws {
        var generator = SeededGenerator(seed: 1)
        let weights = generator.floats(4 * 3 * 3 * 3)
        let model = try Model(bytes: try convReluModel(weights: weights))
        XCTAssertEqual(model.inputs.map(\.name), ["x"])
        XCTAssertEqual(model.inputs[0].shape, [-1, 3, 5, 6])
        let session = try Session(model: model, threads: 2)
        for batch in [1, 3] {  // the second run re-plans for a new batch size
            let input = generator.floats(batch * 3 * 5 * 6)
            let outputs = try session.run(["x": try Tensor(shape: [batch, 3, 5, 6], scalars: input)])
            let y = try XCTUnwrap(outputs["y"])
            XCTAssertEqual(y.shape, [batch, 4, 5, 6])
            var expected = [Float](repeating: 0, count: batch * 4 * 5 * 6)
            let g = ConvGeometry(batch: batch, inChannels: 3, inHeight: 5, inWidth: 6, outChannels: 4,
                                 kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1)
            input.withUnsafeBufferPointer { x in
                weights.withUnsafeBufferPointer { w in
                    expected.withUnsafeMutableBufferPointer { out in
                        Conv2D.reference(g, input: x.baseAddress!, weight: w.baseAddress!, bias: nil, output: out.baseAddress!)
                    }
                }
            }
            XCTAssertLessThan(maxMixedError(try y.scalars, expected.map { max($0, 0) }), 1e-5)
            XCTAssertLessThan(maxMixedError(try outputs["c"]!.scalars, expected), 1e-5)
        }
    }

    func testSelectedOutputsOnly() throws {
        let model = try Model(bytes: try convReluModel(weights: [Float](repeating: 0.5, count: 108)))
        let session = try Session(model: model)
        let outputs = try session.run(["x": try Tensor(shape: [1, 3, 5, 6], scalars: [Float](repeating: 1, count: 90))], outputs: ["c"])
        XCTAssertEqual(Array(outputs.keys), ["c"])
    }

    func testErrorsAreTyped() throws {
        XCTAssertThrowsError(try Model(bytes: [0x08, 0xFF, 0xFF])) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .invalidModel)
        }
        XCTAssertThrowsError(try Model(path: "/nonexistent/model.onnx")) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .io)
        }
        let model = try Model(bytes: try convReluModel(weights: [Float](repeating: 0, count: 108)))
        let session = try Session(model: model)
        XCTAssertThrowsError(try session.run(["nope": try Tensor(shape: [1], scalars: [0])])) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .invalidArgument)
            XCTAssertTrue((error as? DeformRTError)?.message.contains("nope") ?? false)
        }
        XCTAssertThrowsError(try session.run(["x": try Tensor(shape: [1, 3, 5, 7], scalars: [Float](repeating: 0, count: 105))])) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .invalidArgument)
        }
        XCTAssertThrowsError(try Tensor(shape: [2, 2], scalars: [1, 2, 3]))
    }

    func testTensorIsCopyOnWrite() throws {
        let a = try Tensor(shape: [2], scalars: [1, 2])
        var b = a
        b.withUnsafeMutableBytes { $0.storeBytes(of: Float(9), as: Float.self) }
        XCTAssertEqual(try a.scalars, [1, 2])
        XCTAssertEqual(try b.scalars, [9, 2])
    }
}
