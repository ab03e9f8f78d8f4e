#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Seam

/// A failed system call, as the `StateFileIO` seam reports it: only the raw `errno`.
public struct StateIOFailure: Error, Sendable, Equatable {
    /// The raw errno value (ENOSPC, EROFS...).
    public let errno: Int32

    /// Wraps an errno value.
    public init(errno: Int32) {
        self.errno = errno
    }
}

/// The low-level calls a durable write needs, behind a protocol so tests can fail them (ENOSPC at byte N)
/// or "crash" between any two of them. Every method throws `StateIOFailure`.
public protocol StateFileIO: Sendable {
    /// `open(2)`; returns the descriptor.
    func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32
    /// One `write(2)`; returns how many bytes were written, possibly fewer than asked.
    func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int
    /// One `pwrite(2)` at `offset` (the file offset does not move); returns how many bytes were written.
    func pwrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int
    /// `fsync(2)` of a file descriptor.
    func fsync(_ fd: Int32) throws
    /// `close(2)`.
    func close(_ fd: Int32) throws
    /// `rename(2)`, atomic within one file system.
    func rename(_ source: String, _ destination: String) throws
    /// `link(2)`: a second name for the same inode.
    func link(_ source: String, _ destination: String) throws
    /// `unlink(2)`.
    func unlink(_ path: String) throws
    /// `mkdir(2)`.
    func mkdir(_ path: String, mode: mode_t) throws
    /// Opens a directory and `fsync`s it so that renames and creations in it are durable.
    func fsyncDirectory(_ path: String) throws
}

// MARK: - POSIX

/// The real `StateFileIO`: thin wrappers over the system calls that retry on `EINTR`.
public struct StatePOSIXFileIO: StateFileIO {
    /// Creates the real file I/O.
    public init() {}

    /// `open(2)` with `O_CLOEXEC` added.
    public func open(_ path: String, flags: Int32, mode: mode_t) throws -> Int32 {
        try Self.retrying { sysOpen(path, flags | O_CLOEXEC, mode) }
    }

    /// `write(2)`.
    public func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws -> Int {
        try Self.retrying { sysWrite(fd, bytes.baseAddress, bytes.count) }
    }

    /// `pwrite(2)`.
    public func pwrite(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try Self.retrying { sysPwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) }
    }

    /// `fsync(2)`.
    public func fsync(_ fd: Int32) throws {
        _ = try Self.retrying { sysFsync(fd) }
    }

    /// `close(2)`; not retried on `EINTR`, where Linux has already released the descriptor.
    public func close(_ fd: Int32) throws {
        if sysClose(fd) != 0, errno != EINTR { throw StateIOFailure(errno: errno) }
    }

    /// `rename(2)`.
    public func rename(_ source: String, _ destination: String) throws {
        _ = try Self.retrying { sysRename(source, destination) }
    }

    /// `link(2)`.
    public func link(_ source: String, _ destination: String) throws {
        _ = try Self.retrying { sysLink(source, destination) }
    }

    /// `unlink(2)`.
    public func unlink(_ path: String) throws {
        _ = try Self.retrying { sysUnlink(path) }
    }

    /// `mkdir(2)`.
    public func mkdir(_ path: String, mode: mode_t) throws {
        _ = try Self.retrying { sysMkdir(path, mode) }
    }

    /// `open(O_RDONLY | O_DIRECTORY)` + `fsync(2)` + `close(2)`.
    public func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        defer { sysClose(fd) }
        try fsync(fd)
    }

    private static func retrying<T: BinaryInteger>(_ call: () -> T) throws -> T {
        while true {
            let result = call()
            if result >= 0 { return result }
            if errno != EINTR { throw StateIOFailure(errno: errno) }
        }
    }
}

// MARK: - System calls

// Free functions so the seam's same-named methods do not shadow the C calls.
private func sysOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func sysWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int { write(fd, buffer, count) }
private func sysPwrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int, _ offset: off_t) -> Int {
    pwrite(fd, buffer, count, offset)
}
private func sysFsync(_ fd: Int32) -> Int32 { fsync(fd) }
@discardableResult private func sysClose(_ fd: Int32) -> Int32 { close(fd) }
private func sysRename(_ source: String, _ destination: String) -> Int32 { rename(source, destination) }
private func sysLink(_ source: String, _ destination: String) -> Int32 { link(source, destination) }
private func sysUnlink(_ path: String) -> Int32 { unlink(path) }
private func sysMkdir(_ path: String, _ mode: mode_t) -> Int32 { mkdir(path, mode) }
