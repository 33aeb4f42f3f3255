import ArgumentParser
import DeformRT
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@main
struct DeformRTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deformrt",
        abstract: "Inspect and run ONNX models with deformable convolutions.",
        version: deformRTVersion,
        subcommands: [Info.self, Run.self, Bench.self, Convert.self, Analyze.self])
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the version and CPU tier, and a model's inputs, outputs, operators, opsets and parameter count.")

    @Argument(help: "The .onnx model file (without it: only the version and CPU tier).")
    var model: String?

    @Flag(help: "List the graph a session runs after the graph passes (fused nodes show what they stand for).")
    var optimized = false

    @Option(help: "Optimisation level for --optimized: disabled, basic, extended or all.")
    var level: String = "all"

    @Option(help: "With --optimized: also write the optimised graph to this .onnx file.")
    var save: String?

    func run() throws {
        print("deformrt \(deformRTVersion), cpu tier: \(cpuTierDescription())")
        guard let model else { return }
        let loaded = try cliTry { try Model(path: model) }
        if optimized { return try listOptimized(loaded, path: model) }
        let summary = loaded.summary
        print("model: \(model)")
        print("opsets: " + summary.opsets.map { "\($0.domain.isEmpty ? "ai.onnx" : $0.domain) \($0.version)" }.joined(separator: ", "))
        print("inputs:")
        for input in loaded.inputs { print("  \(describe(input))") }
        print("outputs:")
        for output in loaded.outputs { print("  \(describe(output))") }
        print("operators (\(summary.operatorCounts.reduce(0) { $0 + $1.count }) nodes):")
        for entry in summary.operatorCounts {
            print("  \(entry.count)\t\(entry.domain.isEmpty ? "" : entry.domain + "::")\(entry.opType)")
        }
        print("parameters: \(summary.parameterCount) (\(summary.initializerCount) initializers)")
    }

    private func listOptimized(_ loaded: Model, path model: String) throws {
        let chosen = try optimizationLevel(named: level)
        let session = try cliTry { try Session(model: loaded, threads: 1, graphOptimizationLevel: chosen) }
        let graph = session.optimizedGraph
        print("model: \(model) (optimisation level \(level))")
        print("nodes (\(graph.nodes.count), \(graph.initializerCount) initializers):")
        for node in graph.nodes {
            let op = (node.domain.isEmpty ? "" : node.domain + "::") + node.opType
            let fused = node.fusedNodes.count > 1 ? "  [fused: \(fusedList(node.fusedNodes))]" : ""
            print("  \(node.name)\t\(op)\t(\(node.inputs.joined(separator: ", "))) -> (\(node.outputs.joined(separator: ", ")))\(fused)")
        }
        if let save {
            let bytes = try cliTry { try graph.serializedONNX() }
            guard let file = fopen(save, "wb") else { throw ValidationError("error: cannot write '\(save)'") }
            defer { fclose(file) }
            if fwrite(bytes, 1, bytes.count, file) != bytes.count { throw ValidationError("error: writing '\(save)' failed") }
            print("saved: \(save)")
        }
    }

    /// The tier this tool runs (build/bin/deformrt starts the copy for the CPU, as the library's
    /// dispatcher does), what the CPU supports, and DEFORMRT_CPU if set.
    private func cpuTierDescription() -> String {
        let widest = CPUTier.widestSupported?.rawValue ?? "none (below x86-64-v2)"
        var text = "\(CPUTier.compiled.rawValue) (CPU supports up to \(widest)"
        if let forced = getenv("DEFORMRT_CPU") { text += "; DEFORMRT_CPU=\(String(cString: forced))" }
        return text + ")"
    }

    private func describe(_ info: ValueInfo) -> String {
        let type = info.elementType.map { "tensor(\($0.onnxName))" } ?? "tensor(?)"
        let shape = info.shape.map { "[" + $0.map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]" } ?? "[unknown]"
        return "\(info.name): \(type) \(shape)"
    }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rewrite mmcv / mmdeploy deformable convolutions as standard ONNX DeformConv (opset 19).",
        discussion: """
            The result runs in any runtime with ONNX DeformConv. A model of an older opset (11 and up) \
            is moved to opset 19. OpenVINO's DeformableConv2D is refused: its border rule differs.
            """)

    @Argument(help: "The .onnx model to read.")
    var input: String

    @Argument(help: "The .onnx file to write.")
    var output: String

    func run() throws {
        let converted = try cliTry { try Model(path: input).standardONNX() }
        guard let file = fopen(output, "wb") else { throw ValidationError("error: cannot write '\(output)'") }
        defer { fclose(file) }
        let bytes = converted.bytes
        if fwrite(bytes, 1, bytes.count, file) != bytes.count { throw ValidationError("error: writing '\(output)' failed") }
        let opset = converted.opsetBefore < 19 ? " (ai.onnx opset \(converted.opsetBefore) -> 19)" : ""
        print("\(output): \(converted.rewrittenNodes.count) deformable convolution(s) rewritten as DeformConv\(opset)")
        for name in converted.rewrittenNodes { print("  \(name)") }
    }
}

struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Each deformable layer's effective dilation and offset statistics on given inputs.",
        discussion: """
            Effective dilation is DCNv1's Table 2 measure: the mean distance, in input-map pixels, \
            between adjacent sampling locations of the filter (over every output position and offset \
            group of the first batch item); a plain 3x3 convolution with dilation d gives d.
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Option(name: .customLong("input"), help: "An input as name=file.npy (repeat for each input).")
    var inputs: [String] = []

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    func run() throws {
        let loaded = try cliTry { try Model(path: model) }
        let layers = try cliTry { try loaded.deformableLayers() }
        if layers.isEmpty { throw ValidationError("error: the model has no deformable convolution") }
        let feeds = try readFeeds(inputs)
        let wanted = Array(Set(layers.flatMap { [$0.input, $0.offset] + ($0.mask.map { [$0] } ?? []) }).subtracting(feeds.keys)).sorted()
        let session = try cliTry { try Session(model: loaded, threads: threads, extraOutputs: wanted) }
        var values = try cliTry { try session.run(feeds, outputs: wanted) }
        values.merge(feeds) { current, _ in current }
        print(padded("layer", 32) + " kernel  dilation  effective  |offset| mean     max  mask mean")
        for layer in layers {
            guard let input = values[layer.input], let offset = values[layer.offset], input.shape.count == 4, offset.shape.count == 4 else {
                throw ValidationError("error: layer \(layer.name): its input or offsets are not 4-D values this run produced")
            }
            let perItem = offset.elementCount / max(offset.shape[0], 1)
            let scalars = try cliTry { try offset.scalars }
            let locations = try cliTry {
                try scalars.withUnsafeBufferPointer {
                    try layer.samplingLocations(offsets: UnsafeBufferPointer(rebasing: $0[0..<perItem]),
                                                outputSize: Array(offset.shape[2...]), inputSize: Array(input.shape[2...]))
                }
            }
            let effective = effectiveDilation(locations, kernel: layer.kernel)
            let magnitudes = scalars[0..<perItem].map { abs($0) }
            let mean = magnitudes.reduce(0, +) / Float(max(magnitudes.count, 1))
            var mask = "-"
            if let name = layer.mask, let m = values[name] {
                let sum = try cliTry { try m.scalars }.reduce(0, +)
                mask = fixed(Double(sum) / Double(max(m.elementCount, 1)), 3)
            }
            let name = padded(String(layer.name.prefix(32)), 32)
            print("\(name) \(layer.kernel[0])x\(layer.kernel[1])    \(layer.dilations[0])x\(layer.dilations[1])      \(fixed(effective, 3))      \(fixed(Double(mean), 3))   \(fixed(Double(magnitudes.max() ?? 0), 2))  \(mask)")
        }
    }

    /// Mean distance between horizontally and vertically adjacent taps.
    private func effectiveDilation(_ locations: [[[(y: Float, x: Float)]]], kernel: [Int]) -> Double {
        var total = 0.0, count = 0
        for group in locations {
            for taps in group {
                for i in 0..<kernel[0] {
                    for j in 0..<kernel[1] {
                        let here = taps[i * kernel[1] + j]
                        for (di, dj) in [(0, 1), (1, 0)] where i + di < kernel[0] && j + dj < kernel[1] {
                            let there = taps[(i + di) * kernel[1] + j + dj]
                            total += Double(((there.y - here.y) * (there.y - here.y) + (there.x - here.x) * (there.x - here.x)).squareRoot())
                            count += 1
                        }
                    }
                }
            }
        }
        return count == 0 ? 0 : total / Double(count)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a model on .npy inputs and write each output as OUTPUT_NAME.npy.")

    @Argument(help: "The .onnx model file.")
    var model: String

    @Option(name: .customLong("input"), help: "An input as name=file.npy (repeat for each input).")
    var inputs: [String] = []

    @Option(name: .customLong("output-dir"), help: "Folder for the output .npy files.")
    var outputDirectory: String = "."

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    func run() throws {
        let loaded = try cliTry { try Model(path: model) }
        let session = try cliTry { try Session(model: loaded, threads: threads) }
        let outputs = try cliTry { try session.run(try readFeeds(inputs)) }
        for output in loaded.outputs {
            guard let tensor = outputs[output.name] else { continue }
            let safeName = String(output.name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
            let path = outputDirectory + "/" + safeName + ".npy"
            try cliTry { try NPY.write(tensor, path: path) }
            print("\(output.name): \(tensor.elementType.onnxName) \(tensor.shape) -> \(path)")
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time a model on random inputs: latency min / median / p90, and with --profile where the time goes.")

    @Argument(help: "The .onnx model file.")
    var model: String

    @Option(name: .customLong("shape"), help: "An input's shape as name=1x3x512x512 (repeat per input; needed for dynamic dims).")
    var shapes: [String] = []

    @Option(help: "Threads (default: all cores).")
    var threads: Int?

    @Option(help: "Timed runs.")
    var runs: Int = 20

    @Option(help: "Untimed runs before the timed ones.")
    var warmup: Int = 3

    @Option(help: "Optimisation level: disabled, basic, extended or all.")
    var level: String = "all"

    @Option(help: "Seed of the random inputs.")
    var seed: UInt64 = 0

    @Flag(help: "Profile the timed runs: time per op type and per node, and a Chrome-trace file.")
    var profile = false

    @Option(help: "With --profile: the trace file's prefix (\"<prefix>_<date>_<time>.json\").")
    var traceFilePrefix: String = "deformrt_profile"

    func validate() throws {
        guard runs >= 1, runs <= 1_000_000 else { throw ValidationError("--runs must be 1...1000000, got \(runs)") }
        guard warmup >= 0, warmup <= 1_000_000 else { throw ValidationError("--warmup must be 0...1000000, got \(warmup)") }
    }

    func run() throws {
        let chosen = try optimizationLevel(named: level)
        let loaded = try cliTry { try Model(path: model) }
        let shapeOf = try parseShapes(loaded)
        var random = SplitMix(seed: seed)
        var feeds: [String: Tensor] = [:]
        for input in loaded.inputs {
            feeds[input.name] = try randomTensor(input, shape: shapeOf[input.name]!, random: &random)
        }
        let created = monotonicSeconds()
        let session = try cliTry {
            try Session(model: loaded, threads: threads, graphOptimizationLevel: chosen,
                        profileFilePrefix: profile ? traceFilePrefix : nil)
        }
        let creation = monotonicSeconds() - created
        let firstStart = monotonicSeconds()
        _ = try cliTry { try session.run(feeds) }
        let first = monotonicSeconds() - firstStart
        let progress = ProgressBar(total: warmup + runs)
        progress.advance()
        for _ in 0..<warmup {
            _ = try cliTry { try session.run(feeds) }
            progress.advance()
        }
        let untimedEvents = session.profileEvents.count
        var latencies: [Double] = []
        for _ in 0..<runs {
            let start = monotonicSeconds()
            _ = try cliTry { try session.run(feeds) }
            latencies.append(monotonicSeconds() - start)
            progress.advance()
        }
        progress.finish()

        latencies.sort()
        print("model: \(model)")
        print("inputs: " + loaded.inputs.map { "\($0.name)=" + shapeOf[$0.name]!.map(String.init).joined(separator: "x") }.joined(separator: ", "))
        print("threads: \(threads.map(String.init) ?? "all cores"), optimisation: \(level), runs: \(runs) after \(warmup) warm-up")
        print("session creation: \(milliseconds(creation)) ms, first run: \(milliseconds(first)) ms")
        print("latency ms: min \(milliseconds(latencies[0])), median \(milliseconds(percentile(latencies, 0.5))), " +
              "p90 \(milliseconds(percentile(latencies, 0.9))), mean \(milliseconds(latencies.reduce(0, +) / Double(runs)))")
        if profile {
            ProfileReport(events: Array(session.profileEvents.dropFirst(untimedEvents)), runs: runs).print()
            let path = try cliTry { try session.endProfiling() }
            print("trace (chrome://tracing, Perfetto): \(path)")
        }
    }

    /// Every input's shape: from --shape, else its declared shape when that is fully static.
    private func parseShapes(_ loaded: Model) throws -> [String: [Int]] {
        var given: [String: [Int]] = [:]
        for spec in shapes {
            guard let equals = spec.firstIndex(of: "=") else { throw ValidationError("--shape must be name=AxBxC, got '\(spec)'") }
            let name = String(spec[..<equals])
            let dims = spec[spec.index(after: equals)...].split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard !dims.contains(where: { $0 == nil || $0! < 0 }) else {
                throw ValidationError("--shape \(name): dims must be non-negative integers separated by 'x', got '\(spec)'")
            }
            guard loaded.inputs.contains(where: { $0.name == name }) else {
                throw ValidationError("--shape names '\(name)', which is not an input (inputs: \(loaded.inputs.map(\.name).joined(separator: ", ")))")
            }
            given[name] = dims.map { $0! }
        }
        var result: [String: [Int]] = [:]
        for input in loaded.inputs {
            if let shape = given[input.name] {
                if let declared = input.shape, declared.count != shape.count || zip(declared, shape).contains(where: { $0 >= 0 && $0 != $1 }) {
                    throw ValidationError("--shape \(input.name): the model declares \(declaredText(declared)), got \(shape)")
                }
                result[input.name] = shape
            } else if let declared = input.shape, !declared.contains(-1) {
                result[input.name] = declared
            } else {
                throw ValidationError("input '\(input.name)' has shape \(input.shape.map(declaredText) ?? "[unknown]"): give it with --shape \(input.name)=AxBxC")
            }
        }
        return result
    }

    private func declaredText(_ shape: [Int]) -> String { "[" + shape.map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]" }

    /// Floats uniform in [-1, 1); integers uniform in [0, 8); bools half true.
    private func randomTensor(_ input: ValueInfo, shape: [Int], random: inout SplitMix) throws -> Tensor {
        let type = input.elementType ?? .float
        let count = shape.reduce(1, *)
        guard count <= 1 << 31 else { throw ValidationError("input '\(input.name)': \(count) elements is too many") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * max(1, type.byteSize))
        func append<T>(_ value: T) { withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) } }
        for _ in 0..<count {
            let unit = random.nextUnit()
            switch type {
            case .float: append(Float(unit * 2 - 1))
            case .double: append(unit * 2 - 1)
            case .float16: append(Float16(unit * 2 - 1))
            case .bool: append(UInt8(unit < 0.5 ? 0 : 1))
            case .int8: append(Int8(unit * 8))
            case .uint8: append(UInt8(unit * 8))
            case .int16: append(Int16(unit * 8))
            case .uint16: append(UInt16(unit * 8))
            case .int32: append(Int32(unit * 8))
            case .uint32: append(UInt32(unit * 8))
            case .int64: append(Int64(unit * 8))
            case .uint64: append(UInt64(unit * 8))
            default: throw ValidationError("input '\(input.name)' is tensor(\(type.onnxName)), which bench cannot make")
            }
        }
        return try cliTry { try Tensor(shape: shape, elementType: type, bytes: bytes) }
    }
}

/// Where the timed runs spent their time, per op type and per node.
struct ProfileReport {
    struct Row {
        var name: String
        var opType = ""
        var fused: [String] = []
        var calls = 0
        var seconds = 0.0
        var flops: Double? = 0
    }

    let events: [ProfileEvent]
    let runs: Int

    func print() {
        var byNode: [ObjectIdentifier: Row] = [:], byOp: [String: Row] = [:]
        var nodeOrder: [ObjectIdentifier] = []
        var runSeconds = 0.0
        for event in events {
            let seconds = Double(event.duration) / 1e9
            guard let node = event.node else { runSeconds += seconds; continue }
            let key = ObjectIdentifier(node)
            if byNode[key] == nil { nodeOrder.append(key); byNode[key] = Row(name: node.name, opType: node.opType, fused: node.fusedNodes) }
            accumulate(&byNode[key]!, seconds, node.flops)
            accumulate(&byOp[node.opType, default: Row(name: node.opType)], seconds, node.flops)
        }
        let nodeSeconds = byNode.values.reduce(0) { $0 + $1.seconds }
        Swift.print("\nprofile of the \(runs) timed runs: nodes \(milliseconds(nodeSeconds / Double(runs))) ms per run " +
                    "of \(milliseconds(runSeconds / Double(runs))) ms (the rest is binding inputs and outputs)")
        Swift.print("\nper op type:")
        table(byOp.values.sorted { $0.seconds > $1.seconds }, total: nodeSeconds, perNode: false)
        Swift.print("\nper node (slowest first; [fused: ...] lists the model nodes a fused node stands for):")
        table(nodeOrder.map { byNode[$0]! }.sorted { $0.seconds > $1.seconds }, total: nodeSeconds, perNode: true)
    }

    private func accumulate(_ row: inout Row, _ seconds: Double, _ flops: Double?) {
        row.calls += 1
        row.seconds += seconds
        row.flops = row.flops.flatMap { total in flops.map { total + $0 } }
    }

    private func table(_ rows: [Row], total: Double, perNode: Bool) {
        let header = perNode ? ["node", "op type", "calls", "ms/call", "share", "GFLOP/s"] : ["op type", "calls", "ms/call", "share", "GFLOP/s"]
        var lines = [header]
        for row in rows {
            let gflops = row.flops.map { $0 > 0 && row.seconds > 0 ? fixed($0 / row.seconds / 1e9, 1) : "" } ?? ""
            var cells = [row.name]
            if perNode { cells.append(row.opType) }
            cells += [String(row.calls), milliseconds(row.seconds / Double(max(1, row.calls))),
                      fixed(total > 0 ? 100 * row.seconds / total : 0, 1) + "%", gflops]
            if perNode && row.fused.count > 1 { cells[0] += " [fused: \(fusedList(row.fused))]" }
            lines.append(cells)
        }
        let widths = header.indices.map { column in lines.map { $0[column].count }.max()! }
        for line in lines {
            Swift.print("  " + line.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 || (perNode && column == 1) ? cell + pad : pad + cell
            }.joined(separator: "  "))
        }
    }
}

/// A bar on stderr while the runs go (only on a terminal, so logs stay clean).
final class ProgressBar {
    private let total: Int
    private var done = 0
    private let enabled = isatty(2) != 0

    init(total: Int) { self.total = max(1, total + 1) }

    func advance() {
        done += 1
        guard enabled else { return }
        let width = 40, filled = width * min(done, total) / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        fputs("\r[\(bar)] \(done)/\(total) runs", stderr)
    }

    func finish() { if enabled { fputs("\r" + String(repeating: " ", count: 60) + "\r", stderr) } }
}

/// A small deterministic generator (SplitMix64), so the same --seed gives the same inputs.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    let position = fraction * Double(sorted.count - 1)
    let low = Int(position), high = min(low + 1, sorted.count - 1)
    return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
}

func fixed(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
    } else if digits > 0 {
        text += "." + String(repeating: "0", count: digits)
    }
    return text
}

func milliseconds(_ seconds: Double) -> String { fixed(seconds * 1000, 3) }

/// The --level option of `info` and `bench`.
func optimizationLevel(named name: String) throws -> GraphOptimizationLevel {
    let levels: [String: GraphOptimizationLevel] = ["disabled": .disabled, "basic": .basic, "extended": .extended, "all": .all]
    guard let level = levels[name] else { throw ValidationError("--level must be disabled, basic, extended or all, got '\(name)'") }
    return level
}

/// Prints DeformRT errors as one clean line instead of a Swift dump.
func padded(_ text: String, _ width: Int) -> String {
    text + String(repeating: " ", count: max(0, width - text.count))
}

/// `--input name=file.npy` options as feeds.
func readFeeds(_ specs: [String]) throws -> [String: Tensor] {
    var feeds: [String: Tensor] = [:]
    for spec in specs {
        guard let equals = spec.firstIndex(of: "=") else {
            throw ValidationError("--input must be name=file.npy, got '\(spec)'")
        }
        let name = String(spec[..<equals]), path = String(spec[spec.index(after: equals)...])
        feeds[name] = try cliTry { try NPY.read(path: path) }
    }
    return feeds
}

func cliTry<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DeformRTError {
        throw ValidationError("error: \(error.message)")
    }
}

/// The model nodes a fused node stands for: their names, and how many had none (exporters leave
/// some nodes unnamed; a decomposition pass may fuse dozens of them).
func fusedList(_ names: [String]) -> String {
    let named = names.filter { !$0.isEmpty }
    let unnamed = names.count - named.count
    return (named + (unnamed > 0 ? ["\(unnamed) unnamed"] : [])).joined(separator: ", ")
}
