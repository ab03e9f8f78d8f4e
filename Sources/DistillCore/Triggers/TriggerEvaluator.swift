// MARK: - Trigger state machine

/// Evaluates the trigger matrix on closed windows, one episode state machine per (rule, subject).
///
/// Per (rule, subject): idle → (crossing, outside cooldown) → `fire` → active; while active each crossing
/// or undecided evaluation is `hold`; when the point figure is back inside the threshold by `hysteresis`,
/// `resolve` → idle. A crossing within `cooldownMillis` (event time) of the last fire is `hold`. Crossing means
/// the near end of the interval is past the threshold (`significant`) or the point is (`point`). All times
/// are event times (window ends), so replays give identical decisions and episode ids. `Codable` for
/// checkpoints.
public struct TriggerEvaluator: Sendable, Codable {
    /// The matrix being evaluated.
    public var config: TriggerMatrixConfig
    /// Confidence level of the intervals (informational; intervals are computed by the statistics).
    public var level: Double

    /// State of one (rule, subject) episode machine.
    public struct EpisodeState: Sendable, Codable, Equatable {
        /// Event time (ms) the active episode started, nil when idle.
        public var activeSince: Int64?
        /// Event time (ms) of the last fire.
        public var lastFired: Int64?
    }

    /// States keyed by `rule|subject`.
    public private(set) var states: [String: EpisodeState] = [:]

    /// Creates an evaluator.
    public init(config: TriggerMatrixConfig = TriggerMatrixConfig(), level: Double = 0.95) {
        self.config = config
        self.level = level
    }

    /// Takes over the episode states of `other` (same rule names), keeping this evaluator's thresholds: used when
    /// a checkpoint is restored under a reloaded config, so open episodes neither re-fire nor get lost.
    public mutating func adoptEpisodes(from other: TriggerEvaluator) {
        states = other.states
    }

    // MARK: Windows

    /// Evaluates every enabled rule bound to `window.name` on every group of the window, groups in a stable
    /// order (by description). Returns one decision per (rule, group[, rare class]).
    public mutating func evaluate(window: DistillWindow) -> [TriggerDecision] {
        var out: [TriggerDecision] = []
        for key in window.groups.keys.sorted(by: { $0.description < $1.description }) {
            let figures = window.groups[key]!.figures(level: level)
            out += evaluate(figures: figures, group: key, window: window.name, start: window.start, end: window.end)
        }
        return out
    }

    /// Like `evaluate(window:)`, but returns per group the figures (rare classes flagged) beside the decisions
    /// and the combined verdict, ready to publish as the window's audit output.
    public mutating func report(window: DistillWindow) -> [WindowReport] {
        window.groups.keys.sorted(by: { $0.description < $1.description }).map { key in
            let figures = window.groups[key]!.figures(level: level).flaggingRareClasses(config.rareClasses)
            let decisions = evaluate(figures: figures, group: key, window: window.name, start: window.start,
                                     end: window.end)
            return WindowReport(window: window.name, start: window.start, end: window.end, samples: window.samples,
                                lateSamples: window.lateSamples, group: key, figures: figures, decisions: decisions,
                                verdict: TriggerVerdict.combine(decisions))
        }
    }

    /// Evaluates the rules bound to `window` on one group's figures.
    public mutating func evaluate(figures f: DistillFigures, group: DistillGroupKey, window: String, start: Int64,
                                  end: Int64) -> [TriggerDecision] {
        var out: [TriggerDecision] = []
        for rule in config.rules where rule.enabled && rule.window == window {
            let subject = group.description
            switch rule.metric {
            case .teacherAccuracyDelta:
                out.append(step(rule, subject, group, nil, f.teacherAccuracyDelta, nil, f.teacherLabeledSamples,
                                start, end))
            case .teacherECEDelta:
                out.append(step(rule, subject, group, nil, f.teacherECEDelta, nil, f.teacherLabeledSamples, start, end))
            case .teacherKL:
                out.append(step(rule, subject, group, nil, f.teacherKL, nil, f.klSamples, start, end))
            case .studentAgreement:
                out.append(step(rule, subject, group, nil, f.studentAgreement, nil, f.agreementSamples, start, end))
            case .qualityGapDrift:
                let base = config.baselines.qualityGap
                out.append(step(rule, subject, group, nil, f.qualityGap.map { Self.shift($0, by: -base) }, base,
                                f.studentLabeledSamples, start, end))
            case .rareClassAccuracyDrop:
                for k in config.rareClasses.sorted() where k < f.perClass.count {
                    let c = f.perClass[k]
                    guard let base = config.baselines.rareClassAccuracy[k] else {
                        // No baseline: record the skip (and why) rather than nothing.
                        var d = step(rule, subject + "#class=\(k)", group, k, nil, nil, c.samples, start, end)
                        d.reason = "no baseline accuracy for rare class \(k)"
                        out.append(d)
                        continue
                    }
                    // drop = baseline − accuracy: the interval flips.
                    let drop = c.studentAccuracy.map {
                        BootstrapEstimate(value: base - $0.value, lower: base - $0.upper, upper: base - $0.lower,
                                          replicates: $0.replicates)
                    }
                    out.append(step(rule, subject + "#class=\(k)", group, k, drop, base, c.samples, start, end))
                }
            case .teacherRegression:
                // Accuracy drop (old − new) ≥ threshold, or ECE rise ≥ secondaryThreshold: the part further past
                // its threshold (relative to the near end) is the evidence.
                let drop = f.teacherAccuracyDelta.map {
                    BootstrapEstimate(value: -$0.value, lower: -$0.upper, upper: -$0.lower, replicates: $0.replicates)
                }
                let eceRise = f.teacherECEDelta
                let eceTolerance = rule.secondaryThreshold ?? .infinity
                var useECE = false
                if let e = eceRise {
                    let eceMargin = nearEnd(e, rule) - eceTolerance
                    let accMargin = drop.map { nearEnd($0, rule) - rule.threshold } ?? -.infinity
                    useECE = eceMargin > accMargin
                }
                var r = rule
                if useECE { r.threshold = eceTolerance }
                // Resolved only when both parts are back inside their thresholds by the hysteresis.
                var ecePart = rule
                ecePart.threshold = eceTolerance
                let resolved = (drop.map { Self.isResolved($0.value, rule) } ?? true)
                    && (eceRise.map { Self.isResolved($0.value, ecePart) } ?? true)
                var decision = step(r, subject, group, nil, useECE ? eceRise : drop, nil, f.teacherLabeledSamples,
                                    start, end, stateRule: rule.name, resolved: resolved)
                decision.reason = (useECE ? "new − old teacher ECE: " : "old − new teacher accuracy: ")
                    + decision.reason
                out.append(decision)
            case .teacherMajorVersion:
                continue
            }
        }
        return out
    }

    // MARK: Events

    /// A teacher version event: fires `teacher_major_version` at once if `major > previousMajor` and this
    /// version has not fired before (one episode per version); otherwise `hold` (seen) or `skip` (not major).
    public mutating func teacherVersionAppeared(_ event: TeacherVersionEvent) -> [TriggerDecision] {
        var out: [TriggerDecision] = []
        for rule in config.rules where rule.enabled && rule.metric == .teacherMajorVersion {
            let subject = "teacher:\(event.version)"
            let stateKey = rule.name + "|" + subject
            let value = Double(event.major - event.previousMajor)
            var kind = TriggerDecision.Kind.skip
            var reason = "major \(event.major) is not above \(event.previousMajor)"
            var episodeStart: Int64?
            if event.major > event.previousMajor {
                if let s = states[stateKey], let since = s.activeSince {
                    kind = .hold
                    episodeStart = since
                    reason = "major version \(event.major) already fired"
                } else {
                    kind = .fire
                    episodeStart = event.eventTime
                    states[stateKey] = EpisodeState(activeSince: event.eventTime, lastFired: event.eventTime)
                    reason = "teacher \(event.version) is major \(event.major) > \(event.previousMajor)"
                }
            }
            out.append(TriggerDecision(
                kind: kind, rule: rule.name, metric: rule.metric, action: rule.action, subject: subject, group: nil,
                classIndex: nil, window: "event", windowStart: event.eventTime, windowEnd: event.eventTime,
                samples: 1, minSamples: 1, value: value, lower: value, upper: value, threshold: 0,
                comparison: .above, mode: .point, baseline: nil,
                episodeID: episodeStart.map { "\(rule.name)|\(subject)|\($0)" }, episodeStart: episodeStart,
                reason: reason))
        }
        return out
    }

    // MARK: Machine

    func nearEnd(_ e: BootstrapEstimate, _ rule: TriggerRule) -> Double {
        switch rule.mode {
        case .point: return e.value
        case .significant: return rule.comparison.firesHigh ? e.lower : e.upper
        }
    }

    static func shift(_ e: BootstrapEstimate, by d: Double) -> BootstrapEstimate {
        BootstrapEstimate(value: e.value + d, lower: e.lower + d, upper: e.upper + d, replicates: e.replicates)
    }

    /// True if the point value is back inside the threshold by the hysteresis margin.
    static func isResolved(_ value: Double, _ rule: TriggerRule) -> Bool {
        switch rule.comparison {
        case .atLeast: return value < rule.threshold - rule.hysteresis
        case .above: return value <= rule.threshold - rule.hysteresis
        case .below: return value >= rule.threshold + rule.hysteresis
        case .atMost: return value > rule.threshold + rule.hysteresis
        }
    }

    mutating func step(_ rule: TriggerRule, _ subject: String, _ group: DistillGroupKey?, _ classIndex: Int?,
                       _ estimate: BootstrapEstimate?, _ baseline: Double?, _ samples: Double, _ start: Int64,
                       _ end: Int64, stateRule: String? = nil, resolved: Bool? = nil) -> TriggerDecision {
        let stateKey = (stateRule ?? rule.name) + "|" + subject
        var state = states[stateKey] ?? EpisodeState()
        var kind: TriggerDecision.Kind
        var reason: String
        var episodeStart = state.activeSince
        let enough = samples >= Double(rule.minSamples)
        if let e = estimate, enough {
            let near = nearEnd(e, rule)
            let crossing = rule.comparison.crosses(near, rule.threshold)
            let how = rule.mode == .significant ? "interval near end" : "point value"
            if let since = state.activeSince {
                if resolved ?? Self.isResolved(e.value, rule) {
                    kind = .resolve
                    reason = "value \(e.value) back inside \(rule.comparison.rawValue) \(rule.threshold) "
                        + "by hysteresis \(rule.hysteresis)"
                    state.activeSince = nil
                    episodeStart = since
                } else {
                    kind = .hold
                    reason = "episode active since \(since)"
                }
            } else if crossing {
                if let last = state.lastFired, end - last < rule.cooldownMillis {
                    kind = .hold
                    reason = "\(how) \(near) crosses \(rule.comparison.rawValue) \(rule.threshold), but in cooldown "
                        + "until \(last + rule.cooldownMillis)"
                } else {
                    kind = .fire
                    reason = "\(how) \(near) crosses \(rule.comparison.rawValue) \(rule.threshold)"
                    state.activeSince = end
                    state.lastFired = end
                    episodeStart = end
                }
            } else {
                kind = .skip
                reason = "\(how) \(near) does not cross \(rule.comparison.rawValue) \(rule.threshold)"
            }
        } else {
            kind = state.activeSince == nil ? .skip : .hold
            reason = estimate == nil ? "figure undefined (no samples)"
                : "\(Int(samples)) samples < min_samples \(rule.minSamples)"
        }
        states[stateKey] = state
        return TriggerDecision(
            kind: kind, rule: stateRule ?? rule.name, metric: rule.metric, action: rule.action, subject: subject,
            group: group, classIndex: classIndex, window: rule.window, windowStart: start, windowEnd: end,
            samples: samples, minSamples: rule.minSamples, value: estimate?.value, lower: estimate?.lower,
            upper: estimate?.upper, threshold: rule.threshold, comparison: rule.comparison, mode: rule.mode,
            baseline: baseline,
            episodeID: episodeStart.map { "\(stateRule ?? rule.name)|\(subject)|\($0)" },
            episodeStart: episodeStart, reason: reason)
    }
}

/// One group's evaluation of one closed window: figures with intervals, decisions and verdict.
public struct WindowReport: Sendable, Codable, Equatable {
    /// Window name.
    public var window: String
    /// Window start, event time ms (inclusive).
    public var start: Int64
    /// Window end, event time ms (exclusive).
    public var end: Int64
    /// Samples accepted into the window (all groups).
    public var samples: Int
    /// Late samples rejected since the previous emitted instance of this window.
    public var lateSamples: Int
    /// The group.
    public var group: DistillGroupKey
    /// The group's figures, rare classes flagged.
    public var figures: DistillFigures
    /// One decision per applicable rule (and rare class).
    public var decisions: [TriggerDecision]
    /// The combined verdict.
    public var verdict: TriggerVerdict

    /// Creates a report.
    public init(window: String, start: Int64, end: Int64, samples: Int, lateSamples: Int, group: DistillGroupKey,
                figures: DistillFigures, decisions: [TriggerDecision], verdict: TriggerVerdict) {
        self.window = window
        self.start = start
        self.end = end
        self.samples = samples
        self.lateSamples = lateSamples
        self.group = group
        self.figures = figures
        self.decisions = decisions
        self.verdict = verdict
    }
}
