@testable import DeformRTCore
import TestSupport
import XCTest

/// Each graph pass alone on a small graph (nodes before and after), and the graph's outputs with
/// every pass against the graph run as imported (tolerance 1e-5 absolute + 1e-5 relative: folding
/// reassociates conv * scale). Python's test_graph_passes.py checks the same against onnxruntime.
final class GraphPassTests: XCTestCase {
    /// Builds graphs value by value.
    struct Builder {
        var graph = Graph(valueNames: [], nodes: [], inputs: [], outputs: [], initializers: [:], opsets: ["": 17])
        var generator = SeededGenerator(seed: 7)

        mutating func value(_ name: String) -> Int {
            graph.valueNames.append(name)
            return graph.valueNames.count - 1
        }

        mutating func input(_ name: String, _ shape: [Int]) -> Int {
            let id = value(name)
            graph.inputs.append(ValueDeclaration(name: name, id: id, elementType: .float, shape: shape))
            return id
        }

        mutating func constant(_ name: String, _ shape: [Int], range: ClosedRange<Float> = -1...1) -> Int {
            let count = shape.reduce(1, *)
            let values = (0..<count).map { _ in Float.random(in: range, using: &generator) }
            let id = value(name)
            graph.initializers[id] = Tensor(floats: values, shape: shape)
            return id
        }

        @discardableResult
        mutating func node(_ op: String, _ inputs: [Int?], outputs: Int = 1, domain: String = "",
                           _ attributes: [String: AttributeValue] = [:]) -> Int {
            let name = "n\(graph.nodes.count)_\(op)"
            let ids = (0..<outputs).map { value("\(name)_out\($0)") }
            graph.nodes.append(Node(name: name, opType: op, domain: domain, inputs: inputs, outputs: ids,
                                    attributes: attributes, label: name))
            return ids[0]
        }

        mutating func output(_ id: Int) {
            graph.outputs.append(ValueDeclaration(name: graph.valueNames[id], id: id, elementType: .float, shape: nil))
        }

        mutating func feed(_ id: Int) -> (name: String, tensor: Tensor) {
            let declaration = graph.inputs.first { $0.id == id }!
            let shape = declaration.shape!
            let values = (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &generator) }
            return (declaration.name, Tensor(floats: values, shape: shape))
        }
    }

    private func opTypes(_ graph: Graph) -> [String] { graph.nodes.map(\.opType) }

    /// Runs the graph as imported and with every pass; the outputs must agree.
    private func assertSameOutputs(_ graph: Graph, _ feeds: [(name: String, tensor: Tensor)], threads: Int = 2,
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        let plain = try SessionCore(graph: graph, options: SessionOptions(threads: threads, graphOptimizationLevel: .disabled))
        let optimized = try SessionCore(graph: graph, options: SessionOptions(threads: threads, graphOptimizationLevel: .all))
        let expected = try plain.run(feeds: feeds, outputNames: nil)
        let got = try optimized.run(feeds: feeds, outputNames: nil)
        for (e, g) in zip(expected, got) {
            XCTAssertEqual(e.shape, g.shape, file: file, line: line)
            for i in 0..<e.elementCount {
                let want = e.floats[i], have = g.floats[i]
                XCTAssertLessThanOrEqual(abs(want - have), 1e-5 + 1e-5 * abs(want), "element \(i)", file: file, line: line)
                if abs(want - have) > 1e-5 + 1e-5 * abs(want) { return }
            }
        }
    }

    func testConstantFoldingComputesConstantSubgraphsOnce() throws {
        var b = Builder()
        let x = b.input("x", [2, 3])
        let w = b.constant("w", [3, 2])
        let t = b.node("Transpose", [w], ["perm": .ints([1, 0])])
        let c = b.node("Constant", [], ["value": .tensor(Tensor(floats: [2], shape: []))])
        let scaled = b.node("Mul", [t, c])
        b.output(b.node("Add", [x, scaled]))
        var graph = b.graph
        XCTAssertTrue(try ConstantFolding().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Add"])
        let folded = graph.initializers[graph.nodes[0].inputs[1]!]!
        XCTAssertEqual(folded.shape, [2, 3])
        XCTAssertEqual(folded.floats[1], 2 * b.graph.initializers[w]!.floats[2])  // t[0][1] = w[1][0]
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// x [2, 3, 4] static, y [?, 4] symbolic: Shape(x, start 1) and Size(x) become constants and
    /// Reshape(x, Concat([-1], Shape(x)[1:])) gets explicit sizes; Shape(y) stays.
    func testStaticShapeFoldingReplacesShapesOfStaticInputs() throws {
        var b = Builder()
        let x = b.input("x", [2, 3, 4])
        let y = b.input("y", [-1, 4])
        let minusOne = b.value("minus_one")
        b.graph.initializers[minusOne] = Tensor(int64s: [-1], shape: [1])
        let tail = b.node("Shape", [x], ["start": .int(1)])
        let sizes = b.node("Concat", [minusOne, tail], ["axis": .int(0)])
        let flat = b.node("Reshape", [x, sizes])
        let count = b.node("Cast", [b.node("Size", [x])], ["to": .int(1)])
        b.output(b.node("Mul", [flat, count]))
        let rows = b.node("Cast", [b.node("Shape", [y], ["end": .int(1)])], ["to": .int(1)])
        b.output(b.node("Mul", [y, rows]))
        var graph = b.graph
        XCTAssertTrue(try StaticShapeFolding().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Concat", "Reshape", "Cast", "Mul", "Shape", "Cast", "Mul"])
        XCTAssertEqual(try graph.initializers[tail]?.integerValues(), [3, 4])
        let reshape = graph.nodes.first { $0.opType == "Reshape" }!
        XCTAssertEqual(try graph.initializers[reshape.inputs[1]!]?.integerValues(), [2, 3, 4])
        _ = try ConstantFolding().apply(to: &graph)
        XCTAssertEqual(opTypes(graph), ["Reshape", "Mul", "Shape", "Cast", "Mul"])
        // Nothing more to do the second time.
        XCTAssertFalse(try StaticShapeFolding().apply(to: &graph))
        try assertSameOutputs(b.graph, [b.feed(x), ("y", Tensor(floats: (0..<20).map(Float.init), shape: [5, 4]))])
    }

    func testRedundantNodesAreRemovedAndGraphOutputsKept() throws {
        var b = Builder()
        let x = b.input("x", [4, 5])
        let i = b.node("Identity", [x])
        let r = b.node("Relu", [i])
        let d = b.node("Dropout", [r])
        let t = b.node("Transpose", [d], ["perm": .ints([0, 1])])
        b.output(t)
        var graph = b.graph
        XCTAssertTrue(try RedundantNodeElimination().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Relu"])
        XCTAssertEqual(graph.nodes[0].inputs, [x])
        XCTAssertEqual(graph.nodes[0].outputs, [t], "the graph output keeps its name")
        // A transpose that permutes stays.
        var c = Builder()
        let y = c.input("y", [4, 5])
        c.output(c.node("Transpose", [y], ["perm": .ints([1, 0])]))
        var kept = c.graph
        XCTAssertFalse(try RedundantNodeElimination().apply(to: &kept))
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    func testDeadNodesAndInitializersAreRemoved() throws {
        var b = Builder()
        let x = b.input("x", [3])
        let unused = b.constant("unused", [3])
        _ = b.node("Exp", [b.node("Add", [x, unused])])
        b.output(b.node("Relu", [x]))
        var graph = b.graph
        XCTAssertTrue(try DeadCodeElimination().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Relu"])
        XCTAssertNil(graph.initializers[unused])
        XCTAssertFalse(try DeadCodeElimination().apply(to: &graph))
    }

    private func conv(_ b: inout Builder, _ x: Int, cin: Int, cout: Int, kernel: Int = 3, bias: Bool = true) -> Int {
        let w = b.constant("w\(b.graph.nodes.count)", [cout, cin, kernel, kernel])
        let bb: Int? = bias ? b.constant("b\(b.graph.nodes.count)", [cout]) : nil
        return b.node("Conv", [x, w, bb], ["pads": .ints([kernel / 2, kernel / 2, kernel / 2, kernel / 2])])
    }

    private func batchNorm(_ b: inout Builder, _ x: Int, channels: Int) -> Int {
        let scale = b.constant("gamma", [channels], range: 0.5...1.5), shift = b.constant("beta", [channels])
        let mean = b.constant("mean", [channels]), variance = b.constant("var", [channels], range: 0.5...2)
        return b.node("BatchNormalization", [x, scale, shift, mean, variance], ["epsilon": .float(1e-3)])
    }

    func testBatchNormAndPerChannelMulAddFoldIntoTheConvolution() throws {
        var b = Builder()
        let x = b.input("x", [2, 5, 9, 7])
        let bn = batchNorm(&b, conv(&b, x, cin: 5, cout: 17, bias: false), channels: 17)
        let scaled = b.node("Mul", [b.constant("s", [17, 1, 1]), bn])
        b.output(b.node("Add", [scaled, b.constant("t", [1, 17, 1, 1])]))
        var graph = b.graph
        XCTAssertTrue(try ConvAffineFolding().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Conv"])
        XCTAssertEqual(graph.nodes[0].outputs, b.graph.outputs.map(\.id))
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 1)
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 2)
    }

    func testNoFoldWhenTheConvolutionOutputHasAnotherReaderOrTheScaleIsNotPerChannel() throws {
        var b = Builder()
        let x = b.input("x", [1, 3, 6, 6])
        let y = conv(&b, x, cin: 3, cout: 4)
        b.output(batchNorm(&b, y, channels: 4))
        b.output(b.node("Relu", [y]))
        var c = Builder()
        let x2 = c.input("x", [1, 3, 6, 6])
        c.output(c.node("Mul", [conv(&c, x2, cin: 3, cout: 4), c.constant("full", [4, 6, 6])]))
        for var graph in [b.graph, c.graph] {
            XCTAssertFalse(try ConvAffineFolding().apply(to: &graph))
        }
        try assertSameOutputs(b.graph, [b.feed(x)])
        try assertSameOutputs(c.graph, [c.feed(x2)])
    }

    func testResidualAddAndReluFuseIntoTheConvolutionEpilogue() throws {
        var b = Builder()
        let x = b.input("x", [2, 16, 10, 11])
        let shortcut = b.node("Relu", [x])
        let y = conv(&b, shortcut, cin: 16, cout: 16)
        b.output(b.node("Relu", [b.node("Add", [shortcut, y])]))
        var graph = b.graph
        XCTAssertTrue(try ConvEpilogueFusion().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["Relu", "FusedConv"])
        let fused = graph.nodes[1]
        XCTAssertEqual(fused.domain, "ai.deformrt")
        XCTAssertEqual(fused.inputs[3], shortcut)
        XCTAssertEqual(ConvNodeSlots.fusedNames(fused).count, 3)
        if case .string(let name)? = fused.attributes["activation"] { XCTAssertEqual(name, "Relu") } else { XCTFail("no activation") }
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 1)
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 2)
    }

    func testEveryFusableActivation() throws {
        let activations: [(String, [String: AttributeValue], String)] = [
            ("Relu", [:], "Relu"), ("LeakyRelu", ["alpha": .float(0.2)], "LeakyRelu"), ("Sigmoid", [:], "Sigmoid"),
            ("HardSigmoid", [:], "HardSigmoid"), ("HardSwish", [:], "HardSwish"), ("Tanh", [:], "Tanh"),
            ("Elu", [:], "Elu"), ("Softplus", [:], "Softplus"), ("Mish", [:], "Mish"),
        ]
        for (op, attributes, name) in activations {
            var b = Builder()
            b.graph.opsets[""] = 20
            let x = b.input("x", [1, 3, 7, 5])
            b.output(b.node(op, [conv(&b, x, cin: 3, cout: 20)], attributes))
            var graph = b.graph
            XCTAssertTrue(try ConvEpilogueFusion().apply(to: &graph), op)
            XCTAssertEqual(opTypes(graph), ["FusedConv"], op)
            if case .string(let fused)? = graph.nodes[0].attributes["activation"] { XCTAssertEqual(fused, name) } else { XCTFail(op) }
            try assertSameOutputs(b.graph, [b.feed(x)])
        }
    }

    func testClipAndSiluFuse() throws {
        var b = Builder()
        let x = b.input("x", [1, 4, 9, 9])
        let y = conv(&b, x, cin: 4, cout: 8)
        let sigmoid = b.node("Sigmoid", [y])
        let silu = b.node("Mul", [sigmoid, y])
        let low = b.constant("low", [], range: 0...0), high = b.constant("high", [], range: 0.3...0.3)
        b.output(b.node("Clip", [conv(&b, silu, cin: 8, cout: 8), low, high]))
        var graph = b.graph
        XCTAssertTrue(try ConvEpilogueFusion().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["FusedConv", "FusedConv"])
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    func testBroadcastResidualRunsAfterTheConvolution() throws {
        var b = Builder()
        let x = b.input("x", [2, 3, 6, 6])
        let perChannel = b.input("p", [1, 5, 1, 1])
        b.output(b.node("Relu", [b.node("Add", [conv(&b, x, cin: 3, cout: 5), perChannel])]))
        var graph = b.graph
        XCTAssertTrue(try ConvEpilogueFusion().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), ["FusedConv"])
        try assertSameOutputs(b.graph, [b.feed(x), b.feed(perChannel)])
    }

    func testConvolutionOutputReadTwiceIsNotFused() throws {
        var b = Builder()
        let x = b.input("x", [1, 2, 5, 5])
        let y = conv(&b, x, cin: 2, cout: 3)
        b.output(b.node("Relu", [y]))
        b.output(b.node("Sigmoid", [y]))
        var graph = b.graph
        XCTAssertFalse(try ConvEpilogueFusion().apply(to: &graph))
    }

    func testDeformableConvolutionFoldsBatchNormAndFusesActivation() throws {
        var b = Builder()
        let x = b.input("x", [2, 4, 8, 8])
        let offset = b.node("Conv", [x, b.constant("ow", [18, 4, 3, 3]), b.constant("ob", [18])], ["pads": .ints([1, 1, 1, 1])])
        let w = b.constant("w", [6, 4, 3, 3])
        let deform = b.node("DeformConv", [x, w, offset], ["pads": .ints([1, 1, 1, 1])])
        b.graph.opsets[""] = 19
        b.output(b.node("Relu", [batchNorm(&b, deform, channels: 6)]))
        try assertSameOutputs(b.graph, [b.feed(x)])
        let session = try SessionCore(graph: b.graph, options: SessionOptions(threads: 1))
        XCTAssertEqual(opTypes(session.graph), ["Conv", "FusedDeformConv"])
    }

    func testLevelsRunTheirPasses() throws {
        var b = Builder()
        let x = b.input("x", [1, 3, 6, 6])
        b.output(b.node("Relu", [batchNorm(&b, conv(&b, b.node("Identity", [x]), cin: 3, cout: 4), channels: 4)]))
        let counts = try GraphOptimizationLevel.allCases.map {
            try SessionCore(graph: b.graph, options: SessionOptions(threads: 1, graphOptimizationLevel: $0)).graph.nodes.count
        }
        XCTAssertEqual(counts, [4, 3, 1, 1])
    }

    func testMatMulBiasAddFusesIntoFusedMatMul() throws {
        var b = Builder()
        let x = b.input("x", [2, 7, 19])
        let y = b.node("MatMul", [x, b.constant("w", [19, 33])])
        b.output(b.node("Add", [b.constant("bias", [33]), y]))
        var graph = b.graph
        XCTAssertTrue(try MatMulBiasFusion().apply(to: &graph))
        XCTAssertEqual(opTypes(graph), [MatMulBiasFusion.fusedMatMul])
        XCTAssertEqual(graph.nodes[0].outputs, b.graph.outputs.map(\.id))
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 1)
        try assertSameOutputs(b.graph, [b.feed(x)], threads: 2)
    }

    func testMatMulBiasNotFusedForOtherReadersOrBiasShapes() throws {
        var b = Builder()
        let x = b.input("x", [7, 19])
        let y = b.node("MatMul", [x, b.constant("w", [19, 33])])
        b.output(b.node("Add", [y, b.constant("bias", [33])]))
        b.output(b.node("Relu", [y]))
        var c = Builder()
        let x2 = c.input("x", [7, 19])
        c.output(c.node("Add", [c.node("MatMul", [x2, c.constant("w", [19, 33])]), c.constant("bias", [1, 33])]))
        for var graph in [b.graph, c.graph] {
            XCTAssertFalse(try MatMulBiasFusion().apply(to: &graph))
        }
        try assertSameOutputs(b.graph, [b.feed(x)])
        try assertSameOutputs(c.graph, [c.feed(x2)])
    }
}
