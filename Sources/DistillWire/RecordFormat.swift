import DistillCore

// MARK: - RecordFormat

/// The wire format of an input topic's records, chosen per topic in the config (`topics.formats`).
public enum RecordFormat: String, Sendable, Equatable, CaseIterable, Codable {
    /// One JSON object per message (`streams/schemas/*.schema.json`), decoded by `SampleDecoder`. The default.
    case json
    /// One serialized `distill.v1` message per message (`proto/distill/v1/records.proto`), decoded by
    /// ``ProtobufSampleDecoder``: for high-rate pipelines.
    case protobuf
}

// MARK: - RecordDecoder

/// Decodes samples and labels of one format with the same rules and errors whichever it is: what the daemon holds
/// per input topic. Shares freely (no mutable state).
public struct RecordDecoder: Sendable {
    /// The format this decoder reads.
    public let format: RecordFormat
    private let json: SampleDecoder
    private let protobuf: ProtobufSampleDecoder

    /// Creates a decoder of `format` for C = `classes` and an optional feature dimension.
    public init(format: RecordFormat, classes: Int, features: Int? = nil,
                limits: SampleDecoder.Limits = SampleDecoder.Limits()) {
        self.format = format
        json = SampleDecoder(classes: classes, features: features, limits: limits)
        protobuf = ProtobufSampleDecoder(classes: classes, features: features, limits: limits)
    }

    /// Decodes one sample record.
    public func decode(_ bytes: [UInt8]) throws(RecordError) -> DistillSample {
        switch format {
        case .json: try json.decode(bytes)
        case .protobuf: try protobuf.decode(bytes)
        }
    }

    /// Decodes one sample record into `sample`, reusing its arrays' storage where the format allows.
    public func decode(_ bytes: [UInt8], into sample: inout DistillSample) throws(RecordError) {
        switch format {
        case .json: try json.decode(bytes, into: &sample)
        case .protobuf: try protobuf.decode(bytes, into: &sample)
        }
    }

    /// Decodes one label record.
    public func decodeLabel(_ bytes: [UInt8]) throws(RecordError) -> LabelRecord {
        switch format {
        case .json: try json.decodeLabel(bytes)
        case .protobuf: try protobuf.decodeLabel(bytes)
        }
    }
}
