import CDeformRT
import DeformRTCore
import DeformRTKernels

private let versionText: UnsafeMutablePointer<CChar> = strdup("\(DRT_VERSION_MAJOR).\(DRT_VERSION_MINOR).\(DRT_VERSION_PATCH)")!

private let statusNames: [String] = [
    "ok", "invalid argument", "I/O error", "invalid model", "unsupported", "out of memory", "buffer too small", "internal error",
    "cancelled",
]
private let statusTexts: [UnsafeMutablePointer<CChar>] = statusNames.map { strdup($0)! }
private let unknownStatus: UnsafeMutablePointer<CChar> = strdup("unknown status")!

@_cdecl("drt_version")
public func drt_version() -> UnsafePointer<CChar> { UnsafePointer(versionText) }

@_cdecl("drt_status_string")
public func drt_status_string(_ status: drt_status) -> UnsafePointer<CChar> {
    let index = Int(status.rawValue)
    return UnsafePointer(index < statusTexts.count ? statusTexts[index] : unknownStatus)
}

@_cdecl("drt_last_error_message")
public func drt_last_error_message() -> UnsafePointer<CChar> { LastError.message }

import Glibc

private let tierName: UnsafeMutablePointer<CChar> = strdup(CPUTier.compiled.rawValue)!

@_cdecl("drt_cpu_tier")
public func drt_cpu_tier(_ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> drt_status {
    guarded {
        let out = try required(outName, "out_name", in: "drt_cpu_tier")
        try CPUDispatch.check()
        out.pointee = UnsafePointer(tierName)
    }
}

/// Not part of the C API (no `drt_` prefix, so the export list hides it): the shipped library's
/// dispatcher (dispatch/dispatch.c) calls this copy's entry once at load when it refuses every
/// tier, before any other call; model loading and session creation then fail with `message`.
@_cdecl("deformrt_tier_refuse")
public func deformrt_tier_refuse(_ status: Int32, _ message: UnsafePointer<CChar>) {
    CPUDispatch.refuse(status: status, message: String(cString: message))
}
