import Foundation
import Testing

@testable import DistillCore

// MARK: - Registry record decoding

@Suite("Teacher registry records")
struct TeacherRecordTests {
    static let valid = """
        {"version": "distilbert-v8", "major": 1, "created_at": 1763900000000, "accuracy": 0.931, "ece": 0.021,
         "temperature": 1.4, "data_hash": "sha256:abc", "status": "active", "owner": "ml-platform"}
        """

    @Test("a valid record decodes; unknown extra fields are allowed")
    func decodesValid() throws {
        let r = try TeacherRecord.decode(json: Self.valid, key: "distilbert-v8")
        #expect(
            r
                == TeacherRecord(
                    version: "distilbert-v8", major: 1, createdAtMilliseconds: 1_763_900_000_000, accuracy: 0.931,
                    ece: 0.021,
                    temperature: 1.4, dataHash: "sha256:abc", status: .active))
        let again = try TeacherRecord.decode(json: try r.encodedJSON())
        #expect(again == r)
    }

    @Test("optional temperature and data_hash may be absent")
    func optionalFields() throws {
        let r = try TeacherRecord.decode(
            json: #"{"version":"v1","major":0,"created_at":1,"accuracy":0.9,"ece":0.03,"status":"lts"}"#)
        #expect(r.temperature == nil && r.dataHash == nil && r.status == .lts)
    }

    /// Each malformed record and the field its error must name.
    static let malformed: [(String, String)] = [
        (#"{"major":1,"created_at":1,"accuracy":0.9,"ece":0.02,"status":"active"}"#, "version"),
        (#"{"version":"","major":1,"created_at":1,"accuracy":0.9,"ece":0.02,"status":"active"}"#, "version"),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":0.9,"ece":0.02,"status":"paused"}"#, "status"),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":1.7,"ece":0.02,"status":"active"}"#, "accuracy"),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":"high","ece":0.02,"status":"active"}"#, "accuracy"),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":0.9,"ece":1e999,"status":"active"}"#, "ece"),
        (
            #"{"version":"v","major":1,"created_at":1,"accuracy":0.9,"ece":0.02,"temperature":-1,"status":"active"}"#,
            "temperature"
        ),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":NaN,"ece":0.02,"status":"active"}"#, "accuracy"),
        (#"{"version":"v","major":-2,"created_at":1,"accuracy":0.9,"ece":0.02,"status":"active"}"#, "major"),
        (#"{"version":"v","major":1,"accuracy":0.9,"ece":0.02,"status":"active"}"#, "created_at"),
        (#"{"version":"v","major":1,"created_at":1,"accuracy":0.9,"ece":0.02,"status":null}"#, "status"),
    ]

    @Test("malformed records are rejected naming the field", arguments: malformed.indices)
    func rejectsMalformed(index: Int) {
        let (json, field) = Self.malformed[index]
        do {
            _ = try TeacherRecord.decode(json: json)
            Issue.record("accepted: \(json)")
        } catch let e as TeacherRegistryError {
            #expect(e.code == .invalidRecord)
            #expect(e.field == field, "\(e)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("a record whose version differs from its key is rejected; so is non-JSON")
    func keyMismatch() {
        #expect(throws: TeacherRegistryError.self) { try TeacherRecord.decode(json: Self.valid, key: "distilbert-v9") }
        #expect(throws: TeacherRegistryError.self) { try TeacherRecord.decode(json: "{not json") }
    }
}
