import DistillCore
import Foundation
import FuzzSupport

// MARK: - FuzzTeacherRecord

// Feeds every input to `TeacherRecord.decode(json:key:)` (a record of the `teachers` topic, read from Kafka).
// It must only ever throw `TeacherRegistryError`; a record it accepts must pass `validate()`, survive its own
// `encodedJSON()` unchanged, and be accepted again under its own version as the message key.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let json = Data(FuzzDriver.buffer(data, size))
    let record: TeacherRecord
    do {
        record = try TeacherRecord.decode(json: json)
    } catch is TeacherRegistryError {
        return 0
    } catch {
        fuzzCheck(false, "decode threw \(type(of: error)), not TeacherRegistryError: \(error)")
        return 0
    }
    checkInvariants(record, json)
    return 0
}

func checkInvariants(_ record: TeacherRecord, _ json: Data) {
    fuzzCheck(!record.version.isEmpty, "empty version")
    fuzzCheck(record.major >= 0, "major \(record.major)")
    fuzzCheck(record.accuracy.isFinite && (0...1).contains(record.accuracy), "accuracy \(record.accuracy)")
    fuzzCheck(record.ece.isFinite && (0...1).contains(record.ece), "ece \(record.ece)")
    if let t = record.temperature { fuzzCheck(t.isFinite && t > 0, "temperature \(t)") }
    do {
        try record.validate()
    } catch {
        fuzzCheck(false, "an accepted record fails validate(): \(error)")
    }

    // The key rule: the record's own version is accepted as its key, any other version is not.
    do {
        let keyed = try TeacherRecord.decode(json: json, key: record.version)
        fuzzCheck(keyed == record, "decoding with its own key gives a different record")
    } catch {
        fuzzCheck(false, "rejected under its own version as key: \(error)")
    }
    if (try? TeacherRecord.decode(json: json, key: record.version + "x")) != nil {
        fuzzCheck(false, "accepted under a key that differs from its version")
    }

    // Round trip through the wire form the registry writes.
    do {
        let encoded = try record.encodedJSON()
        let again = try TeacherRecord.decode(json: encoded)
        fuzzCheck(again == record, "encodedJSON() round trip changed the record: \(record) -> \(again)")
    } catch {
        fuzzCheck(false, "encodedJSON() round trip failed: \(error)")
    }
}

exit(FuzzDriver.run(fuzz))
