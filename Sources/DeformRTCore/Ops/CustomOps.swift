import DeformRTKernels

/// An operator the caller supplies (C API drt_custom_op, Swift `CustomOperator`): a (domain,
/// op_type) pair with an opset range, a callback giving output types for input types, and one
/// computing into preallocated outputs. Sessions made with it run nodes that match it; the
/// built-in operators keep their own names (the ONNX and ai.deformrt domains cannot be used).
public final class CustomOperatorDefinition: @unchecked Sendable {
    public let domain: String
    public let opType: String
    public let opsets: ClosedRange<Int>
    /// Output types for the node's input types (nil: an omitted optional input) and its number of
    /// outputs. Called when a plan is made.
    public let outputTypes: (_ inputs: [ValueType?], _ outputCount: Int) throws -> [ValueType]
    /// Computes the outputs (tensors of the types `outputTypes` gave) from the inputs.
    public let compute: (_ inputs: [Tensor?], _ outputs: [Tensor]) throws -> Void

    public init(domain: String, opType: String, opsets: ClosedRange<Int>,
                outputTypes: @escaping (_ inputs: [ValueType?], _ outputCount: Int) throws -> [ValueType],
                compute: @escaping (_ inputs: [Tensor?], _ outputs: [Tensor]) throws -> Void) throws {
        let normalized = Importer.normalizedDomain(domain)
        if normalized.isEmpty || normalized == "ai.deformrt" {
            throw DeformRTError.invalidArgument("custom operator domain '\(domain)' is reserved (the ONNX domain and ai.deformrt hold the built-in operators); use your own, such as 'com.example'")
        }
        if opType.isEmpty { throw DeformRTError.invalidArgument("custom operator op_type is empty") }
        if opsets.lowerBound < 1 {
            throw DeformRTError.invalidArgument("custom operator \(domain)::\(opType): opset range must start at 1 or later, got \(opsets.lowerBound)")
        }
        self.domain = normalized
        self.opType = opType
        self.opsets = opsets
        self.outputTypes = outputTypes
        self.compute = compute
    }

    var label: String { "\(domain)::\(opType)" }
}

/// The Operator of a node matched by a custom definition: checks what the callbacks give.
final class CustomOperator: Operator {
    let definition: CustomOperatorDefinition
    let outputCount: Int
    /// The node's label and op type, for errors of `run` (those of `plan` are named by the planner).
    let node: String

    init(_ definition: CustomOperatorDefinition, node: Node) {
        self.definition = definition
        self.outputCount = node.outputs.count
        self.node = "node \(node.label) (\(node.opType))"
    }

    func plan(_ inputs: [PlanValue?]) throws -> [PlanValue] {
        let types = try definition.outputTypes(inputs.map { $0?.type }, outputCount)
        if types.count != outputCount {
            throw DeformRTError.invalidArgument("custom operator \(definition.label) gave \(types.count) output types for \(outputCount) outputs")
        }
        for (index, type) in types.enumerated() {
            if type.elementType == .string || type.elementType.byteSize == 0 {
                throw DeformRTError.invalidArgument("custom operator \(definition.label) gave output \(index) the element type \(type.elementType.onnxName), which DeformRT cannot hold")
            }
            if let dim = type.shape.first(where: { $0 < 0 }) {
                throw DeformRTError.invalidArgument("custom operator \(definition.label) gave output \(index) the shape \(type.shape) with the negative dim \(dim)")
            }
            do {
                _ = try Limits.elementCount(type.shape, what: "custom operator \(definition.label) output \(index)")
            } catch let error as DeformRTError {
                throw DeformRTError.invalidArgument(error.message)
            }
        }
        return types.map { PlanValue($0) }
    }

    func run(_ inputs: [Tensor?], _ outputs: [Tensor], _ context: RunContext) throws {
        do {
            try definition.compute(inputs, outputs)
        } catch let error as DeformRTError {
            throw DeformRTError(error.code, "\(node): \(error.message)")
        }
    }
}
