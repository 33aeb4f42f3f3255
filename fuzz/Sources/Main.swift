import Glibc

// One executable, two builds. A plain `swift build` makes a replayer: each argument is a file or
// a folder of files, each run once through FuzzOne. fuzz/build.sh adds -sanitize=fuzzer,address
// and -DDEFORMRT_FUZZ, and the program is libFuzzer's driver instead.
#if DEFORMRT_FUZZ
/// SwiftPM links an executable's entry point as `<module>_main`; in the fuzz build it starts
/// libFuzzer's driver, which parses libFuzzer's flags and calls LLVMFuzzerTestOneInput.
@_cdecl("deformrt_fuzz_main")
func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        FuzzOne.run(data, size)
        return 0
    }
}

/// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32
#else
@main
enum Replay {
    static func main() {
        replay(Array(CommandLine.arguments.dropFirst()))
    }

    static func replay(_ arguments: [String]) {
        if arguments.isEmpty {
            print("usage: deformrt-fuzz FILE_OR_FOLDER...  (replays inputs; fuzz/build.sh builds the fuzzer)")
            exit(2)
        }
        var replayed = 0
        for path in arguments.flatMap({ files(under: $0) }) {
            guard let bytes = readFile(path) else {
                print("cannot read \(path)")
                exit(1)
            }
            bytes.withUnsafeBytes { FuzzOne.run($0.baseAddress, $0.count) }
            replayed += 1
        }
        print("replayed \(replayed) inputs without a crash")
    }

    static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        return bytes
    }

    /// `path` itself, or every file below it when it is a folder.
    static func files(under path: String) -> [String] {
        guard let dir = opendir(path) else { return [path] }
        defer { closedir(dir) }
        var found: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name == "." || name == ".." { continue }
            found += files(under: path + "/" + name)
        }
        return found.sorted()
    }
}

#endif
