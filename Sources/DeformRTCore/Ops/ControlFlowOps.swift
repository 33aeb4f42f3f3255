import DeformRTKernels
import Glibc

// Control flow: If and Loop. Their subgraphs are imported like the main graph (Importer: the
// outer-scope values a subgraph reads are its last inputs and its node's last inputs) and each
// becomes a session of its own, made (and so checked: operators, attributes, order) when the
// node's operator is made. Both run with `runDynamic`: which branch runs, and how often a body
// runs, are decided by data, so the plan stops at them and plans what follows with the shapes
// they produced (ExecutionPlan). A subgraph's own plans are cached in its session by its input
// shapes, so a Loop whose carried values keep their shapes plans its body once.

enum Subgraph {
    /// A session for the subgraph `name` of the node (one thread: the bodies exporters write are
    /// post-processing, and the outer run's threads are busy in the caller).
    static func session(_ spec: OperatorSpec, _ name: String) throws -> SessionCore {
        guard let graph = try spec.attributes.graph(name) else { throw spec.fail("missing subgraph attribute \(name)") }
        do {
            return try SessionCore(graph: graph, options: SessionOptions(threads: 1))
        } catch let error as DeformRTError {
            throw DeformRTError(error.code, "node \(spec.node.label) (\(spec.node.opType)): subgraph '\(name)': \(error.message)")
        }
    }

    /// Runs `session` with `values` fed to its inputs in order; its outputs, in order.
    static func run(_ session: SessionCore, _ values: [Tensor]) throws -> [Tensor] {
        let inputs = session.graph.inputs
        return try session.run(feeds: zip(inputs, values).map { ($0.name, $1) }, outputNames: nil)
    }

    /// A scalar for subgraph input `index`: shape [1] when it is declared so, else [].
    static func scalarShape(_ session: SessionCore, _ index: Int) -> [Int] {
        session.graph.inputs[index].shape == [1] ? [1] : []
    }

    static func bool(_ tensor: Tensor, _ what: String) throws -> Bool {
        if tensor.elementType != .bool || tensor.elementCount != 1 {
            throw DeformRTError.invalidModel("\(what) must be one bool, got tensor(\(tensor.elementType.onnxName)) of shape \(tensor.shape)")
        }
        return tensor.pointer(UInt8.self)[0] != 0
    }
}

/// If: runs then_branch or else_branch on the outer-scope values they read; the branches must
/// have as many outputs as the node (checked when the session is made).
final class IfOperator: Operator {
    let thenBranch: SessionCore
    let elseBranch: SessionCore

    init(_ spec: OperatorSpec) throws {
        thenBranch = try Subgraph.session(spec, "then_branch")
        elseBranch = try Subgraph.session(spec, "else_branch")
        let counts = (thenBranch.graph.outputs.count, elseBranch.graph.outputs.count)
        if counts.0 != counts.1 {
            throw spec.fail("then_branch has \(counts.0) outputs and else_branch \(counts.1); they must agree")
        }
        if counts.0 != spec.node.outputs.count {
            throw spec.fail("the branches have \(counts.0) outputs, the node \(spec.node.outputs.count)")
        }
        if spec.node.inputs.count - spec.node.implicitInputCount != 1 {
            throw spec.fail("If takes one input (cond), got \(spec.node.inputs.count - spec.node.implicitInputCount)")
        }
    }

    var outputShapesDependOnData: Bool { true }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] { try planByRunning(inputs) }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        throw DeformRTError(.internal, "If runs with runDynamic")
    }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        guard let cond = inputs.first ?? nil else { throw DeformRTError.invalidModel("missing required input 0 (cond)") }
        let branch = try Subgraph.bool(cond, "cond") ? thenBranch : elseBranch
        let outer = inputs.dropFirst().map { $0! }
        return try Subgraph.run(branch, outer)
    }
}

/// Loop: runs the body while the trip count (input M, absent: no bound) and the condition
/// (input cond, then the body's first output; absent: not checked) allow, carrying N values
/// from one iteration to the next; the K scan outputs are stacked along a new first axis (as
/// onnxruntime; with no iteration, [0] + the body's declared output shape).
/// A Loop that has run `iterationLimit` times without ending is an error naming the node.
final class LoopOperator: Operator {
    let body: SessionCore
    let carried: Int
    let scans: Int
    let iterationLimit: Int

    /// The default limit on a Loop's iterations; the environment variable
    /// DEFORMRT_LOOP_ITERATION_LIMIT (read when a session is made) sets another.
    static let defaultIterationLimit = 1_000_000

    init(_ spec: OperatorSpec) throws {
        body = try Subgraph.session(spec, "body")
        let formal = body.graph.inputs.count - body.graph.implicitInputCount
        if formal < 2 { throw spec.fail("the body must take the iteration number and the condition first; it has \(formal) inputs") }
        carried = formal - 2
        let explicit = spec.node.inputs.count - spec.node.implicitInputCount
        if explicit != 2 + carried {
            throw spec.fail("the node has \(explicit) inputs; its body carries \(carried) values, so it needs \(2 + carried) (M, cond, the values)")
        }
        scans = body.graph.outputs.count - 1 - carried
        if scans < 0 { throw spec.fail("the body has \(body.graph.outputs.count) outputs, fewer than its condition and \(carried) carried values") }
        if spec.node.outputs.count != carried + scans {
            throw spec.fail("the node has \(spec.node.outputs.count) outputs, the body gives \(carried) carried values and \(scans) scan outputs")
        }
        if let text = getenv("DEFORMRT_LOOP_ITERATION_LIMIT"), let limit = Int(String(cString: text)), limit >= 0 {
            iterationLimit = limit
        } else {
            iterationLimit = LoopOperator.defaultIterationLimit
        }
    }

    var outputShapesDependOnData: Bool { true }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] { try planByRunning(inputs) }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        throw DeformRTError(.internal, "Loop runs with runDynamic")
    }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        var tripCount: Int64?
        if let m = inputs[0], m.elementCount > 0 {
            if m.elementType != .int64 || m.elementCount != 1 {
                throw DeformRTError.invalidModel("M must be one int64, got tensor(\(m.elementType.onnxName)) of shape \(m.shape)")
            }
            tripCount = m.pointer(Int64.self)[0]
        }
        var condition = true
        let checksCondition = inputs[1] != nil
        if let cond = inputs[1] { condition = try Subgraph.bool(cond, "cond") }
        var values: [Tensor] = []
        for i in 0..<carried {
            guard let v = inputs[2 + i] else { throw DeformRTError.invalidModel("loop-carried input \(i) is missing") }
            values.append(v)
        }
        let outer = inputs[(2 + carried)...].map { $0! }
        var scanned = [[Tensor]](repeating: [], count: scans)
        let iterShape = Subgraph.scalarShape(body, 0), condShape = Subgraph.scalarShape(body, 1)
        var iteration: Int64 = 0
        while condition && (tripCount == nil || iteration < tripCount!) {
            if iteration >= Int64(iterationLimit) {
                throw DeformRTError.invalidArgument("the loop has run \(iterationLimit) iterations without ending (the limit; set DEFORMRT_LOOP_ITERATION_LIMIT for another)")
            }
            let iterTensor = Tensor(int64s: [iteration], shape: iterShape)
            let condTensor = Tensor(elementType: .bool, shape: condShape, storage: TensorStorage(zeroedByteCount: 1))
            condTensor.pointer(UInt8.self)[0] = 1
            let out = try Subgraph.run(body, [iterTensor, condTensor] + values + outer)
            if checksCondition { condition = try Subgraph.bool(out[0], "the body's condition output") }
            values = Array(out[1..<(1 + carried)])
            for k in 0..<scans {
                let part = out[1 + carried + k]
                if let first = scanned[k].first, first.shape != part.shape || first.elementType != part.elementType {
                    throw DeformRTError.invalidModel("scan output \(k) is \(part.elementType.onnxName) \(part.shape) in iteration \(iteration), \(first.elementType.onnxName) \(first.shape) before")
                }
                scanned[k].append(part)
            }
            iteration += 1
        }
        var results = values
        for k in 0..<scans {
            guard let first = scanned[k].first else {
                // No iteration: an empty stack of the declared type (float if undeclared).
                let declared = body.graph.outputs[1 + carried + k]
                let inner = (declared.shape ?? []).allSatisfy { $0 >= 0 } ? (declared.shape ?? []) : []
                results.append(try Tensor(zeros: declared.elementType ?? .float, shape: [0] + inner))
                continue
            }
            // Stacked along a new first axis (scalars into [iterations], as onnxruntime; onnx.reference
            // makes that [iterations, 1]).
            let shape = [scanned[k].count] + first.shape
            _ = try Limits.elementCount(shape, what: "scan output \(k)")
            let stacked = try Tensor(zeros: first.elementType, shape: shape)
            for (i, part) in scanned[k].enumerated() where part.byteCount > 0 {
                (stacked.rawPointer + i * part.byteCount).copyMemory(from: part.rawPointer, byteCount: part.byteCount)
            }
            results.append(stacked)
        }
        return results
    }
}
