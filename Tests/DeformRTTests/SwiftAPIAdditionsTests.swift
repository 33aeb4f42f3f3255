import DeformRT
import ONNXProto
import XCTest

/// Metadata, run options, extra outputs and custom operators through the Swift API.
final class SwiftAPIAdditionsTests: XCTestCase {
    /// x [N, 3] -> Relu ("r") -> com.example::Twice ("y" = 2 r) when `custom`, else Neg ("y").
    private func model(custom: Bool) throws -> [UInt8] {
        var model = Onnx_ModelProto()
        model.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        var example = Onnx_OperatorSetIdProto()
        example.domain = "com.example"
        example.version = 2
        model.opsetImport = custom ? [opset, example] : [opset]
        model.producerName = "swift-tests"
        model.modelVersion = 3
        var entry = Onnx_StringStringEntryProto()
        entry.key = "task"
        entry.value = "doubling"
        model.metadataProps = [entry]
        var graph = Onnx_GraphProto()
        graph.name = "twice"
        func info(_ name: String) -> Onnx_ValueInfoProto {
            var value = Onnx_ValueInfoProto()
            value.name = name
            var tensorType = Onnx_TypeProto.Tensor()
            tensorType.elemType = 1
            var shape = Onnx_TensorShapeProto()
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "N"
            var three = Onnx_TensorShapeProto.Dimension()
            three.dimValue = 3
            shape.dim = [batch, three]
            tensorType.shape = shape
            value.type.tensorType = tensorType
            return value
        }
        graph.input = [info("x")]
        graph.output = [info("y")]
        var relu = Onnx_NodeProto()
        relu.opType = "Relu"
        relu.input = ["x"]
        relu.output = ["r"]
        var second = Onnx_NodeProto()
        second.name = "second"
        second.opType = custom ? "Twice" : "Neg"
        second.domain = custom ? "com.example" : ""
        second.input = ["r"]
        second.output = ["y"]
        graph.node = [relu, second]
        model.graph = graph
        return try model.serializedBytes()
    }

    private func twice(outputTypes: (@Sendable ([(elementType: ElementType, shape: [Int])?], Int) throws -> [(elementType: ElementType, shape: [Int])])? = nil,
                       fail: Bool = false) throws -> CustomOperator {
        try CustomOperator(domain: "com.example", opType: "Twice", opsets: 1...2,
                           outputTypes: outputTypes ?? { inputs, _ in [inputs[0]!] },
                           compute: { inputs, outputs in
                               if fail { throw DeformRTError(.unsupported, "twice refuses") }
                               let x = try inputs[0]!.scalars
                               outputs[0].withUnsafeMutableBytes { out in
                                   for (i, v) in x.enumerated() { out.storeBytes(of: 2 * v, toByteOffset: i * 4, as: Float.self) }
                               }
                           })
    }

    private let input = try! Tensor(shape: [2, 3], scalars: [-1, 2, 3, -4, 5, 0.5])

    func testMetadata() throws {
        let metadata = try Model(bytes: try model(custom: false)).metadata
        XCTAssertEqual(metadata.producerName, "swift-tests")
        XCTAssertEqual(metadata.graphName, "twice")
        XCTAssertEqual(metadata.version, 3)
        XCTAssertEqual(metadata.value(forKey: "task"), "doubling")
        XCTAssertNil(metadata.value(forKey: "nope"))
    }

    func testCustomOperatorRunsAndItsErrorsNameTheNode() throws {
        let model = try Model(bytes: try model(custom: true))
        XCTAssertThrowsError(try Session(model: model)) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .unsupported)
            XCTAssertTrue("\(error)".contains("(com.example, Twice, opset 2)"))
        }
        let session = try Session(model: model, customOperators: [try twice()])
        XCTAssertEqual(try session.run(["x": input])["y"]!.scalars, [0, 4, 6, 0, 10, 1])
        let failing = try Session(model: model, customOperators: [try twice(fail: true)])
        XCTAssertThrowsError(try failing.run(["x": input])) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .unsupported)
            XCTAssertTrue("\(error)".contains("node second (Twice): twice refuses"), "\(error)")
        }
        let wrong = try Session(model: model, customOperators: [try twice(outputTypes: { _, _ in [(.float, [2, -3])] })])
        XCTAssertThrowsError(try wrong.run(["x": input])) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .invalidArgument)
            XCTAssertTrue("\(error)".contains("negative dim -3"), "\(error)")
        }
        XCTAssertThrowsError(try CustomOperator(domain: "", opType: "Relu", outputTypes: { _, _ in [] }, compute: { _, _ in }))
    }

    func testExtraOutputsAndRunOptions() throws {
        let model = try Model(bytes: try model(custom: false))
        let session = try Session(model: model, extraOutputs: ["r"])
        let outputs = try session.run(["x": input], outputs: ["y", "r"])
        XCTAssertEqual(try outputs["r"]!.scalars, [0, 2, 3, 0, 5, 0.5])
        XCTAssertEqual(try outputs["y"]!.scalars, [-0.0, -2, -3, -0.0, -5, -0.5])
        XCTAssertThrowsError(try Session(model: model, extraOutputs: ["nope"]))

        let options = RunOptions()
        options.terminate = true
        XCTAssertThrowsError(try session.run(["x": input], options: options)) { error in
            XCTAssertEqual((error as? DeformRTError)?.code, .cancelled)
        }
        options.terminate = false
        XCTAssertEqual(try session.run(["x": input], options: options)["y"]!.scalars.count, 6)
    }
}
