import CDeformRT
import DeformRTCore

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
