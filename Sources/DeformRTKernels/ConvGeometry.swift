/// Geometry of a 2-D convolution, plain or deformable, batch-major NCHW float32.
///
/// Tensors as the kernels see them:
///   input  [batch, inChannels, inHeight, inWidth]
///   weight [outChannels, inChannels / group, kernelHeight, kernelWidth]
///   bias   [outChannels] (optional)
///   output [batch, outChannels, outHeight, outWidth]
/// Deformable convolution adds
///   offset [batch, offsetGroup * 2 * kernelHeight * kernelWidth, outHeight, outWidth]
///          channel g*2*kH*kW + 2*(i*kW + j) holds dy for group g, tap (i, j); the next holds dx
///   mask   [batch, offsetGroup * kernelHeight * kernelWidth, outHeight, outWidth] (optional)
///          channel g*kH*kW + i*kW + j
/// Input channel c belongs to offset group c / (inChannels / offsetGroup).
/// Bottom/right padding only matters through outHeight/outWidth, which the caller computes.
public struct ConvGeometry: Sendable, Equatable {
    public var batch: Int
    public var inChannels: Int
    public var inHeight: Int
    public var inWidth: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var padTop: Int
    public var padLeft: Int
    public var dilationHeight: Int
    public var dilationWidth: Int
    public var group: Int
    public var outHeight: Int
    public var outWidth: Int

    public init(
        batch: Int, inChannels: Int, inHeight: Int, inWidth: Int, outChannels: Int,
        kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1, strideWidth: Int = 1,
        padTop: Int = 0, padLeft: Int = 0, padBottom: Int? = nil, padRight: Int? = nil,
        dilationHeight: Int = 1, dilationWidth: Int = 1, group: Int = 1
    ) {
        self.batch = batch
        self.inChannels = inChannels
        self.inHeight = inHeight
        self.inWidth = inWidth
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.padTop = padTop
        self.padLeft = padLeft
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.group = group
        let bottom = padBottom ?? padTop
        let right = padRight ?? padLeft
        self.outHeight = (inHeight + padTop + bottom - dilationHeight * (kernelHeight - 1) - 1) / strideHeight + 1
        self.outWidth = (inWidth + padLeft + right - dilationWidth * (kernelWidth - 1) - 1) / strideWidth + 1
    }
}

/// How a bilinear sample near the border of the input is read.
public enum DeformableBorder: Sendable, Equatable {
    /// ONNX DeformConv, torchvision.ops.deform_conv2d, onnxruntime, mmcv, OpenVINO with
    /// bilinear_interpolation_pad = true: each of the four corners outside the input reads 0, so a
    /// sample at y = -0.5 gets half of row 0 and one at y <= -1 gets nothing.
    case zeroOutsideCorners
    /// OpenVINO DeformableConvolution-8 with bilinear_interpolation_pad = false (the default of its
    /// DeformableConv2D ONNX spelling); see its operator specification.
    case openVINONoPad
}

/// What a deformable convolution adds to a `ConvGeometry`.
public struct DeformableOptions: Sendable, Equatable {
    public var offsetGroup: Int
    public var hasMask: Bool
    public var border: DeformableBorder

    public init(offsetGroup: Int = 1, hasMask: Bool, border: DeformableBorder = .zeroOutsideCorners) {
        self.offsetGroup = offsetGroup
        self.hasMask = hasMask
        self.border = border
    }
}
