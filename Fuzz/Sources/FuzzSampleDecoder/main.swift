import DistillCore
import FuzzSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - FuzzSampleDecoder

// Feeds every input to `SampleDecoder.decode` and `decodeLabel` under several (C, D, limits) and checks what the
// decoder promises: it never crashes, and a record it accepts satisfies every rule in its doc comment. A broken
// promise is a `fatalError`, which libFuzzer records as a crash. The raw-pointer entry points read libFuzzer's own
// exactly-sized buffer, so AddressSanitizer sees any read past the record's last byte.

/// One decoder under test, with a reused sample that `decode(_:into:)` must fully overwrite.
final class Subject {
    let decoder: SampleDecoder
    var reused: DistillSample

    init(_ decoder: SampleDecoder) {
        self.decoder = decoder
        self.reused = DistillSample(classes: decoder.classes)
    }
}

/// The shapes distilld runs with: the default config (C = 16, D = 64), a small model without a feature check,
/// one that forbids features, the shape of `streams/schemas/examples/sample.json`, and tight limits.
nonisolated(unsafe) let subjects: [Subject] = [
    Subject(SampleDecoder(classes: 16, features: 64)),
    Subject(SampleDecoder(classes: 4, features: nil)),
    Subject(SampleDecoder(classes: 4, features: 0)),
    Subject(SampleDecoder(classes: 4, features: 2)),
    Subject(SampleDecoder(classes: 2, features: nil,
                          limits: SampleDecoder.Limits(maxRecordBytes: 256, maxDepth: 3, maxIDBytes: 4))),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = FuzzDriver.buffer(data, size)
    let bytes = [UInt8](raw)
    for subject in subjects {
        checkSample(subject, raw: raw, bytes: bytes)
        checkLabel(subject.decoder, raw: raw, bytes: bytes)
    }
    checkNumber(bytes)
    return 0
}

// MARK: - Samples

func checkSample(_ subject: Subject, raw: UnsafeRawBufferPointer, bytes: [UInt8]) {
    let decoder = subject.decoder
    let fresh: Result<DistillSample, RecordError>
    do throws(RecordError) { fresh = .success(try decoder.decode(bytes)) } catch { fresh = .failure(error) }

    // The raw-pointer path, into a sample left over from an earlier (possibly failed) input.
    let reusedResult: Result<Void, RecordError>
    do throws(RecordError) {
        try decoder.decode(raw, into: &subject.reused)
        reusedResult = .success(())
    } catch {
        reusedResult = .failure(error)
    }

    switch (fresh, reusedResult) {
    case let (.success(sample), .success):
        checkInvariants(sample, decoder)
        fuzzCheck(subject.reused == sample, "decode(_:into:) over a reused sample differs from a fresh decode")
    case let (.failure(a), .failure(b)):
        fuzzCheck(a == b, "the [UInt8] and raw-pointer paths throw different errors: \(a) vs \(b)")
    case let (.success, .failure(error)):
        fuzzCheck(false, "decode([UInt8]) accepted a record that decode(_:into:) rejected: \(error)")
    case let (.failure(error), .success):
        fuzzCheck(false, "decode(_:into:) accepted a record that decode([UInt8]) rejected: \(error)")
    }
}

func checkInvariants(_ s: DistillSample, _ decoder: SampleDecoder) {
    let c = decoder.classes
    fuzzCheck(s.classes == c, "classes \(s.classes) != \(c)")
    let idBytes = s.id.utf8.count
    fuzzCheck(idBytes >= 1 && idBytes <= decoder.limits.maxIDBytes, "id is \(idBytes) bytes")
    fuzzCheck(s.timestamp >= 0, "negative ts \(s.timestamp)")

    fuzzCheck(!s.teacherVersions.isEmpty, "no teachers")
    fuzzCheck(Set(s.teacherVersions).count == s.teacherVersions.count, "duplicate teacher versions")
    fuzzCheck(s.teacherVersions.allSatisfy { !$0.isEmpty }, "empty teacher version")
    fuzzCheck(s.teacherLogits.count == s.teacherVersions.count * c,
              "teacher logits \(s.teacherLogits.count) for \(s.teacherVersions.count) teachers × \(c)")
    fuzzCheck(s.teacherLogits.allSatisfy(\.isFinite), "non-finite teacher logit")

    if let version = s.studentVersion {
        fuzzCheck(!version.isEmpty, "empty student version")
        fuzzCheck(s.studentLogits.count == c, "student logits \(s.studentLogits.count) != \(c)")
    } else {
        fuzzCheck(s.studentLogits.isEmpty, "student logits without a student version")
    }
    fuzzCheck(s.studentLogits.allSatisfy(\.isFinite), "non-finite student logit")

    if let d = decoder.features {
        fuzzCheck(s.features.isEmpty || s.features.count == d, "features \(s.features.count) != \(d)")
    }
    fuzzCheck(s.features.allSatisfy(\.isFinite), "non-finite feature")

    if let label = s.label { fuzzCheck((0..<c).contains(label), "label \(label) outside 0..<\(c)") }

    // What the pipeline does next with a decoded sample must be safe too.
    for (i, version) in s.teacherVersions.enumerated() {
        fuzzCheck(s.teacherIndex(of: version) == i, "teacherIndex(of: \(version)) != \(i)")
        fuzzCheck(s.teacherLogits(at: i).count == c, "teacherLogits(at: \(i)) has the wrong length")
    }
}

// MARK: - Labels

func checkLabel(_ decoder: SampleDecoder, raw: UnsafeRawBufferPointer, bytes: [UInt8]) {
    let viaArray: Result<LabelRecord, RecordError>
    do throws(RecordError) { viaArray = .success(try decoder.decodeLabel(bytes)) } catch { viaArray = .failure(error) }
    let viaRaw: Result<LabelRecord, RecordError>
    do throws(RecordError) { viaRaw = .success(try decoder.decodeLabel(raw)) } catch { viaRaw = .failure(error) }
    fuzzCheck(viaArray == viaRaw, "decodeLabel: the [UInt8] and raw-pointer paths disagree")
    guard case let .success(label) = viaArray else { return }
    let idBytes = label.id.utf8.count
    fuzzCheck(idBytes >= 1 && idBytes <= decoder.limits.maxIDBytes, "label id is \(idBytes) bytes")
    fuzzCheck((0..<decoder.classes).contains(label.label), "label \(label.label) outside 0..<\(decoder.classes)")
    fuzzCheck(label.timestamp >= 0, "negative label ts \(label.timestamp)")
}

// MARK: - Numbers

/// The decoder promises floats identical to `strtof` (and doubles to `strtod`): when the whole input is one JSON
/// number literal, both must agree bit for bit.
func checkNumber(_ bytes: [UInt8]) {
    guard !bytes.isEmpty, bytes.count <= 512 else { return }
    let text = String(decoding: bytes, as: UTF8.self)
    if let f = parseJSONFloat(text) {
        let expected = text.withCString { strtof($0, nil) }
        fuzzCheck(f.bitPattern == expected.bitPattern,
                  "parseJSONFloat(\(text)) = \(f) (0x\(String(f.bitPattern, radix: 16))) but strtof gives "
                  + "\(expected) (0x\(String(expected.bitPattern, radix: 16)))")
    }
    if let d = parseJSONDouble(text) {
        let expected = text.withCString { strtod($0, nil) }
        fuzzCheck(d.bitPattern == expected.bitPattern,
                  "parseJSONDouble(\(text)) = \(d) but strtod gives \(expected)")
    }
}

exit(FuzzDriver.run(fuzz))
