import DeformRTKernels

/// What the planner knows about one value: its type and shape, and its contents when they are
/// fixed for the plan (initializers, Constant nodes, Shape outputs and anything folded from them).
public struct PlanValue {
    public var type: ValueType
    public var constant: Tensor?

    public init(_ type: ValueType, constant: Tensor? = nil) {
        self.type = type
        self.constant = constant
    }

    var shape: [Int] { type.shape }
    var elementType: ElementType { type.elementType }

    /// Run-time tensors as known constants, so that `run` can reuse the checks and geometry of `plan`.
    static func constants(_ tensors: [Tensor?]) -> [PlanValue?] {
        tensors.map { t in t.map { PlanValue(ValueType($0.elementType, $0.shape), constant: $0) } }
    }
}

/// Scratch memory and threads available to one operator run.
public struct RunContext {
    public let parallel: Parallel
    public let workspace: UnsafeMutableRawPointer
    public let workspaceByteCount: Int
    /// What the operator's `runState` made for this plan (nil outside a plan, e.g. when folding).
    public var state: AnyObject? = nil
}

/// A value an operator's `runState` computed for its runs.
final class Planned<Value> {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// One node's implementation, made once per session from the node's attributes.
///
/// `plan` checks the inputs and gives output types (and constants when an output only depends on
/// shapes, like Shape's); `run` computes into preallocated outputs. Errors thrown by either are
/// prefixed with the node's name by the planner.
protocol Operator: AnyObject {
    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue]
    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int
    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws
    /// Everything `run` needs that depends only on this plan's shapes (geometry, packed weights),
    /// made once when the plan is made and handed to every run in `RunContext.state`, so run
    /// neither recomputes nor allocates it. `threads`: the Parallel every run gets. nil (the
    /// default): run works from its tensors.
    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject?

    /// Inputs whose contents, not only their shapes, decide the output shapes (Reshape's shape,
    /// Slice's starts, TopK's k). When one of them is computed from run-time data, the planner
    /// runs the graph up to this node and plans the rest with the contents then known
    /// (ExecutionPlan, "continuations"). Default: none.
    var shapeInputs: [Int] { get }
    /// Whether the output shapes depend on the input data (NonZero, NonMaxSuppression, Compress).
    /// Such a node runs with `runDynamic`, which makes its outputs, and the rest of the graph is
    /// planned with their shapes. Its `plan` is only called with constant inputs (folding).
    var outputShapesDependOnData: Bool { get }
    /// Computes the outputs of an operator whose output shapes depend on data, into new tensors.
    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor]
}

extension Operator {
    func workspaceByteCount(_ inputs: [ValueType?], _ outputs: [ValueType], threads: Int) -> Int { 0 }

    func runState(_ inputs: [PlanValue?], _ outputs: [ValueType], threads: Int) throws -> AnyObject? { nil }

    var shapeInputs: [Int] { [] }
    var outputShapesDependOnData: Bool { false }

    func runDynamic(_ inputs: [Tensor?], _ context: RunContext) throws -> [Tensor] {
        throw DeformRTError(.internal, "runDynamic called on an operator with planned output shapes")
    }

    /// `plan` of an operator whose output shapes depend on data: with constant inputs (folding),
    /// the outputs computed now as constants.
    func planByRunning(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        var tensors: [Tensor?] = []
        for value in inputs {
            guard let value else { tensors.append(nil); continue }
            guard let constant = value.constant else {
                throw DeformRTError(.internal, "the output shapes depend on run-time data and cannot be planned")
            }
            tensors.append(constant)
        }
        let scratch = TensorStorage(zeroedByteCount: 0)
        let outputs = try runDynamic(tensors, RunContext(parallel: .serial, workspace: scratch.bytes, workspaceByteCount: 0))
        return outputs.map { PlanValue(ValueType($0.elementType, $0.shape), constant: $0) }
    }

    /// The state of `run`: the plan's, or (outside a plan) made now from the tensors.
    func state<State: AnyObject>(_ context: RunContext, _ inputs: [Tensor?], as type: State.Type) throws -> State? {
        if let state = context.state { return unsafeDowncast(state, to: State.self) }
        return try runState(PlanValue.constants(inputs), [], threads: context.parallel.threads)
            .map { unsafeDowncast($0, to: State.self) }
    }

    /// Runs once on constant inputs, on the calling thread, into new tensors of the planned types
    /// (constant folding, by the planner and by the ConstantFolding pass).
    func compute(_ inputs: [Tensor?], planned outputs: [PlanValue]) throws -> [Tensor] {
        let tensors = try outputs.map { try Tensor(zeros: $0.type.elementType, shape: $0.type.shape) }
        let bytes = workspaceByteCount(inputs.map { $0.map { ValueType($0.elementType, $0.shape) } }, outputs.map(\.type), threads: 1)
        let scratch = TensorStorage(zeroedByteCount: bytes)
        try run(inputs, tensors, RunContext(parallel: .serial, workspace: scratch.bytes, workspaceByteCount: bytes))
        return tensors
    }

    /// Plans and computes on constant inputs; nil when an output would exceed `maxElements`.
    func evaluate(_ inputs: [Tensor?], maxElements: Int) throws -> [Tensor]? {
        let planned = try plan(PlanValue.constants(inputs))
        for value in planned where try Limits.elementCount(value.shape, what: "folded value") > maxElements { return nil }
        if planned.allSatisfy({ $0.constant != nil }) { return planned.map { $0.constant! } }
        return try compute(inputs, planned: planned)
    }
}

/// The node an operator is being made for, with its opset version and typed attribute access.
struct OperatorSpec {
    let node: Node
    let opset: Int
    var attributes: Attributes { Attributes(node) }

    func fail(_ message: String) -> DeformRTError {
        .invalidModel("node \(node.label) (\(node.opType)): \(message)")
    }
}

typealias OperatorFactory = (OperatorSpec) throws -> Operator

struct OperatorKey: Hashable {
    let domain: String
    let opType: String
}

/// Helpers shared by the operators' `plan` methods.
enum PlanCheck {
    static func input(_ inputs: [PlanValue?], _ index: Int, _ name: String) throws -> PlanValue {
        guard index < inputs.count, let value = inputs[index] else {
            throw DeformRTError.invalidModel("missing required input \(index) (\(name))")
        }
        return value
    }

    static func optionalInput(_ inputs: [PlanValue?], _ index: Int) -> PlanValue? {
        index < inputs.count ? inputs[index] : nil
    }

    static func float(_ value: PlanValue, _ name: String) throws {
        if value.elementType != .float {
            throw DeformRTError.unsupported("input \(name) is \(value.elementType.onnxName); only float is supported")
        }
    }

    static func rank(_ value: PlanValue, _ rank: Int, _ name: String) throws {
        if value.shape.count != rank {
            throw DeformRTError.invalidModel("input \(name) must have rank \(rank), got shape \(value.shape)")
        }
    }

    /// Normalises a possibly negative axis for a tensor of `rank` dims (a scalar has no axis).
    static func axis(_ axis: Int, rank: Int, _ what: String = "axis") throws -> Int {
        let a = axis < 0 ? axis + rank : axis
        if a < 0 || a >= rank {
            throw DeformRTError.invalidModel("\(what) \(axis) is out of range for rank \(rank)")
        }
        return a
    }

    /// The contents of a shape-like input that must be known when planning.
    static func constantInts(_ value: PlanValue, _ name: String) throws -> [Int] {
        guard let constant = value.constant else {
            throw DeformRTError.unsupported("input \(name) must be computable from shapes and constants when planning; it depends on run-time data")
        }
        return try constant.integerValues().map { Int(clamping: $0) }
    }
}
