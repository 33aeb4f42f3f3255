/// Copies a strided view (any element size) into a dense destination: Transpose and Slice.
public enum StridedCopy {
    public static func copy(elementSize: Int, shape: [Int], sourceStrides: [Int],
                            source: UnsafeRawPointer, destination: UnsafeMutableRawPointer) {
        let count = shape.reduce(1, *)
        if count == 0 { return }
        let rank = shape.count
        if rank == 0 {
            destination.copyMemory(from: source, byteCount: elementSize)
            return
        }
        let inner = shape[rank - 1], innerStride = sourceStrides[rank - 1]
        let rows = count / inner
        var index = [Int](repeating: 0, count: rank)
        var offset = 0
        var out = destination
        for _ in 0..<rows {
            if innerStride == 1 {
                out.copyMemory(from: source + offset * elementSize, byteCount: inner * elementSize)
            } else if elementSize == 4 {
                let s = (source + offset * 4).assumingMemoryBound(to: UInt32.self)
                let d = out.assumingMemoryBound(to: UInt32.self)
                for i in 0..<inner { d[i] = s[i * innerStride] }
            } else {
                for i in 0..<inner {
                    (out + i * elementSize).copyMemory(from: source + (offset + i * innerStride) * elementSize, byteCount: elementSize)
                }
            }
            out += inner * elementSize
            var d = rank - 2
            while d >= 0 {
                index[d] += 1
                offset += sourceStrides[d]
                if index[d] < shape[d] { break }
                offset -= sourceStrides[d] * shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}
