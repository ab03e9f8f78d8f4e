import DistillCore
import DistillDaemon
import FuzzSupport
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - FuzzConfig

// Feeds every input, as UTF-8 text (invalid bytes repaired, as `DistillConfig.load` does), to the config parser
// `DistillConfig.parse` and to the topics-file parser `TopicCatalog.parse`. Both must only ever throw
// `ConfigError`; an accepted config must satisfy the rules that `config/README.md` documents.
//
// Every document whose root is a mapping reaches `BrokerSettings.read`, which asks librdkafka to create (and
// destroy) an offline producer to check the `kafka:` properties: that bounds this target at a few hundred
// executions per second, and librdkafka itself is not instrumented.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let text = String(decoding: FuzzDriver.buffer(data, size), as: UTF8.self)
    do throws(ConfigError) {
        checkInvariants(try DistillConfig.parse(text, file: "fuzz.yaml"), text)
    } catch {
        fuzzCheck(error.file == "fuzz.yaml", "ConfigError names file '\(error.file)'")
    }
    do throws(ConfigError) {
        let catalog = try TopicCatalog.parse(text, file: "fuzz.yaml")
        let names = catalog.topics.map(\.spec.name)
        fuzzCheck(Set(names).count == names.count, "a topic is defined twice")
        for spec in catalog.specs {
            fuzzCheck(!spec.name.isEmpty && spec.partitions >= 1 && spec.replicationFactor >= 1, "bad topic \(spec)")
        }
    } catch {
        fuzzCheck(error.file == "fuzz.yaml", "ConfigError names file '\(error.file)'")
    }
    return 0
}

func checkInvariants(_ config: DistillConfig, _ text: String) {
    let classes = config.model.classes
    fuzzCheck(classes.count >= 2, "\(classes.count) classes")
    fuzzCheck(Set(classes).count == classes.count, "duplicate class names")
    fuzzCheck(config.model.rareClasses.allSatisfy { (0..<classes.count).contains($0) }, "rare class out of range")
    if let d = config.model.features { fuzzCheck(d >= 1, "features \(d)") }
    fuzzCheck(!config.consumerGroup.isEmpty, "empty consumer group")
    fuzzCheck(config.statistics.classes == classes.count, "statistics for \(config.statistics.classes) classes")
    fuzzCheck(config.student.distiller.batchSize >= 1, "batch size \(config.student.distiller.batchSize)")
    fuzzCheck(config.student.distiller.temperature > 0, "temperature \(config.student.distiller.temperature)")
    fuzzCheck((0...65535).contains(config.http.port), "port \(config.http.port)")
    fuzzCheck(config.labels.maxBuffered >= 1, "max_buffered \(config.labels.maxBuffered)")
    fuzzCheck(config.state.intervalMillis >= 100, "state interval \(config.state.intervalMillis)")
    if case let .embedded(n) = config.broker.brokers { fuzzCheck((1...32).contains(n), "\(n) embedded brokers") }
    // The revision stamped on alerts depends on the bytes alone.
    do throws(ConfigError) {
        let again = try DistillConfig.parse(text, file: "again.yaml")
        fuzzCheck(again.revision == config.revision, "revision changed")
    } catch {
        fuzzCheck(false, "the same text was accepted once and then rejected: \(error)")
    }
}

exit(FuzzDriver.run(fuzz))
