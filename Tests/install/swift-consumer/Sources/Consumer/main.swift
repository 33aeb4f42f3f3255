// Loads a model with the DeformRT Swift API, runs it on zeros and prints the output's shape and
// the model's producer. usage: Consumer MODEL.onnx
import DeformRT
#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count == 2 else {
    print("usage: Consumer MODEL.onnx")
    exit(2)
}
do {
    let model = try Model(path: arguments[1])
    let input = model.inputs[0]
    let shape = input.shape!.map { max($0, 1) }
    let session = try Session(model: model, threads: 1)
    let zeros = try Tensor(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    let outputs = try session.run([input.name: zeros])
    for (name, tensor) in outputs.sorted(by: { $0.key < $1.key }) { print("output \(name) \(tensor.shape)") }
    print("producer \(model.metadata.producerName)")
} catch {
    print("error: \(error)")
    exit(1)
}
