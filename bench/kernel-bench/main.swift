// Times Conv2DPlan.run and DeformConvPlan.run on the layers of issue 3 at 1 and 2 threads:
// batch 1, fp32, 3x3, offsets U(-5, 5), median of `runs` timed calls after warm-up.
// GFLOP/s = 2 * Cin * Cout * kH * kW * Hout * Wout / time (the same count for both ops).
//
// Build in release with AVX-512 code for the kernels, e.g.
//   swift build -c release --scratch-path .build-<you> -Xswiftc -target-cpu -Xswiftc znver4 --product kernel-bench
//   .build-<you>/release/kernel-bench [runs] [layers, e.g. abc] [threads, e.g. 12]
// (`native` and `skylake-avx512` work too; this toolchain rejects `x86-64-v4`.) Without a
// -target-cpu the engine probe picks OpenBLAS for the GEMM (see ConvEngine.preferred).
import DeformRTKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct Layer {
    let name: String
    let channels: Int
    let size: Int
    let mask: Bool
    let offsetGroup: Int
    let dilation: Int

    var geometry: ConvGeometry {
        ConvGeometry(batch: 1, inChannels: channels, inHeight: size, inWidth: size, outChannels: channels,
                     kernelHeight: 3, kernelWidth: 3, padTop: dilation, padLeft: dilation,
                     dilationHeight: dilation, dilationWidth: dilation)
    }
    var options: DeformableOptions { DeformableOptions(offsetGroup: offsetGroup, hasMask: mask) }
    var flops: Double {
        let g = geometry
        return 2.0 * Double(g.inChannels * g.outChannels * 9 * g.outHeight * g.outWidth)
    }
}

let layers = [
    Layer(name: "a 64->64 @128^2, mask", channels: 64, size: 128, mask: true, offsetGroup: 1, dilation: 1),
    Layer(name: "b 256->256 @64^2, mask", channels: 256, size: 64, mask: true, offsetGroup: 1, dilation: 1),
    Layer(name: "c 512->512 @32^2", channels: 512, size: 32, mask: false, offsetGroup: 1, dilation: 1),
    Layer(name: "d = b, offset_group 4", channels: 256, size: 64, mask: true, offsetGroup: 4, dilation: 1),
    Layer(name: "e = c, dilation 2", channels: 512, size: 32, mask: false, offsetGroup: 1, dilation: 2),
]

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func medianMilliseconds(runs: Int, _ body: () -> Void) -> Double {
    body()
    body()
    var times: [Double] = []
    for _ in 0..<runs {
        let t0 = now()
        body()
        times.append((now() - t0) * 1e3)
    }
    times.sort()
    return times[times.count / 2]
}

/// Deterministic U(lo, hi) floats (xorshift), so every run sees the same data.
func uniform(_ count: Int, _ lo: Float, _ hi: Float, seed: UInt64) -> [Float] {
    var s = seed | 1
    return (0..<count).map { _ in
        s ^= s << 13
        s ^= s >> 7
        s ^= s << 17
        return lo + (hi - lo) * Float(s >> 40) / Float(1 << 24)
    }
}

/// `x` with `digits` decimals, without Foundation.
func fixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1
    for _ in 0..<digits { scale *= 10 }
    let v = Int((x * Double(scale)).rounded())
    let frac = String(abs(v) % scale)
    let pad = String(repeating: "0", count: digits - frac.count)
    return (v < 0 ? "-" : "") + String(abs(v) / scale) + (digits > 0 ? "." + pad + frac : "")
}

let args = CommandLine.arguments
let runs = args.count > 1 ? max(1, Int(args[1]) ?? 10) : 10
let chosen = args.count > 2 ? Set(args[2]) : Set("abcde")
let threadCounts = args.count > 3 ? args[3].compactMap { Int(String($0)) } : [1, 2]

// The engine probe runs once; then give OpenBLAS's pthread worker, which spins on sched_yield for
// a moment after the library loads (measured: ~0.1-0.3 s of a core), time to go to sleep so that
// it does not take the second core from the first 2-thread timings.
let engine = ConvEngine.preferred
usleep(500_000)

print("kernel-bench: median of \(runs) runs after 2 warm-up calls; ms and GFLOP/s; engine \(engine)")
print("DeformConv packed: weights packed once beforehand (packWeight), as a session can do for constant weights")
print("| layer | threads | Conv2D ms | GFLOP/s | DeformConv ms | GFLOP/s | deform/conv | DeformConv packed ms | GFLOP/s |")
print("|---|---|---|---|---|---|---|---|---|")
for layer in layers where chosen.contains(layer.name.first!) {
    let g = layer.geometry
    let d = layer.options
    let input = uniform(g.inChannels * g.inHeight * g.inWidth, -1, 1, seed: 1)
    let weight = uniform(g.outChannels * g.inChannels * 9, -0.1, 0.1, seed: 2)
    let bias = uniform(g.outChannels, -1, 1, seed: 3)
    let outPixels = g.outHeight * g.outWidth
    let offset = uniform(d.offsetGroup * 18 * outPixels, -5, 5, seed: 4)
    let mask = uniform(d.offsetGroup * 9 * outPixels, 0, 1, seed: 5)
    var output = [Float](repeating: 0, count: g.outChannels * outPixels)
    for threads in threadCounts {
        let parallel = Parallel(threads: threads)
        let convPlan = Conv2DPlan(g, threads: threads), deformPlan = DeformConvPlan(g, d, threads: threads)
        let packedPlan = DeformConvPlan(g, d, threads: threads, weightsPrepacked: true)
        let bytes = max(convPlan.workspaceByteCount, deformPlan.workspaceByteCount)
        let workspace = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        let packed = UnsafeMutableRawPointer.allocate(byteCount: max(DeformConv.packedWeightByteCount(g), 64),
                                                      alignment: 64)
        defer { workspace.deallocate(); packed.deallocate() }
        DeformConv.packWeight(g, weight: weight, into: packed, parallel: parallel)
        let convMs = medianMilliseconds(runs: runs) {
            convPlan.run(input: input, weight: weight, bias: bias, output: &output, workspace: workspace,
                         parallel: parallel)
        }
        let deformMs = medianMilliseconds(runs: runs) {
            mask.withUnsafeBufferPointer { m in
                deformPlan.run(input: input, weight: weight, offset: offset, mask: d.hasMask ? m.baseAddress : nil,
                               bias: bias, output: &output, workspace: workspace, parallel: parallel)
            }
        }
        let packedMs = medianMilliseconds(runs: runs) {
            mask.withUnsafeBufferPointer { m in
                packedPlan.run(input: input, weight: packed.assumingMemoryBound(to: Float.self), offset: offset,
                               mask: d.hasMask ? m.baseAddress : nil, bias: bias, output: &output,
                               workspace: workspace, parallel: parallel)
            }
        }
        func cell(_ ms: Double) -> String { "\(fixed(ms, 2)) | \(fixed(layer.flops / ms * 1e-6, 1))" }
        print("| \(layer.name) | \(threads) | \(cell(convMs)) | \(cell(deformMs)) | \(fixed(deformMs / convMs, 2)) | "
              + "\(cell(packedMs)) |")
    }
}
