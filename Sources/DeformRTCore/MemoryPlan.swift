import DeformRTKernels

/// Plan stage 2: where every intermediate lives. Reshape-like nodes on intermediates become views
/// (no step runs for them), the remaining nodes are the steps, each intermediate gets a place
/// in one arena by its lifetime (greedy, largest first), and the workspace is the largest any
/// step needs. Everything is checked against the session's memory budget before allocating.
struct MemoryPlan {
    /// Positions in the session's order of the nodes that run as steps.
    let steps: [Int]
    /// Per value id: the value whose memory a view uses.
    let aliasOf: [Int?]
    /// Per value id: the first step that writes it (-1: not written by a step).
    let firstStep: [Int]
    let blocks: [ArenaBlock]
    let arenaBytes: Int
    let workspaceBytes: Int

    /// Nodes whose output is their first input's elements in the same order (ai.onnx Reshape,
    /// Flatten, Squeeze, Unsqueeze, Identity): run as views of an intermediate input.
    static func isView(_ node: Node) -> Bool {
        guard node.domain.isEmpty, node.outputs.count == 1 else { return false }
        switch node.opType {
        case "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity": return true
        default: return false
        }
    }

    init(session: SessionCore, shapes: ShapeInference, budget: inout MemoryBudget) throws {
        let graph = session.graph
        let valueCount = graph.valueNames.count
        let known = shapes.known, isGraphOutput = shapes.isGraphOutput
        var runtimeNodes = shapes.runtimeNodes
        // Reshape-like nodes on intermediates run as views: their output is the input's memory
        // under another shape (aliasOf: the value that owns the memory), and no step runs.
        var aliasOf = [Int?](repeating: nil, count: valueCount)
        var producedAtRunTime = [Bool](repeating: false, count: valueCount)
        runtimeNodes = runtimeNodes.filter { position in
            let node = graph.nodes[session.order[position]]
            if MemoryPlan.isView(node), let input = node.inputs.first ?? nil, producedAtRunTime[input],
               let output = node.outputs.first, !isGraphOutput[output] {
                let owner = aliasOf[input] ?? input
                if !isGraphOutput[owner] {
                    aliasOf[output] = owner
                    producedAtRunTime[output] = true
                    return false
                }
            }
            for id in node.outputs { producedAtRunTime[id] = true }
            return true
        }

        // Pass 2: lifetimes of the intermediates that live in the arena (a view's readers keep
        // its owner alive).
        var firstStep = [Int](repeating: -1, count: valueCount)
        var lastStep = [Int](repeating: -1, count: valueCount)
        for (stepIndex, position) in runtimeNodes.enumerated() {
            let node = graph.nodes[session.order[position]]
            for id in node.outputs where firstStep[id] < 0 { firstStep[id] = stepIndex; lastStep[id] = stepIndex }
            for case let read? in node.inputs {
                let id = aliasOf[read] ?? read
                if firstStep[id] >= 0 { lastStep[id] = stepIndex }
            }
        }
        // Values the rest of the graph reads after a barrier live to the end of this plan.
        for id in shapes.barrier?.crossing ?? [] {
            let owner = aliasOf[id] ?? id
            if firstStep[owner] >= 0 { lastStep[owner] = runtimeNodes.count - 1 }
        }
        var blocks: [ArenaBlock] = []
        for id in 0..<valueCount where firstStep[id] >= 0 && !isGraphOutput[id] {
            let type = known[id]!.type
            let bytes = try Limits.byteCount(type.shape.reduce(1, *), elementSize: type.elementType.byteSize, what: graph.valueNames[id])
            blocks.append(ArenaBlock(value: id, bytes: bytes, first: firstStep[id], last: lastStep[id]))
        }
        let arenaBytes = ArenaBlock.assignOffsets(&blocks)
        try budget.add(arenaBytes)
        var workspaceBytes = 0
        for position in runtimeNodes {
            let node = graph.nodes[session.order[position]]
            let inputs = node.inputs.map { $0.flatMap { known[$0]?.type } }
            let outputs = node.outputs.map { known[$0]!.type }
            workspaceBytes = max(workspaceBytes, session.operators[position].workspaceByteCount(inputs, outputs, threads: session.parallel.threads))
        }
        try budget.add(workspaceBytes)
        // Graph outputs this plan computes (those past a barrier are the next plan's).
        for output in graph.outputs where firstStep[output.id] >= 0 {
            let type = known[output.id]!.type
            try budget.add(try Limits.byteCount(type.shape.reduce(1, *), elementSize: type.elementType.byteSize, what: output.name))
        }
        steps = runtimeNodes
        self.aliasOf = aliasOf
        self.firstStep = firstStep
        self.blocks = blocks
        self.arenaBytes = arenaBytes
        self.workspaceBytes = workspaceBytes
    }
}

/// Keeps the bytes a plan holds under the session's memory limit, checked before allocating.
struct MemoryBudget {
    let limit: UInt64
    var used: UInt64 = 0

    mutating func add(_ bytes: Int) throws {
        let (total, overflow) = used.addingReportingOverflow(UInt64(max(0, bytes)))
        if overflow || total > limit {
            throw DeformRTError(.outOfMemory, "planning needs more than the session's memory limit of \(limit) bytes")
        }
        used = total
    }
}

/// An intermediate value's place in the arena and the steps during which it is alive.
struct ArenaBlock {
    let value: Int
    let bytes: Int
    let first: Int
    let last: Int
    var offset = 0

    static let alignment = 64

    /// Greedy by size (largest first): each block takes the lowest offset that does not overlap a
    /// block already placed whose lifetime intersects its own. Returns the arena size.
    static func assignOffsets(_ blocks: inout [ArenaBlock]) -> Int {
        let order = blocks.indices.sorted { blocks[$0].bytes != blocks[$1].bytes ? blocks[$0].bytes > blocks[$1].bytes : $0 < $1 }
        var placed: [Int] = []
        var total = 0
        for index in order {
            let size = (blocks[index].bytes + alignment - 1) / alignment * alignment
            let conflicts = placed.filter { blocks[$0].first <= blocks[index].last && blocks[index].first <= blocks[$0].last }
                .sorted { blocks[$0].offset < blocks[$1].offset }
            var offset = 0
            for other in conflicts {
                let otherEnd = blocks[other].offset + (blocks[other].bytes + alignment - 1) / alignment * alignment
                if offset + size <= blocks[other].offset { break }
                offset = max(offset, otherEnd)
            }
            blocks[index].offset = offset
            total = max(total, offset + size)
            placed.append(index)
        }
        return total
    }
}
