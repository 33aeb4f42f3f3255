/// How far the graph is rewritten before it is planned; onnxruntime's levels and numbering.
public enum GraphOptimizationLevel: Int, Sendable, Comparable, CaseIterable {
    /// The graph runs as imported.
    case disabled = 0
    /// Rewrites that keep every operator: constant folding, redundant and dead nodes removed.
    case basic = 1
    /// Fusions: BatchNormalization and per-channel Mul/Add into convolution weights, residual Add
    /// and activations into the convolution's epilogue.
    case extended = 2
    /// Everything, and activations kept channels-last between the operators that have that form.
    case all = 99

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// One graph rewrite. A pass keeps the graph's inputs, outputs and results; it returns whether it
/// changed anything.
protocol GraphPass {
    var name: String { get }
    var level: GraphOptimizationLevel { get }
    func apply(to graph: inout Graph) throws -> Bool
}

/// Runs the passes of a level in order (one file per pass in this folder).
public enum GraphOptimizer {
    static let passes: [GraphPass] = [
        ConstantFolding(),
        StaticShapeFolding(),
        ConstantFolding(),
        RedundantNodeElimination(),
        DeadCodeElimination(),
        ConvAffineFolding(),
        GemmAffineFolding(),
        MatMulBiasFusion(),
        ConvEpilogueFusion(),
        DeformableOffsetFusion(),
        DCNv3Decomposition(),
        MultiScaleDeformableAttentionDecomposition(),
        ChannelsLastLayout(),
        DeadCodeElimination(),
    ]

    /// The graph after every pass up to `level`. The input graph must already be checked
    /// (GraphCheck): the passes rely on each value having one producer and no cycles.
    public static func optimize(_ graph: Graph, level: GraphOptimizationLevel) throws -> Graph {
        var optimized = graph
        for pass in passes where pass.level <= level {
            _ = try pass.apply(to: &optimized)
        }
        return optimized
    }
}
