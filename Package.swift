// swift-tools-version:6.1
import PackageDescription

// Products:
//   DeformRT      - the Swift library (Model, Session, Tensor)
//   deformrt      - libdeformrt.so, the C ABI described by include/deformrt.h
//   deformrt-cli  - the command-line tool (installed as `deformrt` by the Makefile)
// No unsafeFlags here, so a package that depends on DeformRT builds without special flags;
// the Makefile adds -static-stdlib, the export list and -target-cpu for the shipped library.
let package = Package(
    name: "DeformRT",
    products: [
        .library(name: "DeformRT", targets: ["DeformRT"]),
        .library(name: "deformrt", type: .dynamic, targets: ["DeformRTCAPI"]),
        .executable(name: "deformrt-cli", targets: ["deformrt-cli"]),
    ],
    dependencies: [
        // No traits: the default ones pull Foundation stream APIs the importer does not use.
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(name: "CDeformRT", path: "Sources/CDeformRT"),
        .target(name: "CPlatform", path: "Sources/CPlatform"),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", providers: [.apt(["libopenblas-dev"])]),
        .target(
            name: "ONNXProto",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Sources/ONNXProto"),
        .target(name: "DeformRTKernels", dependencies: ["CBLAS", "CPlatform"]),
        .target(name: "DeformRTCore", dependencies: ["ONNXProto", "DeformRTKernels"]),
        .target(name: "DeformRT", dependencies: ["DeformRTCore", "DeformRTKernels", "CDeformRT"]),
        .target(name: "DeformRTCAPI", dependencies: ["DeformRTCore", "DeformRTKernels", "CDeformRT"]),
        .executableTarget(
            name: "deformrt-cli",
            dependencies: ["DeformRT", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "swift-example", dependencies: ["DeformRT"], path: "examples/swift"),
        .executableTarget(name: "kernel-bench", dependencies: ["DeformRTKernels"], path: "bench/kernel-bench"),
        // Replays fuzz inputs; fuzz/build.sh builds it as the libFuzzer target (see SECURITY.md).
        .executableTarget(name: "deformrt-fuzz", dependencies: ["DeformRTCAPI", "CDeformRT"], path: "fuzz/Sources"),
        .target(name: "TestSupport", dependencies: ["DeformRTKernels"], path: "Tests/TestSupport"),
        .testTarget(name: "DeformRTKernelsTests", dependencies: ["DeformRTKernels", "TestSupport"]),
        .testTarget(name: "DeformRTCoreTests", dependencies: ["DeformRTCore", "TestSupport"]),
        .testTarget(name: "DeformRTTests", dependencies: ["DeformRT", "ONNXProto", "DeformRTKernels", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
