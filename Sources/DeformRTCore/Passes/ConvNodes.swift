/// Where the weight, bias and (once fused) residual sit among a convolution node's inputs, for
/// every spelling the importer accepts. Fused nodes keep their spelling's slots.
struct ConvNodeSlots {
    let weight: Int
    /// nil: the spelling has no bias input (OpenVINO's DeformableConv2D).
    let bias: Int?
    /// The input a fused residual Add appends, after every input of the spelling.
    let residual: Int
    /// ConvTranspose: weight [C, M/group, k...], so output channels are weight.shape[1] * group.
    let isTransposed: Bool

    static let fusedDomain = "ai.deformrt"
    static let fusedConv = "FusedConv"
    static let fusedDeformConv = "FusedDeformConv"
    static let fusedConvTranspose = "FusedConvTranspose"

    /// The fused op type for a node whose own op is `baseOp`.
    static func fusedOpType(base baseOp: String) -> String {
        switch baseOp {
        case "Conv": return fusedConv
        case "ConvTranspose": return fusedConvTranspose
        default: return fusedDeformConv
        }
    }

    /// The slots of `node` if it is a convolution (plain, deformable or already fused).
    init?(_ node: Node) {
        var domain = node.domain, opType = node.opType
        if domain == Self.fusedDomain && [Self.fusedConv, Self.fusedDeformConv, Self.fusedConvTranspose].contains(opType) {
            guard case .string(let baseDomain)? = node.attributes["base_domain"],
                  case .string(let baseOp)? = node.attributes["base_op"] else { return nil }
            domain = baseDomain
            opType = baseOp
        }
        isTransposed = domain.isEmpty && opType == "ConvTranspose"
        switch (domain, opType) {
        case ("", "Conv"), ("", "ConvTranspose"): (weight, bias, residual) = (1, 2, 3)
        case ("", "DeformConv"): (weight, bias, residual) = (1, 3, 5)
        case ("mmcv", "MMCVModulatedDeformConv2d"), ("mmdeploy", "MMCVModulatedDeformConv2d"): (weight, bias, residual) = (3, 4, 5)
        case ("mmcv", "MMCVDeformConv2d"), ("mmdeploy", "MMCVDeformConv2d"): (weight, bias, residual) = (2, 3, 4)
        case ("org.openvinotoolkit", "DeformableConv2D"): (weight, bias, residual) = (2, nil, 4)
        default: return nil
        }
    }

    /// The node's own (domain, op_type) before any fusion.
    static func base(_ node: Node) -> (domain: String, opType: String) {
        if case .string(let domain)? = node.attributes["base_domain"], case .string(let op)? = node.attributes["base_op"] {
            return (domain, op)
        }
        return (node.domain, node.opType)
    }

    /// The names of the graph's nodes this node stands for (itself and what was fused into it).
    static func fusedNames(_ node: Node) -> [String] {
        if case .strings(let names)? = node.attributes["fused_nodes"] { return names }
        return [node.name]
    }
}
