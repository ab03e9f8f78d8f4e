import DistillDaemon
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - HTTP over a raw socket

/// One HTTP response as the tests see it.
struct OperationsHTTPReply {
    let status: Int
    let headers: [String: String]
    let body: String

    /// The body's lines, for exact-line assertions on `/metrics`.
    var lines: [String] { body.split(separator: "\n").map(String.init) }
}

/// Why a test request failed.
struct OperationsHTTPFailure: Error, CustomStringConvertible {
    let description: String
}

/// `GET path` on 127.0.0.1:port with HTTP/1.1 and `Connection: close`.
///
/// Blocking socket calls run on a thread of their own, never on the cooperative pool, and time out after 5 s so a
/// hung server fails the test instead of hanging it.
func operationsGet(port: Int, path: String) async throws -> OperationsHTTPReply {
    let raw = try await operationsOnThread { try operationsBlockingExchange(port: port, path: path) }
    return try operationsParse(raw)
}

/// Whether a TCP connection to 127.0.0.1:port is accepted.
func operationsCanConnect(port: Int) async -> Bool {
    (try? await operationsOnThread { () throws -> Bool in
        let fd = try operationsConnect(port: port)
        close(fd)
        return true
    }) ?? false
}

private func operationsOnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

private func operationsConnect(port: Int) throws -> Int32 {
    #if canImport(Glibc)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw OperationsHTTPFailure(description: "socket: errno \(errno)") }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port)).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard result == 0 else {
        let code = errno
        close(fd)
        throw OperationsHTTPFailure(description: "connect to 127.0.0.1:\(port): errno \(code)")
    }
    return fd
}

private func operationsBlockingExchange(port: Int, path: String) throws -> [UInt8] {
    let fd = try operationsConnect(port: port)
    defer { close(fd) }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n\r\n".utf8)
    var sent = 0
    while sent < request.count {
        let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { throw OperationsHTTPFailure(description: "send: errno \(errno)") }
        sent += n
    }
    var reply: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16_384)
    while true {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { break }
        guard n > 0 else { throw OperationsHTTPFailure(description: "recv: errno \(errno)") }
        reply.append(contentsOf: chunk[..<n])
    }
    return reply
}

/// Parses status line, headers and a `Content-Length` or chunked body.
private func operationsParse(_ raw: [UInt8]) throws -> OperationsHTTPReply {
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard let split = raw.firstRange(of: separator) else {
        throw OperationsHTTPFailure(description: "no header end in \(raw.count) bytes")
    }
    let head = String(decoding: raw[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
    let statusParts = head[0].split(separator: " ")
    guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
        throw OperationsHTTPFailure(description: "bad status line '\(head[0])'")
    }
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = line[..<colon].lowercased()
        headers[name] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    var body = Array(raw[split.upperBound...])
    if headers["transfer-encoding"]?.lowercased() == "chunked" {
        body = try operationsDechunk(body)
    }
    return OperationsHTTPReply(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
}

private func operationsDechunk(_ bytes: [UInt8]) throws -> [UInt8] {
    var out: [UInt8] = []
    var index = 0
    let crlf: [UInt8] = [13, 10]
    while index < bytes.count {
        guard let lineEnd = bytes[index...].firstRange(of: crlf) else { break }
        let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
        guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else {
            throw OperationsHTTPFailure(description: "bad chunk size '\(sizeText)'")
        }
        if size == 0 { break }
        let start = lineEnd.upperBound
        guard start + size <= bytes.count else { throw OperationsHTTPFailure(description: "short chunk") }
        out.append(contentsOf: bytes[start..<(start + size)])
        index = start + size + 2
    }
    return out
}
