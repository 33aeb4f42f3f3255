@testable import DeformRTCore
import TestSupport
import XCTest

/// The channels-last layout pass alone (which nodes change form, where Transposes go) and the
/// outputs of the rewritten graph against the graph as imported (tolerance as GraphPassTests:
/// 1e-5 absolute + 1e-5 relative).
final class ChannelsLastLayoutTests: XCTestCase {
    typealias Builder = GraphPassTests.Builder

    private func conv(_ b: inout Builder, _ x: Int, cin: Int, cout: Int, kernel: Int = 3, stride: Int = 1,
                      group: Int = 1) -> Int {
        let w = b.constant("w\(b.graph.nodes.count)", [cout, cin / group, kernel, kernel])
        let bias = b.constant("b\(b.graph.nodes.count)", [cout])
        return b.node("Conv", [x, w, bias], ["pads": .ints([Int](repeating: kernel / 2, count: 4)),
                                             "strides": .ints([stride, stride]), "group": .int(group)])
    }

    private func ops(_ graph: Graph) -> [String] { graph.nodes.map(\.opType) }

    private func layoutOf(_ graph: Graph, _ index: Int) -> (input: Bool, output: Bool) {
        let a = graph.nodes[index].attributes
        let on = { (key: String) -> Bool in if case .int(1)? = a[key] { return true } else { return false } }
        return (on("channels_last_input"), on("channels_last_output"))
    }

    private func assertSameOutputs(_ graph: Graph, _ feeds: [(name: String, tensor: Tensor)],
                                   file: StaticString = #filePath, line: UInt = #line) throws {
        for threads in [1, 2] {
            let plain = try SessionCore(graph: graph, options: SessionOptions(threads: threads, graphOptimizationLevel: .disabled))
            let optimized = try SessionCore(graph: graph, options: SessionOptions(threads: threads, graphOptimizationLevel: .all))
            let expected = try plain.run(feeds: feeds, outputNames: nil)
            let got = try optimized.run(feeds: feeds, outputNames: nil)
            XCTAssertEqual(expected.count, got.count, file: file, line: line)
            for (e, g) in zip(expected, got) {
                XCTAssertEqual(e.shape, g.shape, file: file, line: line)
                var worst: Float = 0
                for i in 0..<e.elementCount { worst = max(worst, abs(e.floats[i] - g.floats[i]) / (1 + abs(e.floats[i]))) }
                XCTAssertLessThanOrEqual(worst, 2e-5, "threads \(threads)", file: file, line: line)
            }
        }
    }

    /// Stem conv -> Relu -> MaxPool -> 1x1 -> 3x3 -> 1x1 + shortcut -> Relu -> GlobalAveragePool:
    /// no Transpose anywhere, the first conv reads NCHW and the pooling ends NCHW.
    func testResNetChainStaysChannelsLast() throws {
        var b = Builder()
        let x = b.input("x", [2, 3, 17, 15])
        let stem = b.node("Relu", [conv(&b, x, cin: 3, cout: 16, kernel: 7, stride: 2)])
        let pooled = b.node("MaxPool", [stem], ["kernel_shape": .ints([3, 3]), "strides": .ints([2, 2]),
                                                "pads": .ints([1, 1, 1, 1])])
        let a = b.node("Relu", [conv(&b, pooled, cin: 16, cout: 8, kernel: 1)])
        let c = b.node("Relu", [conv(&b, a, cin: 8, cout: 8)])
        let d = conv(&b, c, cin: 8, cout: 16, kernel: 1)
        let block = b.node("Relu", [b.node("Add", [d, pooled])])
        let half = b.node("Mul", [block, b.constant("half", [1], range: 0.5...0.5)])
        b.output(b.node("GlobalAveragePool", [half]))
        var graph = b.graph
        _ = try ConvEpilogueFusion().apply(to: &graph)
        XCTAssertTrue(try ChannelsLastLayout().apply(to: &graph))
        XCTAssertEqual(ops(graph), ["FusedConv", "ChannelsLastMaxPool", "FusedConv", "FusedConv", "FusedConv", "Mul",
                                    "ChannelsLastGlobalAveragePool"])
        XCTAssertTrue(layoutOf(graph, 0) == (false, true))
        for index in 2...4 { XCTAssertTrue(layoutOf(graph, index) == (true, true), "node \(index)") }
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// A channels-last value read by an op without that form (a depthwise conv with a channel
    /// multiplier of 2) gets one Transpose back; a conv whose readers all want NCHW (Softmax, a
    /// graph output) writes NCHW itself.
    func testTransposesOnlyAtTheEdges() throws {
        var b = Builder()
        let x = b.input("x", [1, 4, 9, 8])
        let y = b.node("Relu", [conv(&b, x, cin: 4, cout: 16)])
        let z = conv(&b, y, cin: 16, cout: 16)
        b.output(z)
        b.output(b.node("Softmax", [z], ["axis": .int(1)]))
        b.output(conv(&b, y, cin: 16, cout: 32, group: 16))
        var graph = b.graph
        XCTAssertTrue(try ChannelsLastLayout().apply(to: &graph))
        XCTAssertEqual(ops(graph).filter { $0 == "Transpose" }.count, 1, "\(ops(graph))")
        XCTAssertTrue(layoutOf(graph, 2) == (true, false))
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// DCNv2 as torch.onnx.export writes it: the offset conv reads channels-last but writes NCHW
    /// (its readers are Slices), the deformable conv reads channels-last X and NCHW offsets.
    func testDeformableConvolutionWithOffsetBranch() throws {
        var b = Builder()
        b.graph.opsets[""] = 19
        let x = b.input("x", [2, 3, 11, 9])
        let features = b.node("Relu", [conv(&b, x, cin: 3, cout: 16)])
        let offsets = conv(&b, features, cin: 16, cout: 27)
        let axes = b.graph.valueNames.count
        b.graph.valueNames.append("axes")
        b.graph.initializers[axes] = Tensor(int64s: [1], shape: [1])
        func bound(_ v: Int64) -> Int {
            let id = b.graph.valueNames.count
            b.graph.valueNames.append("bound\(v)")
            b.graph.initializers[id] = Tensor(int64s: [v], shape: [1])
            return id
        }
        let offset = b.node("Slice", [offsets, bound(0), bound(18), axes])
        let mask = b.node("Sigmoid", [b.node("Slice", [offsets, bound(18), bound(27), axes])])
        let w = b.constant("dw", [16, 16, 3, 3])
        let deform = b.node("DeformConv", [features, w, offset, b.constant("db", [16]), mask], ["pads": .ints([1, 1, 1, 1])])
        b.output(b.node("GlobalAveragePool", [b.node("Relu", [b.node("Add", [deform, features])])]))
        let session = try SessionCore(graph: b.graph, options: SessionOptions(threads: 1))
        let graph = session.graph
        XCTAssertFalse(ops(graph).contains("Transpose"), "\(ops(graph))")
        let offsetConv = graph.nodes.firstIndex { $0.opType == "FusedConv" && graph.initializers[$0.inputs[1]!]?.shape.first == 27 }!
        XCTAssertTrue(layoutOf(graph, offsetConv) == (true, false))
        let deformable = graph.nodes.firstIndex { $0.opType == "FusedDeformConv" }!
        XCTAssertTrue(layoutOf(graph, deformable) == (true, true))
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// Concat on the channel axis of two channels-last values stays channels-last (axis 3).
    func testConcatOnChannels() throws {
        var b = Builder()
        let x = b.input("x", [1, 5, 6, 7])
        let joined = b.node("Concat", [conv(&b, x, cin: 5, cout: 16), conv(&b, x, cin: 5, cout: 3)], ["axis": .int(1)])
        b.output(b.node("GlobalAveragePool", [b.node("MaxPool", [joined], ["kernel_shape": .ints([2, 2])])]))
        var graph = b.graph
        XCTAssertTrue(try ChannelsLastLayout().apply(to: &graph))
        XCTAssertFalse(ops(graph).contains("Transpose"))
        if case .int(let axis)? = graph.nodes[2].attributes["axis"] { XCTAssertEqual(axis, 3) } else { XCTFail("axis") }
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// MobileNet-style blocks (1x1 expansion, depthwise 3x3 / 5x5 with stride, 1x1 projection,
    /// residual Add) on widths that are not multiples of 16: every convolution, depthwise ones
    /// included, stays channels-last; no Transpose anywhere.
    func testDepthwiseChainStaysChannelsLast() throws {
        var b = Builder()
        let x = b.input("x", [2, 8, 13, 11])
        let e = b.node("Relu", [conv(&b, x, cin: 8, cout: 24, kernel: 1)])
        let d = b.node("Relu", [conv(&b, e, cin: 24, cout: 24, group: 24)])
        let p = conv(&b, d, cin: 24, cout: 8, kernel: 1)
        let r = b.node("Add", [x, p])
        let e2 = b.node("Relu", [conv(&b, r, cin: 8, cout: 40, kernel: 1)])
        let d2 = conv(&b, e2, cin: 40, cout: 40, kernel: 5, stride: 2, group: 40)
        b.output(conv(&b, b.node("Relu", [d2]), cin: 40, cout: 72, kernel: 1))
        var graph = b.graph
        XCTAssertTrue(try ChannelsLastLayout().apply(to: &graph))
        XCTAssertFalse(ops(graph).contains("Transpose"), "\(ops(graph))")
        let convs = graph.nodes.indices.filter { graph.nodes[$0].opType == "FusedConv" }
        XCTAssertEqual(convs.count, 6)
        XCTAssertTrue(layoutOf(graph, convs[1]) == (true, true), "the first depthwise conv")
        XCTAssertTrue(layoutOf(graph, convs[4]) == (true, true), "the strided 5x5 depthwise conv")
        try assertSameOutputs(b.graph, [b.feed(x)])
    }

    /// Nothing to gain: a single conv whose output is a graph output is left alone.
    func testLoneConvolutionUnchanged() throws {
        var b = Builder()
        let x = b.input("x", [1, 2, 5, 5])
        b.output(conv(&b, x, cin: 2, cout: 3))
        var graph = b.graph
        XCTAssertFalse(try ChannelsLastLayout().apply(to: &graph))
    }
}
