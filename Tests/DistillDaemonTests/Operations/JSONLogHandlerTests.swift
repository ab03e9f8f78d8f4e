import DistillDaemon
import Foundation
import Logging
import Synchronization
import Testing

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test("Each log call is one JSON object with level, label, message, metadata and an RFC 3339 time")
    func jsonLines() throws {
        let lines = Mutex<[Data]>([])
        let handler = JSONLogHandler(label: "distilld", level: .info, write: { d in lines.withLock { $0.append(d) } })
        var logger = Logger(label: "distilld") { _ in handler }
        logger[metadataKey: "instance"] = "a"
        logger.debug("hidden")
        logger.warning("lag high", metadata: ["partition": "3"])
        let out = lines.withLock { $0 }
        #expect(out.count == 1, "debug is below the level")
        let line = try #require(out.first)
        #expect(line.last == UInt8(ascii: "\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: line) as? [String: String])
        #expect(object["level"] == "warning" && object["message"] == "lag high" && object["label"] == "distilld")
        #expect(object["partition"] == "3" && object["instance"] == "a")
        #expect(object["ts"]?.hasSuffix("Z") == true)
    }
}
