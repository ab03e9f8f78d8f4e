import DistillDaemon
import Testing

// MARK: - CRC-32C

@Suite("StateCRC32C")
struct StateCRC32CTests {
    @Test("published check value: CRC-32C(\"123456789\") = 0xE3069283")
    func checkValue() {
        #expect(StateCRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(StateCRC32C.checksum([UInt8]()) == 0)
    }

    /// RFC 3720 appendix B.4 (iSCSI) test vectors.
    @Test("RFC 3720 B.4 vectors")
    func rfc3720() {
        #expect(StateCRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(StateCRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(StateCRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(StateCRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
    }

    @Test("streaming in uneven chunks equals one pass, including unaligned tails")
    func streaming() {
        let data = (0..<10_007).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let whole = StateCRC32C.checksum(data)
        for chunk in [1, 3, 7, 8, 9, 64, 4096] {
            var crc = StateCRC32C()
            var start = 0
            while start < data.count {
                let end = min(start + chunk, data.count)
                crc.update(data[start..<end])
                start = end
            }
            #expect(crc.value == whole, "chunk \(chunk)")
        }
        // Bitwise reference, independent of the tables.
        var reference: UInt32 = 0xFFFF_FFFF
        for byte in data {
            reference ^= UInt32(byte)
            for _ in 0..<8 { reference = (reference & 1) != 0 ? (reference >> 1) ^ 0x82F6_3B78 : reference >> 1 }
        }
        #expect(whole == reference ^ 0xFFFF_FFFF)
    }
}

// MARK: - Format

@Suite("StateCheckpoint binary format")
struct StateCheckpointFormatTests {
    static let tiny = StateCheckpoint(
        sequence: 5,
        createdAtMilliseconds: 0x0102_0304_0506_0708,
        configRevision: "r1",
        writerVersion: "v",
        offsets: [
            StateTopicPartition(topic: "t", partition: 2): 9,
            StateTopicPartition(topic: "a", partition: 0): 1,
        ],
        sections: [StateSection(name: "s", bytes: [0xAA, 0xBB])])

    @Test("encodes to the documented bytes, little-endian, offsets sorted")
    func goldenBytes() throws {
        let payload: [UInt8] = [
            0x05, 0, 0, 0, 0, 0, 0, 0,  // sequence
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // createdAtMilliseconds
            0x02, 0, 0, 0, 0x72, 0x31,  // "r1"
            0x01, 0, 0, 0, 0x76,  // "v"
            0x02, 0, 0, 0,  // 2 offsets
            0x01, 0, 0, 0, 0x61, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0,  // a/0 -> 1
            0x01, 0, 0, 0, 0x74, 0x02, 0, 0, 0, 0x09, 0, 0, 0, 0, 0, 0, 0,  // t/2 -> 9
            0x01, 0, 0, 0,  // 1 section
            0x01, 0, 0, 0, 0x73, 0x02, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB,  // "s": AA BB
        ]
        #expect(payload.count == 84)
        var expected: [UInt8] = [0x44, 0x53, 0x54, 0x4C, 0x43, 0x4B, 0x50, 0x54]  // DSTLCKPT
        expected += [0x01, 0, 0, 0]  // version 1
        expected += [84, 0, 0, 0, 0, 0, 0, 0]  // payload length
        expected += payload
        let crc = StateCRC32C.checksum(expected)
        expected += [UInt8(crc & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8((crc >> 16) & 0xFF), UInt8(crc >> 24)]

        let encoded = try Self.tiny.encoded()
        #expect(encoded == expected)
        #expect(try StateCheckpoint.decode(encoded) == Self.tiny)
    }

    @Test("round trip keeps section order, empty sections and large offsets")
    func roundTrip() throws {
        var checkpoint = stateSampleCheckpoint(sequence: 42, sectionSize: 1000)
        checkpoint.offsets[StateTopicPartition(topic: "ünïcode-topic", partition: Int32.max)] = Int64.max
        let decoded = try StateCheckpoint.decode(try checkpoint.encoded())
        #expect(decoded == checkpoint)
        #expect(decoded.sections.map(\.name) == ["windows", "student.weights", "empty"])
        #expect(decoded.section(named: "empty") == [])
        #expect(decoded.section(named: "nope") == nil)
    }

    @Test("rejects what it could not read back: duplicate or empty names, negative offsets")
    func encodeValidation() {
        var duplicate = Self.tiny
        duplicate.sections.append(StateSection(name: "s", bytes: []))
        var empty = Self.tiny
        empty.sections = [StateSection(name: "", bytes: [1])]
        var negative = Self.tiny
        negative.offsets[StateTopicPartition(topic: "x", partition: 0)] = -1
        for bad in [duplicate, empty, negative] {
            #expect {
                _ = try bad.encoded()
            } throws: { error in
                (error as? StateError)?.code == "state.invalid_checkpoint"
            }
        }
    }

    @Test("every prefix of a valid file is reported truncated or bad magic, never decoded")
    func everyPrefix() throws {
        let encoded = try Self.tiny.encoded()
        for length in 0..<encoded.count {
            do {
                _ = try StateCheckpoint.decode(Array(encoded[0..<length]), path: "/x/state.ckpt")
                Issue.record("prefix \(length) decoded")
            } catch let error as StateError {
                guard case .truncated(let expected, let actual) = error.kind else {
                    Issue.record("prefix \(length): \(error)")
                    continue
                }
                #expect(actual == UInt64(length))
                #expect(expected == (length < 20 ? 24 : UInt64(encoded.count)))
            }
        }
    }

    @Test("every single-bit flip is detected")
    func everyBitFlip() throws {
        let encoded = try Self.tiny.encoded()
        var codes: [String: Int] = [:]
        for index in encoded.indices {
            for bit in 0..<8 {
                var damaged = encoded
                damaged[index] ^= UInt8(1 << bit)
                do {
                    _ = try StateCheckpoint.decode(damaged)
                    Issue.record("flip at \(index) bit \(bit) decoded")
                } catch let error as StateError {
                    #expect(error.isCorruption)
                    codes[error.code, default: 0] += 1
                }
            }
        }
        // Flips in the payload or trailer are checksum mismatches; header flips are magic/version/length errors.
        #expect(codes["state.checksum_mismatch"] == (84 + 4) * 8)
        #expect(codes["state.bad_magic"] == 8 * 8)
        #expect(codes["state.unsupported_version"] == 4 * 8)
    }

    @Test("old and newer format versions are reported as unsupported, with both versions")
    func versions() throws {
        for version: UInt32 in [0, 2, 0xFFFF_FFFF] {
            let file = stateCheckpointFile(version: version, payload: [])
            #expect {
                _ = try StateCheckpoint.decode(file, path: "/s/state.ckpt")
            } throws: { error in
                let error = error as! StateError
                return error.kind == .unsupportedVersion(found: version, supported: 1...1)
                    && error.reason.contains("format version \(version) is a\(version == 0 ? "n older" : " newer")")
            }
        }
    }

    @Test("a well-checksummed payload that overruns names the section")
    func malformedSection() throws {
        var payload = stateLE(UInt64(1)) + stateLE(Int64(0)) + stateLEString("") + stateLEString("")
        payload += stateLE(UInt32(0))  // no offsets
        payload += stateLE(UInt32(2))
        payload += stateLEString("windows") + stateLE(UInt64(3)) + [1, 2, 3]
        payload += stateLEString("registry") + stateLE(UInt64(1000)) + [1, 2, 3]  // declares 1000, has 3
        let file = stateCheckpointFile(payload: payload)
        #expect {
            _ = try StateCheckpoint.decode(file, path: "/s/state.ckpt")
        } throws: { error in
            let error = error as! StateError
            return error.kind == .malformedSection(name: "registry") && error.code == "state.malformed_section"
                && error.description.contains("/s/state.ckpt")
        }
        // Invalid UTF-8 in the metadata strings.
        let badText = stateCheckpointFile(payload: stateLE(UInt64(1)) + stateLE(Int64(0)) + stateLE(UInt32(1)) + [0xFF])
        #expect(throws: StateError.self) { try StateCheckpoint.decode(badText) }
        do {
            _ = try StateCheckpoint.decode(badText)
        } catch let error as StateError {
            #expect(error.kind == .malformedSection(name: "<metadata>"))
        }
    }

    @Test("bytes after the trailer and foreign files are rejected")
    func trailingAndMagic() throws {
        let encoded = try Self.tiny.encoded()
        #expect {
            _ = try StateCheckpoint.decode(encoded + [0], path: "p")
        } throws: { ($0 as? StateError)?.kind == .trailingBytes(count: 1) }
        let foreigns = [Array("{\"windows\": []}".utf8), Array("DSTLCKPX".utf8) + [UInt8](repeating: 0, count: 40), [0]]
        for foreign in foreigns {
            #expect {
                _ = try StateCheckpoint.decode(foreign, path: "p")
            } throws: { ($0 as? StateError)?.kind == .badMagic }
        }
    }
}
