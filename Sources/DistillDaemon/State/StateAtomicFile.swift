#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - StateAtomicFile

/// Crash-safe replacement of a file: write a temp file in the same directory, `fsync` it, `rename` it over the
/// target, `fsync` the directory. After a crash at any point the target holds either its old or its new content,
/// never a mix. For small files (bootstrap seeds, markers) and, streaming, for checkpoints.
public enum StateAtomicFile {
    /// Atomically replaces `path` with `bytes`. Callers serialize writes to one path.
    /// - Throws: `StateError` with the errno (ENOSPC, EROFS, EACCES...); the old file is then untouched.
    public static func write(
        _ bytes: [UInt8],
        to path: String,
        permissions: mode_t = 0o644,
        io: any StateFileIO = StatePOSIXFileIO()
    ) throws {
        try replace(
            path: path, temporaryPath: "\(path).tmp-\(getpid())", permissions: permissions, io: io,
            body: { sink in try sink.append(bytes: bytes) })
    }

    /// The steps of an atomic replace; `beforeRename` runs once the temp file is durable, `afterRename` once it
    /// has taken the target's name (even if the directory `fsync` then fails). Returns the bytes written.
    @discardableResult
    static func replace(
        path: String,
        temporaryPath: String,
        permissions: mode_t,
        io: any StateFileIO,
        body: (inout StateFileSink) throws -> Void,
        beforeRename: () throws -> Void = {},
        afterRename: () -> Void = {}
    ) throws -> UInt64 {
        let fd: Int32
        do {
            fd = try io.open(temporaryPath, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: permissions)
        } catch let failure as StateIOFailure {
            throw StateError.io(temporaryPath, operation: "create temporary file", errno: failure.errno)
        }
        var open = true
        let written: UInt64
        do {
            var sink = StateFileSink(io: io, fd: fd, path: temporaryPath)
            try body(&sink)
            try sink.flush()
            written = sink.written
            try mapping(temporaryPath, "fsync") { try io.fsync(fd) }
            open = false
            try mapping(temporaryPath, "close") { try io.close(fd) }
            try beforeRename()
            try mapping(temporaryPath, "rename to \(path)") { try io.rename(temporaryPath, path) }
        } catch {
            // Best effort: the target was never touched, so only the temp file needs to go.
            if open { try? io.close(fd) }
            try? io.unlink(temporaryPath)
            throw error
        }
        afterRename()
        try mapping(directoryOf(path), "fsync directory") { try io.fsyncDirectory(directoryOf(path)) }
        return written
    }

    /// Runs a seam call and turns its `StateIOFailure` into a `StateError` about `path`.
    static func mapping<T>(_ path: String, _ operation: String, _ call: () throws -> T) throws -> T {
        do {
            return try call()
        } catch let failure as StateIOFailure {
            throw StateError.io(path, operation: operation, errno: failure.errno)
        }
    }

    /// The directory part of `path` (`.` when there is none).
    static func directoryOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

// MARK: - StateFileSink

/// A buffered sink onto a file descriptor that loops over short writes; large chunks bypass the buffer.
struct StateFileSink: StateByteSink {
    static let bufferSize = 256 * 1024

    let io: any StateFileIO
    let fd: Int32
    let path: String
    private var buffer: [UInt8] = []
    private(set) var written: UInt64 = 0

    init(io: any StateFileIO, fd: Int32, path: String) {
        self.io = io
        self.fd = fd
        self.path = path
        buffer.reserveCapacity(Self.bufferSize)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > Self.bufferSize { try flush() }
        if bytes.count >= Self.bufferSize {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// Patches bytes still in the buffer in place and the rest with `pwrite`, which leaves the file offset alone.
    mutating func overwrite(at offset: Int, with bytes: [UInt8]) throws {
        let buffered = Int(written)
        precondition(offset >= 0 && offset + bytes.count <= buffered + buffer.count, "overwrite past the end")
        var done = 0
        while done < bytes.count && offset + done < buffered {
            let count = try bytes.withUnsafeBytes { raw in
                try StateAtomicFile.mapping(path, "pwrite") {
                    try io.pwrite(fd, UnsafeRawBufferPointer(rebasing: raw[done..<min(bytes.count, buffered - offset)]),
                                  at: Int64(offset + done))
                }
            }
            guard count > 0 else { throw StateError.io(path, operation: "pwrite", errno: EIO) }
            done += count
        }
        for i in done..<bytes.count { buffer[offset + i - buffered] = bytes[i] }
    }

    mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        let pending = buffer
        buffer.removeAll(keepingCapacity: true)
        try pending.withUnsafeBytes { try writeAll($0) }
    }

    private mutating func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let count = try StateAtomicFile.mapping(path, "write") {
                try io.write(fd, UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            }
            // write(2) returning 0 for a non-empty request means no progress is possible.
            guard count > 0 else { throw StateError.io(path, operation: "write", errno: EIO) }
            offset += count
            written += UInt64(count)
        }
    }
}
