#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Reading a checkpoint file

extension StateCheckpoint {
    /// Bytes per `read(2)`; the checksum is updated per chunk, so the file is passed over once.
    static let readChunkSize = 4 * 1024 * 1024

    /// Reads and verifies the checkpoint file at `path` (header, length, CRC-32C, payload) in one pass.
    /// - Throws: `StateError`: `.io(_, ENOENT)` when absent, a corruption kind, or another I/O error.
    public static func read(from path: String) throws -> StateCheckpoint {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StateError.io(path, operation: "open checkpoint", errno: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StateError.io(path, operation: "stat checkpoint", errno: errno) }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            throw StateError.io(path, operation: "open checkpoint", errno: EISDIR)
        }
        let fileSize = UInt64(info.st_size)

        var header = [UInt8](repeating: 0, count: StateCheckpointFormat.headerSize)
        let headerCount = try header.withUnsafeMutableBytes { try readFully(fd, into: $0, path: path) }
        let payloadLength = try header.withUnsafeBytes { raw in
            try StateCheckpointFormat.parseHeader(
                UnsafeRawBufferPointer(rebasing: raw[0..<headerCount]), fileSize: fileSize, path: path)
        }

        var crc = StateCRC32C()
        header.withUnsafeBytes { crc.update($0) }
        // Payload and trailer land in one buffer, read straight into place; no intermediate copies.
        let bodyCount = Int(payloadLength) + StateCheckpointFormat.trailerSize
        let body = try [UInt8](unsafeUninitializedCapacity: bodyCount) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var offset = 0
            while offset < bodyCount {
                let end = min(offset + readChunkSize, bodyCount)
                let requested = end - offset
                let window = UnsafeMutableRawBufferPointer(rebasing: raw[offset..<end])
                let got = try readFully(fd, into: window, path: path)
                let checkedEnd = min(offset + got, Int(payloadLength))
                if checkedEnd > offset {
                    crc.update(UnsafeRawBufferPointer(rebasing: raw[offset..<checkedEnd]))
                }
                offset += got
                initialized = offset
                guard got == requested else {
                    // The file shrank after fstat.
                    throw StateError.truncated(
                        path, expected: fileSize, actual: UInt64(StateCheckpointFormat.headerSize + offset))
                }
            }
        }
        return try body.withUnsafeBytes { raw in
            let stored = raw.loadUnaligned(fromByteOffset: Int(payloadLength), as: UInt32.self).littleEndian
            guard stored == crc.value else {
                throw StateError.checksumMismatch(path, stored: stored, computed: crc.value)
            }
            return try decodePayload(UnsafeRawBufferPointer(rebasing: raw[0..<Int(payloadLength)]), path: path)
        }
    }

    /// Reads until `buffer` is full or end of file; returns the bytes read.
    private static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws -> Int {
        var total = 0
        while total < buffer.count {
            let got = sysRead(fd, buffer.baseAddress! + total, buffer.count - total)
            if got < 0 {
                if errno == EINTR { continue }
                throw StateError.io(path, operation: "read checkpoint", errno: errno)
            }
            if got == 0 { break }
            total += got
        }
        return total
    }
}

extension StateStore {
    func readCheckpoint(at path: String) throws -> StateCheckpoint {
        try StateCheckpoint.read(from: path)
    }
}

// A free function so `StateCheckpoint.read(from:)` does not shadow read(2).
private func sysRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int { read(fd, buffer, count) }
