import DistillCore
import Foundation
import Testing

/// `DistillGroupKey` hashes a fingerprint computed once; equality, hashing and the encoded form must still follow the
/// five fields exactly.
@Suite("Group keys")
struct DistillGroupKeyTests {
    static let base = DistillGroupKey(newTeacher: "v2", oldTeacher: "v1", student: "s1", pairedTeacher: nil,
                                      slice: "eu")

    @Test("keys with the same fields are equal and hash alike; a change in any field makes another key")
    func equality() {
        let same = DistillGroupKey(newTeacher: "v2", oldTeacher: "v1", student: "s1", slice: "eu")
        #expect(same == Self.base && same.hashValue == Self.base.hashValue)
        let others = [
            DistillGroupKey(newTeacher: "v3", oldTeacher: "v1", student: "s1", slice: "eu"),
            DistillGroupKey(newTeacher: "v2", oldTeacher: nil, student: "s1", slice: "eu"),
            DistillGroupKey(newTeacher: "v2", oldTeacher: "v1", student: nil, slice: "eu"),
            DistillGroupKey(newTeacher: "v2", oldTeacher: "v1", student: "s1", pairedTeacher: "v1", slice: "eu"),
            DistillGroupKey(newTeacher: "v2", oldTeacher: "v1", student: "s1", slice: nil),
            // The same strings in other fields.
            DistillGroupKey(newTeacher: "v1", oldTeacher: "v2", student: "s1", slice: "eu"),
        ]
        for other in others { #expect(other != Self.base, "\(other)") }
        #expect(Set(others + [Self.base, same]).count == others.count + 1)
        var dictionary: [DistillGroupKey: Int] = [:]
        for (i, key) in (others + [Self.base]).enumerated() { dictionary[key] = i }
        #expect(dictionary[same] == others.count)
    }

    @Test("the encoded form is the five fields (nil ones absent), and decoding restores an equal, equally hashed key")
    func codable() throws {
        let data = try JSONEncoder().encode(Self.base)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        #expect(object == ["newTeacher": "v2", "oldTeacher": "v1", "student": "s1", "slice": "eu"])
        let decoded = try JSONDecoder().decode(DistillGroupKey.self, from: data)
        #expect(decoded == Self.base && decoded.hashValue == Self.base.hashValue)
        let pooled = DistillGroupKey(newTeacher: "v2")
        let back = try JSONDecoder().decode(DistillGroupKey.self, from: try JSONEncoder().encode(pooled))
        #expect(back == pooled && back.oldTeacher == nil && back.slice == nil)
    }
}
