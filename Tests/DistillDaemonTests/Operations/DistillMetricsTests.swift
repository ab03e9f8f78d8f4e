import DistillDaemon
import Synchronization
import Testing

// MARK: - Exposition

@Suite("DistillMetrics exposition")
struct DistillMetricsTests {
    /// The lines of a fresh render, for exact-line assertions (series order is not stable).
    private func lines(_ metrics: DistillMetrics) -> Set<String> {
        Set(metrics.render().split(separator: "\n").map(String.init))
    }

    @Test("dead letters count by reason and as samples with outcome dead_letter")
    func deadLetters() {
        let metrics = DistillMetrics()
        metrics.deadLetter(reason: "not_finite")
        metrics.deadLetter(reason: "not_finite")
        metrics.deadLetter(reason: "schema")
        let text = lines(metrics)
        #expect(text.contains(#"distilld_dead_letters_total{reason="not_finite"} 2"#))
        #expect(text.contains(#"distilld_dead_letters_total{reason="schema"} 1"#))
        #expect(text.contains(#"distilld_samples_total{outcome="dead_letter"} 3"#))
        #expect(text.contains("# TYPE distilld_dead_letters_total counter"))
    }

    @Test("every sample outcome has a series from the start, so rate() works before the first event")
    func sampleOutcomes() {
        let metrics = DistillMetrics()
        metrics.samplesIngested(5)
        metrics.samplesDuplicate()
        metrics.samplesParked(2)
        metrics.lateSample(dropped: true)
        metrics.lateSample(dropped: false)
        let text = lines(metrics)
        #expect(text.contains(#"distilld_samples_total{outcome="ingested"} 5"#))
        #expect(text.contains(#"distilld_samples_total{outcome="duplicate"} 1"#))
        #expect(text.contains(#"distilld_samples_total{outcome="parked"} 2"#))
        #expect(text.contains(#"distilld_samples_total{outcome="late"} 1"#))
        #expect(text.contains(#"distilld_samples_total{outcome="dead_letter"} 0"#))
        #expect(text.contains("distilld_late_samples_total 2"))
    }

    @Test("gauges, student and output counters")
    func gaugesAndCounters() {
        let metrics = DistillMetrics()
        metrics.setLag(topic: "samples", partition: 3, lag: 42)
        metrics.setOpenWindows(7)
        metrics.setTriggerState(trigger: "kl_drift", group: "eu", active: true)
        metrics.setTriggerState(trigger: "kl_drift", group: "us", active: false)
        metrics.alertEmitted(type: "redistill")
        metrics.setKDLoss(0.25)
        metrics.studentUpdated(3)
        metrics.outputRecords(topic: "distill.alerts", count: 2)
        metrics.deliveryFailed()
        let text = lines(metrics)
        #expect(text.contains(#"distilld_consumer_lag{topic="samples",partition="3"} 42.0"#))
        #expect(text.contains("# TYPE distilld_consumer_lag gauge"))
        #expect(text.contains("distilld_open_windows 7.0"))
        #expect(text.contains(#"distilld_trigger_state{trigger="kl_drift",group="eu"} 1.0"#))
        #expect(text.contains(#"distilld_trigger_state{trigger="kl_drift",group="us"} 0.0"#))
        #expect(text.contains(#"distilld_alerts_total{type="redistill"} 1"#))
        #expect(text.contains("distilld_kd_loss 0.25"))
        #expect(text.contains("distilld_student_updates_total 3"))
        #expect(text.contains(#"distilld_output_records_total{topic="distill.alerts"} 2"#))
        #expect(text.contains("distilld_delivery_failures_total 1"))
    }

    @Test("a revoked partition's lag series disappears")
    func removeLag() {
        let metrics = DistillMetrics()
        metrics.setLag(topic: "samples", partition: 0, lag: 1)
        metrics.setLag(topic: "samples", partition: 1, lag: 2)
        metrics.removeLag(topic: "samples", partition: 0)
        let text = metrics.render()
        #expect(!text.contains(#"partition="0""#))
        #expect(text.contains(#"distilld_consumer_lag{topic="samples",partition="1"} 2.0"#))
    }

    @Test("checkpoint age is absent before the first checkpoint, then computed at scrape time")
    func checkpointAge() {
        let clock = Mutex<Int64>(1_000_000)
        let metrics = DistillMetrics(nowMilliseconds: { clock.withLock { $0 } })
        #expect(!metrics.render().contains("distilld_checkpoint_age_seconds"))

        metrics.checkpointRestored(writtenAtMilliseconds: 990_000)
        #expect(lines(metrics).contains("distilld_checkpoint_age_seconds 10.0"))

        metrics.checkpointWritten(duration: .milliseconds(30))
        clock.withLock { $0 += 2_500 }
        let text = lines(metrics)
        #expect(text.contains("distilld_checkpoint_age_seconds 2.5"))
        #expect(text.contains("# TYPE distilld_checkpoint_write_seconds histogram"))
        #expect(text.contains("distilld_checkpoint_write_seconds_count 1"))
        #expect(text.contains(#"distilld_checkpoint_write_seconds_bucket{le="0.05"} 1"#))
        #expect(text.contains(#"distilld_checkpoint_write_seconds_bucket{le="0.025"} 0"#))
    }

    @Test("the KD loss is absent until the student reports one")
    func kdLossAbsent() {
        let metrics = DistillMetrics()
        #expect(!metrics.render().contains("distilld_kd_loss"))
        metrics.setKDLoss(1.5)
        #expect(lines(metrics).contains("distilld_kd_loss 1.5"))
    }

    @Test("two instances in one process keep separate series")
    func separateInstances() {
        let first = DistillMetrics()
        let second = DistillMetrics()
        first.deadLetter(reason: "schema")
        #expect(first.render().contains(#"distilld_dead_letters_total{reason="schema"} 1"#))
        #expect(!second.render().contains("distilld_dead_letters_total{"))
    }
}

// MARK: - Cardinality

@Suite("DistillMetrics label cardinality")
struct DistillMetricsCardinalityTests {
    @Test("past 100 distinct reasons, new ones fold into other; admitted ones keep counting")
    func reasonCap() {
        let metrics = DistillMetrics()
        #expect(metrics.labelSetLimit == 100)
        for index in 0..<105 {
            metrics.deadLetter(reason: "reason_\(index)")
        }
        metrics.deadLetter(reason: "reason_0")
        metrics.deadLetter(reason: "reason_200")
        let lines = metrics.render().split(separator: "\n").map(String.init)
        let series = lines.filter { $0.hasPrefix("distilld_dead_letters_total{") }
        #expect(series.count == 101)
        #expect(lines.contains(#"distilld_dead_letters_total{reason="reason_0"} 2"#))
        #expect(lines.contains(#"distilld_dead_letters_total{reason="reason_99"} 1"#))
        #expect(lines.contains(#"distilld_dead_letters_total{reason="other"} 6"#))
        #expect(!lines.contains { $0.contains("reason_100") })
        #expect(lines.contains(#"distilld_samples_total{outcome="dead_letter"} 107"#))
    }

    @Test("the cap counts label sets: trigger and group fold together")
    func labelSetCap() {
        let metrics = DistillMetrics(labelSetLimit: 2)
        metrics.setTriggerState(trigger: "kl", group: "a", active: true)
        metrics.setTriggerState(trigger: "kl", group: "b", active: true)
        metrics.setTriggerState(trigger: "kl", group: "c", active: true)
        let text = metrics.render()
        #expect(text.contains(#"distilld_trigger_state{trigger="other",group="other"} 1.0"#))
        #expect(!text.contains(#"group="c""#))
    }

    @Test("label values are escaped, not trusted")
    func escaping() {
        let metrics = DistillMetrics()
        metrics.deadLetter(reason: "bad \"quote\"\nline")
        #expect(metrics.render().contains(#"distilld_dead_letters_total{reason="bad \"quote\"\nline"} 1"#))
    }
}
