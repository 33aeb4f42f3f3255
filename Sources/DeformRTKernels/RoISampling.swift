/// Pieces shared by the RoI pooling kernels (RoiAlign, MaxRoiPool, DeformRoIPool,
/// DeformablePSROIPool), their scalar references and the channels-last gather in SIMD/.
///
/// Defined results for bad RoIs (the same in the reference and the optimised path of every op):
/// - a batch index outside `0..<batch` (for float columns: not finite, or outside after the C
///   cast's truncation toward zero) gives an all-zero RoI;
/// - a non-finite corner, or a scaled extent that overflows Float (MaxRoiPool: a rounded corner
///   beyond +-2^30), gives an all-zero RoI;
/// - x2 < x1 or y2 < y1 follows each reference's own formula (clamped to a minimum size, or no
///   samples), which never reads outside the map; torchvision and onnxruntime throw for a RoI
///   inverted in one axis only with half_pixel and adaptive sampling, here it has no samples: 0;
/// - a NaN sample position counts as off the map, where the op's border rule applies (the
///   references would cast it to an int); huge or infinite offsets likewise;
/// - an adaptive sampling grid is at most `RoILimits.adaptiveGrid` per axis.

/// Limits that keep the work of hostile RoIs bounded; real detectors come nowhere near them.
public enum RoILimits {
    /// Largest adaptive sampling grid per axis (sampling_ratio 0). Up to 2^22, `Float(i) + 0.5`
    /// is exact, so consecutive sample positions stay apart (the references' int products already
    /// overflow for grids above 46341 x 46341). A larger ceil(extent / pooled) is clamped to this.
    public static let adaptiveGrid = 1 << 22
    /// Largest sampling_ratio / sample_per_part accepted (the work per bin is its square).
    public static let samplingRatio = 1024
    /// Largest number of bilinear samples one deformable PSROI pooling run may read.
    public static let psroiSamples = 1 << 27
    /// MaxRoiPool: rounded, scaled corners must lie within +-2^30 (the reference uses 32-bit ints).
    public static let roundedCorner: Float = 1_073_741_824
}

/// Batch index of a RoI whose first column is a float (mmcv, MXNet, torchvision: a C cast that
/// truncates toward zero), or nil when the RoI must output zeros.
@inline(__always)
func roiBatch(_ value: Float, batch: Int) -> Int? {
    guard value.isFinite, value > -1, value < Float(batch) else { return nil }
    let index = Int(value)
    return index < batch ? index : nil
}

/// Batch index from an int64 batch_indices tensor (ONNX RoiAlign), or nil for zeros.
@inline(__always)
func roiBatch(_ value: Int64, batch: Int) -> Int? {
    value >= 0 && value < Int64(batch) ? Int(value) : nil
}

/// Samples per bin along one axis, as ONNX RoiAlign (onnxruntime, onnx.reference), torchvision
/// and mmcv compute it: `samplingRatio` when positive, else ceil(roi_extent / pooled), which is
/// ceil(binExtent) (the same float division). Zero or negative means no samples.
@inline(__always)
func roiSampleGrid(samplingRatio: Int, binExtent: Float) -> Int {
    if samplingRatio > 0 { return samplingRatio }
    let grid = binExtent.rounded(.up)
    guard grid > 0 else { return 0 }  // also catches NaN
    return grid >= Float(RoILimits.adaptiveGrid) ? RoILimits.adaptiveGrid : Int(grid)
}

/// Position of sample `i` of `grid` in a bin starting at `origin`, written as the reference
/// kernels' float expression `origin + static_cast<T>(i + .5f) * bin / static_cast<T>(grid)`.
@inline(__always)
func roiSamplePosition(origin: Float, bin: Float, grid: Int, _ i: Int) -> Float {
    origin + ((Float(i) + 0.5) * bin) / Float(grid)
}

/// The indices `i` in `0..<grid` whose `roiSamplePosition` lies in `lower...upper`.
///
/// Samples outside read 0 under the RoIAlign bilinear rule, so skipping them changes no sum; the
/// position is monotonic in `i` (each float operation is), so the indices form one range, found by
/// bisection. A RoI far larger than the map then costs only the samples that land on it. Empty
/// when `origin` or `bin` is not finite.
func roiValidSamples(origin: Float, bin: Float, grid: Int, lower: Float, upper: Float) -> Range<Int> {
    guard grid > 0, origin.isFinite, bin.isFinite else { return 0..<0 }
    @inline(__always) func position(_ i: Int) -> Float {
        roiSamplePosition(origin: origin, bin: bin, grid: grid, i)
    }
    let first: Int
    let end: Int
    if bin >= 0 {
        first = roiPartitionPoint(0, grid) { position($0) >= lower }
        end = roiPartitionPoint(first, grid) { position($0) > upper }
    } else {
        first = roiPartitionPoint(0, grid) { position($0) <= upper }
        end = roiPartitionPoint(first, grid) { position($0) < lower }
    }
    return first..<end
}

/// First index in `low..<high` where `isPast` holds, for a predicate false-then-true over the range.
@inline(__always)
func roiPartitionPoint(_ low: Int, _ high: Int, _ isPast: (Int) -> Bool) -> Int {
    var low = low
    var high = high
    while low < high {
        let mid = low + (high - low) / 2
        if isPast(mid) { high = mid } else { low = mid + 1 }
    }
    return low
}

/// One axis of a bilinear sample: the two neighbouring rows (or columns) and their weights.
struct RoIAxisTap {
    var low: Int
    var high: Int
    var lowWeight: Float
    var highWeight: Float
}

/// RoIAlign's bilinear rule along one axis (onnxruntime / torchvision / mmcv
/// bilinear_interpolate) for a position already known to be in [-1, size]: clamp below at 0,
/// and at the last row or beyond, read that row alone.
@inline(__always)
func roiAlignTap(_ position: Float, size: Int) -> RoIAxisTap {
    var p = position <= 0 ? 0 : position
    var low = Int(p)
    let high: Int
    if low >= size - 1 {
        low = size - 1
        high = low
        p = Float(low)
    } else {
        high = low + 1
    }
    let l = p - Float(low)
    return RoIAxisTap(low: low, high: high, lowWeight: 1 - l, highWeight: l)
}

/// The DCN authors' rule (MXNet DeformablePSROIPooling, OpenVINO DeformablePSROIPooling-1) along
/// one axis: nil (the sample is skipped and not counted) outside [-0.5, size - 0.5] or NaN, else
/// clamp to [0, size - 1] and interpolate between floor and ceil.
@inline(__always)
func psroiTap(_ position: Float, size: Int) -> RoIAxisTap? {
    guard position >= -0.5, position <= Float(size) - 0.5 else { return nil }
    let p = min(max(position, 0), Float(size - 1))
    let low = p.rounded(.down)
    let d = p - low
    return RoIAxisTap(low: Int(low), high: Int(p.rounded(.up)), lowWeight: 1 - d, highWeight: d)
}

/// Up to `capacity` bilinear samples of one bin, each four (offset, weight) corners, built once
/// and applied to every channel of a channels-last map. Offsets are in floats from the image base.
struct RoISampleTable {
    static let capacity = 128
    let offsets: UnsafeMutablePointer<Int>
    let weights: UnsafeMutablePointer<Float>
    var count = 0

    var isFull: Bool { count == RoISampleTable.capacity }

    /// Appends corners in the order the references add them.
    @inline(__always)
    mutating func append(
        _ o0: Int, _ w0: Float, _ o1: Int, _ w1: Float, _ o2: Int, _ w2: Float, _ o3: Int, _ w3: Float
    ) {
        let o = offsets + 4 * count
        let w = weights + 4 * count
        o[0] = o0; o[1] = o1; o[2] = o2; o[3] = o3
        w[0] = w0; w[1] = w1; w[2] = w2; w[3] = w3
        count += 1
    }
}

/// Workspace of the optimised RoI kernels: a channels-last copy of the map, then per thread one
/// RoI's results as [bin][channel] rows and a sample table.
struct RoIWorkspace {
    static let alignment = 64

    static func byteCount(mapFloats: Int, roiFloats: Int, threads: Int) -> Int {
        alignment + roundUp(mapFloats * 4) + max(1, threads) * perThreadBytes(roiFloats)
    }

    private static func roundUp(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    private static func perThreadBytes(_ roiFloats: Int) -> Int {
        roundUp(roiFloats * 4) + roundUp(RoISampleTable.capacity * 4 * 8)
            + roundUp(RoISampleTable.capacity * 4 * 4)
    }

    let map: UnsafeMutablePointer<Float>
    private let threadBase: UnsafeMutableRawPointer
    private let roiFloats: Int

    init(_ buffer: UnsafeMutableRawBufferPointer, mapFloats: Int, roiFloats: Int, threads: Int) {
        precondition(
            buffer.count >= RoIWorkspace.byteCount(
                mapFloats: mapFloats, roiFloats: roiFloats, threads: threads),
            "RoI workspace too small: size it with workspaceByteCount for the same thread count")
        let raw = buffer.baseAddress!
        let misalignment = Int(bitPattern: raw) % RoIWorkspace.alignment
        let start = raw + (misalignment == 0 ? 0 : RoIWorkspace.alignment - misalignment)
        map = start.bindMemory(to: Float.self, capacity: mapFloats)
        threadBase = start + RoIWorkspace.roundUp(mapFloats * 4)
        self.roiFloats = roiFloats
    }

    /// RoI rows and sample table private to `worker`.
    func scratch(_ worker: Int) -> RoIScratch {
        let base = threadBase + worker * RoIWorkspace.perThreadBytes(roiFloats)
        let roi = base.bindMemory(to: Float.self, capacity: roiFloats)
        let offsetsBase = base + RoIWorkspace.roundUp(roiFloats * 4)
        let offsets = offsetsBase.bindMemory(to: Int.self, capacity: RoISampleTable.capacity * 4)
        let weights = (offsetsBase + RoIWorkspace.roundUp(RoISampleTable.capacity * 4 * 8))
            .bindMemory(to: Float.self, capacity: RoISampleTable.capacity * 4)
        return RoIScratch(roi: roi, table: RoISampleTable(offsets: offsets, weights: weights))
    }
}

/// One thread's share of an `RoIWorkspace`.
struct RoIScratch {
    /// The current RoI's pooled values, row `bin` holding its channels.
    let roi: UnsafeMutablePointer<Float>
    var table: RoISampleTable

    /// Writes the RoI rows to the NCHW output block of that RoI ([channel][bin]).
    func writeRoI(bins: Int, channels: Int, to output: UnsafeMutablePointer<Float>) {
        ConvLayout.transpose(roi, srcStride: channels, output, dstStride: bins, rows: channels, columns: bins,
                             rowBias: nil)
    }
}

/// The sizes every RoI pooling op's parameters share, so that validation, workspace sizing and
/// the per-RoI driver are written once.
protocol RoIPoolingShape {
    var batch: Int { get }
    var height: Int { get }
    var width: Int { get }
    var roiCount: Int { get }
    /// Channels per pixel of the channels-last map copy (per batch item).
    var mapChannels: Int { get }
    /// Channels of one pooled bin, i.e. of the output.
    var pooledChannels: Int { get }
    /// Output bins per RoI and channel.
    var bins: Int { get }
    /// Why the parameters cannot run, or nil; the kernels trap on it.
    var invalidReason: String? { get }
}

extension RoIPoolingShape {
    var pixels: Int { height * width }
    var outputCount: Int { roiCount * pooledChannels * bins }

    func workspaceByteCount(threads: Int) -> Int {
        RoIWorkspace.byteCount(
            mapFloats: batch * pixels * mapChannels, roiFloats: bins * pooledChannels, threads: threads)
    }
}

/// Parameter checks worded the same way for every RoI op.
enum RoIParameterCheck {
    static func dimensions(_ op: String, _ sizes: Int...) -> String? {
        sizes.contains { $0 < 0 } ? "\(op): negative dimension" : nil
    }

    /// `lowest` is 0 where 0 means an adaptive grid, 1 otherwise.
    static func samplingRatio(_ op: String, _ name: String, _ value: Int, lowest: Int) -> String? {
        value < lowest || value > RoILimits.samplingRatio
            ? "\(op): \(name) must be in \(lowest)...\(RoILimits.samplingRatio)" : nil
    }
}

extension RoIWorkspace {
    /// The driver of every optimised RoI kernel: an empty map gives zeros; otherwise `copyMap`
    /// fills the channels-last map, then RoIs are spread over the threads, each pooled by
    /// `poolRoI` into its thread's [bin][channel] rows and transposed to NCHW, or zeroed when
    /// `poolRoI` returns false (bad batch index or corners).
    static func forEachRoI<Shape: RoIPoolingShape>(
        _ shape: Shape, output: UnsafeMutablePointer<Float>, workspace: UnsafeMutableRawBufferPointer,
        parallel: Parallel, copyMap: (_ map: UnsafeMutablePointer<Float>) -> Void,
        poolRoI: (_ roi: Int, _ map: UnsafePointer<Float>, _ scratch: inout RoIScratch) -> Bool
    ) {
        precondition(shape.invalidReason == nil, shape.invalidReason ?? "")
        if shape.outputCount == 0 { return }
        if shape.pixels == 0 {
            output.update(repeating: 0, count: shape.outputCount)
            return
        }
        let channels = shape.pooledChannels, bins = shape.bins
        let space = RoIWorkspace(
            workspace, mapFloats: shape.batch * shape.pixels * shape.mapChannels, roiFloats: bins * channels,
            threads: parallel.threads)
        copyMap(space.map)
        let map = UnsafePointer(space.map)
        parallel.forEachRange(shape.roiCount) { worker, roiRange in
            var scratch = space.scratch(worker)
            for r in roiRange {
                let roiOutput = output + r * channels * bins
                if poolRoI(r, map, &scratch) {
                    scratch.writeRoI(bins: bins, channels: channels, to: roiOutput)
                } else {
                    roiOutput.update(repeating: 0, count: channels * bins)
                }
            }
        }
    }

    /// `forEachRoI` for maps whose NCHW `images` copy plane by plane (every op but
    /// DeformablePSROIPool, which regroups its channels).
    static func forEachRoI<Shape: RoIPoolingShape>(
        _ shape: Shape, images input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
        workspace: UnsafeMutableRawBufferPointer, parallel: Parallel,
        poolRoI: (_ roi: Int, _ map: UnsafePointer<Float>, _ scratch: inout RoIScratch) -> Bool
    ) {
        forEachRoI(
            shape, output: output, workspace: workspace, parallel: parallel,
            copyMap: { map in
                RoIChannelsLast.copy(
                    images: input, batch: shape.batch, channels: shape.mapChannels, pixels: shape.pixels,
                    into: map, parallel: parallel)
            },
            poolRoI: poolRoI)
    }
}
