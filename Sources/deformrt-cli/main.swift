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
        subcommands: [Info.self, Run.self])
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a model's inputs, outputs, operators, opsets and parameter count.")

    @Argument(help: "The .onnx model file.")
    var model: String

    @Flag(help: "List the graph a session runs after the graph passes (fused nodes show what they stand for).")
    var optimized = false

    @Option(help: "Optimisation level for --optimized: disabled, basic, extended or all.")
    var level: String = "all"

    @Option(help: "With --optimized: also write the optimised graph to this .onnx file.")
    var save: String?

    func run() throws {
        let loaded = try cliTry { try Model(path: model) }
        if optimized { return try listOptimized(loaded) }
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

    private func listOptimized(_ loaded: Model) throws {
        let levels: [String: GraphOptimizationLevel] = ["disabled": .disabled, "basic": .basic, "extended": .extended, "all": .all]
        guard let chosen = levels[level] else {
            throw ValidationError("--level must be disabled, basic, extended or all, got '\(level)'")
        }
        let session = try cliTry { try Session(model: loaded, threads: 1, graphOptimizationLevel: chosen) }
        let graph = session.optimizedGraph
        print("model: \(model) (optimisation level \(level))")
        print("nodes (\(graph.nodes.count), \(graph.initializerCount) initializers):")
        for node in graph.nodes {
            let op = (node.domain.isEmpty ? "" : node.domain + "::") + node.opType
            let fused = node.fusedNodes.count > 1 ? "  [fused: \(node.fusedNodes.joined(separator: ", "))]" : ""
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

    private func describe(_ info: ValueInfo) -> String {
        let type = info.elementType.map { "tensor(\($0.onnxName))" } ?? "tensor(?)"
        let shape = info.shape.map { "[" + $0.map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]" } ?? "[unknown]"
        return "\(info.name): \(type) \(shape)"
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
        var feeds: [String: Tensor] = [:]
        for spec in inputs {
            guard let equals = spec.firstIndex(of: "=") else {
                throw ValidationError("--input must be name=file.npy, got '\(spec)'")
            }
            let name = String(spec[..<equals]), path = String(spec[spec.index(after: equals)...])
            feeds[name] = try cliTry { try NPY.read(path: path) }
        }
        let outputs = try cliTry { try session.run(feeds) }
        for output in loaded.outputs {
            guard let tensor = outputs[output.name] else { continue }
            let safeName = String(output.name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." ? $0 : "_" })
            let path = outputDirectory + "/" + safeName + ".npy"
            try cliTry { try NPY.write(tensor, path: path) }
            print("\(output.name): \(tensor.elementType.onnxName) \(tensor.shape) -> \(path)")
        }
    }
}

/// Prints DeformRT errors as one clean line instead of a Swift dump.
func cliTry<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DeformRTError {
        throw ValidationError("error: \(error.message)")
    }
}
