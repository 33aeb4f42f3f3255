// Loads the bundled tiny deformable-convolution classifier, runs it on the bundled image and
// prints the three most likely classes, exactly as examples/c and examples/python do.
import DeformRT
import Glibc

let arguments = CommandLine.arguments
let modelPath = arguments.count > 1 ? arguments[1] : "examples/models/tiny_dcn.onnx"
let inputPath = arguments.count > 2 ? arguments[2] : "examples/models/tiny_dcn_input.npy"

do {
    let model = try Model(path: modelPath)
    let session = try Session(model: model, threads: 2)
    let image = try NPY.read(path: inputPath)
    let outputs = try session.run([model.inputs[0].name: image])
    let probabilities = try outputs[model.outputs[0].name]!.scalars
    let top = probabilities.indices.sorted { probabilities[$0] != probabilities[$1] ? probabilities[$0] > probabilities[$1] : $0 < $1 }.prefix(3)
    for index in top {
        print("class \(index): \(fixed(probabilities[index], decimals: 6))")
    }
} catch {
    fputs("error: \(error)\n", stderr)
    exit(1)
}

/// printf's "%.Nf", so all three examples format numbers identically.
func fixed(_ value: Float, decimals: Int) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([Double(value)]) { vsnprintf(&buffer, buffer.count, "%.\(decimals)f", $0) }
    return String(cString: buffer)
}
