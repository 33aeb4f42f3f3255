import Glibc

/// What the profiler knows about one planned node: fixed when the plan is made, shared by every
/// event the node records.
public final class ProfiledNode: @unchecked Sendable {
    public let name: String
    /// "domain::op_type", or just op_type in the default domain.
    public let opType: String
    /// The model's nodes this one stands for (itself and what the graph passes fused into it).
    public let fusedNodes: [String]
    public let inputShapes: [[Int]]
    public let outputShapes: [[Int]]
    /// Multiply-adds count 2; nil when the op's FLOPs are not modelled.
    public let flops: Double?

    init(name: String, opType: String, fusedNodes: [String], inputShapes: [[Int]], outputShapes: [[Int]], flops: Double?) {
        self.name = name
        self.opType = opType
        self.fusedNodes = fusedNodes
        self.inputShapes = inputShapes
        self.outputShapes = outputShapes
        self.flops = flops
    }

    /// FLOPs of the ops whose cost is a product of shapes: convolutions (every spelling, fused or
    /// not: 2 x output elements x weight elements per output channel), MatMul and Gemm.
    static func estimatedFLOPs(_ node: Node, inputs: [[Int]?], outputs: [[Int]]) -> Double? {
        guard let output = outputs.first else { return nil }
        let outputElements = Double(output.reduce(1, *))
        if let slots = ConvNodeSlots(node), slots.weight < inputs.count, let weight = inputs[slots.weight], weight.count > 1 {
            // A transposed convolution: every input element meets weight.shape[1...] taps.
            if slots.isTransposed, let x = inputs[0] { return 2 * Double(x.reduce(1, *)) * Double(weight.dropFirst().reduce(1, *)) }
            return 2 * outputElements * Double(weight.dropFirst().reduce(1, *))
        }
        if node.domain == ConvNodeSlots.fusedDomain && node.opType == MatMulBiasFusion.fusedMatMul,
           let a = inputs.first ?? nil, let k = a.last {
            return 2 * outputElements * Double(k)
        }
        guard node.domain.isEmpty, inputs.count >= 2, let a = inputs[0], !a.isEmpty else { return nil }
        switch node.opType {
        case "MatMul":
            return 2 * outputElements * Double(a.last!)
        case "Gemm":
            guard a.count == 2 else { return nil }
            let transposed: Bool
            if case .int(let flag)? = node.attributes["transA"] { transposed = flag != 0 } else { transposed = false }
            return 2 * outputElements * Double(transposed ? a[0] : a[1])
        default:
            return nil
        }
    }
}

/// One timed piece of work: a node's run, or a whole run (`node` nil).
public struct ProfileEvent: Sendable {
    public let node: ProfiledNode?
    /// Nanoseconds since the session was made.
    public let start: UInt64
    public let duration: UInt64
}

/// Per-node timing for a session whose options ask for it (onnxruntime's enable_profiling). The
/// executor asks `isRecording` once per run, so a session without profiling pays one branch per
/// run and nothing per node.
public final class Profiler: @unchecked Sendable {
    let filePrefix: String
    private let origin: UInt64
    private(set) var isRecording = true
    private(set) var events: [ProfileEvent] = []

    init(filePrefix: String) {
        self.filePrefix = filePrefix
        origin = Profiler.now()
        events.reserveCapacity(4096)
    }

    @inline(__always)
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Events past this many are dropped, so a profiled session left running keeps bounded memory
    /// (about 50 MB of JSON).
    static let maxEvents = 1 << 20

    @inline(__always)
    func record(_ node: ProfiledNode?, from start: UInt64, to end: UInt64) {
        guard events.count < Profiler.maxEvents else { return }
        events.append(ProfileEvent(node: node, start: start &- origin, duration: end &- start))
    }

    /// Writes the events as a Chrome-trace JSON array (chrome://tracing, Perfetto) to
    /// "<prefix>_<local date>_<time>.json", stops recording, and returns the file's path.
    func finish() throws -> String {
        isRecording = false
        let path = filePrefix + "_" + Profiler.timestamp() + ".json"
        let json = Profiler.chromeTrace(events)
        events = []
        guard let file = fopen(path, "wb") else {
            throw DeformRTError.invalidArgument("cannot write the profile to '\(path)': \(String(cString: strerror(errno)))")
        }
        let bytes = Array(json.utf8)
        let written = fwrite(bytes, 1, bytes.count, file)
        let closed = fclose(file)
        if written != bytes.count || closed != 0 {
            throw DeformRTError.invalidArgument("writing the profile to '\(path)' failed")
        }
        return path
    }

    /// The events as onnxruntime writes its profiles: complete ("X") events in microseconds, cat
    /// "Session" for whole runs and "Node" for nodes, the node's details under "args".
    static func chromeTrace(_ events: [ProfileEvent]) -> String {
        let pid = Int(getpid())
        var out = "[\n"
        for (index, event) in events.enumerated() {
            let ts = microseconds(event.start), dur = microseconds(event.duration)
            out += "{\"cat\":\"\(event.node == nil ? "Session" : "Node")\",\"pid\":\(pid),\"tid\":0,\"dur\":\(dur),\"ts\":\(ts),\"ph\":\"X\","
            if let node = event.node {
                out += "\"name\":\(jsonString(node.name)),\"args\":{\"op_name\":\(jsonString(node.opType))"
                out += ",\"input_type_shape\":\(shapes(node.inputShapes)),\"output_type_shape\":\(shapes(node.outputShapes))"
                out += ",\"fused_nodes\":[" + node.fusedNodes.map(jsonString).joined(separator: ",") + "]"
                if let flops = node.flops { out += ",\"flops\":\(Int(flops))" }
                out += "}}"
            } else {
                out += "\"name\":\"model_run\",\"args\":{}}"
            }
            out += index + 1 < events.count ? ",\n" : "\n"
        }
        return out + "]\n"
    }

    private static func microseconds(_ nanoseconds: UInt64) -> String {
        let whole = nanoseconds / 1000, fraction = nanoseconds % 1000
        let digits = String(fraction)
        return "\(whole)." + String(repeating: "0", count: 3 - digits.count) + digits
    }

    private static func shapes(_ shapes: [[Int]]) -> String {
        "[" + shapes.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
    }

    static func jsonString(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    private static func timestamp() -> String {
        var seconds = time(nil)
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%d_%H-%M-%S", &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
