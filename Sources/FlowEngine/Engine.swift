import AsyncHTTPClient
import FlowVM
import Foundation
import Logging
import Metrics
import Synchronization

/// Drives conversations durably: stores inbound events, runs turns, dispatches the outbox and fires timers.
///
/// All state lives in the `Store`; an engine holds only caches. Any number of engines may share one
/// PostgreSQL database: turns lock their conversations (`SKIP LOCKED`), deliveries are leased, and a process
/// that dies loses nothing but its uncommitted turn, which runs again elsewhere.
public final class Engine: Sendable {
    public struct Configuration: Sendable {
        /// Conversations per turn transaction: batching shares one commit among many turns.
        public var turnBatch = 64
        /// Seconds a claimed conversation is reserved for its turn; a worker that dies mid-turn delays it this long.
        /// Turns take milliseconds; one that outlives its lease costs only repeated work, since the first outcome
        /// written wins and the other is dropped.
        public var turnLease: Int64 = 5
        public var deliveryBatch = 64
        /// Most messages stored in one transaction, and how many such transactions may run at once.
        public var ingestBatch = 64
        public var ingestCommits = 2
        public var delivery = DeliveryPolicy()
        /// How long one connector call may take before it is abandoned and retried as `timeout`.
        public var connectorTimeout: Duration = .seconds(30)
        /// The HTTP client connectors get in their context.
        public var http: HTTPClient = .shared
        /// How long an idle worker sleeps before looking for work again (new work wakes it earlier).
        public var pollInterval: Duration = .milliseconds(200)
        /// Makes the resume link each connector call gets in its context; none when nil.
        public var resumeLinks: ResumeLinks?
        /// Opens sealed outbox payloads (`SealedPayload`) as they are delivered.
        public var secrets: SecretBox?
        /// How often the engine purges what retention says to forget (ended conversations' messages past the tenant's
        /// period, old idempotency keys). Idempotent, so several processes doing it cost only repeated queries.
        public var maintenanceInterval: Duration = .seconds(3600)
        /// How long an `Idempotency-Key` answers a repeated request with the first answer.
        public var idempotencyKeyLifetime: Int64 = 24 * 3600
        /// Seconds a worker holds a campaign for one batch; a worker that dies mid-batch delays it this long.
        public var campaignLease: Int64 = 30
        /// Most contacts one campaign batch starts (a second's worth at the campaign's rate, up to this).
        public var campaignBatch = 200
        /// How long a campaign waits to try a contact who was in another conversation (`if_busy: queue`).
        public var campaignRetryBusy: Int64 = 60
        /// Channel kinds that take only approved templates outside a reply window (WhatsApp): a schedule on one fires
        /// only a flow that opens with a template.
        public var templateKinds: Set<String> = ["whatsapp"]
        public init() {}
    }

    public let store: any Store
    public let connectors: ConnectorRegistry
    public let configuration: Configuration
    private let clock: @Sendable () -> Timestamp
    private let logger: Logger
    private let vms = Mutex<[String: VM]>([:])
    /// Published flows per tenant, for trigger matching. Other processes may publish, so entries expire.
    private let flows = Mutex<[String: (flows: [PublishedFlow], loaded: ContinuousClock.Instant)]>([:])
    private static let flowCacheLifetime: Duration = .seconds(5)
    /// Tenants' settings (opt-out words), cached as flows are: a change made through another process counts within seconds.
    private let settingsCache = Mutex<[String: (settings: TenantSettings, loaded: ContinuousClock.Instant)]>([:])
    /// Concurrent ingests share transactions (group commit): a burst of messages costs a few fsyncs, not one each.
    private let ingests: GroupCommit<IngestItem, IngestResult>
    /// Wakes the turn loop when events are stored.
    private let wake = WakeSignal()
    /// Wakes the delivery loop when turns have queued outbox rows.
    private let deliveryWake = WakeSignal()
    /// Wakes the campaign loop when a campaign is made or resumed.
    private let campaignWake = WakeSignal()
    /// Wakes the maintenance loop early (on stop).
    private let maintenanceWake = WakeSignal()
    /// Passes the work loops have made (each asks the store for work once): an idle engine makes few.
    private let passCount = Atomic<Int>(0)
    public var passes: Int { passCount.load(ordering: .relaxed) }
    private let stopping = Atomic<Bool>(false)

    public init(store: any Store, connectors: ConnectorRegistry, configuration: Configuration = Configuration(),
                logger: Logger = Logger(label: "flowline.engine"), clock: @escaping @Sendable () -> Timestamp = { Timestamp(Date()) }) {
        self.store = store
        self.connectors = connectors
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        ingests = GroupCommit(
            maxBatch: configuration.ingestBatch, maxLeaders: configuration.ingestCommits,
            batch: { [store] items in try await store.ingest(batch: items, now: clock()) },
            single: { [store] item in try await store.ingest(batch: [item], now: clock())[0] })
    }

    /// The engine's current time.
    public var now: Timestamp { clock() }

    // MARK: Flows

    /// Publishes a compiled flow for a tenant; new conversations start on it, running ones stay on theirs.
    @discardableResult
    public func publish(tenant: String, program: Program, source: String) async throws -> Int {
        let version = try await store.publish(tenant: tenant, program: program, source: source, at: now)
        flows.withLock { $0[tenant] = nil }
        return version
    }

    private func publishedFlows(_ tenant: String) async throws -> [PublishedFlow] {
        if let cached = flows.withLock({ $0[tenant] }), cached.loaded.duration(to: .now) < Engine.flowCacheLifetime {
            return cached.flows
        }
        let loaded = try await store.publishedFlows(tenant: tenant)
        flows.withLock { $0[tenant] = (loaded, .now) }
        return loaded
    }

    /// A tenant's settings, at most five seconds old.
    public func settings(_ tenant: String) async throws -> TenantSettings {
        if let cached = settingsCache.withLock({ $0[tenant] }), cached.loaded.duration(to: .now) < Engine.flowCacheLifetime {
            return cached.settings
        }
        let loaded = try await store.settings(tenant: tenant)
        settingsCache.withLock { $0[tenant] = (loaded, .now) }
        return loaded
    }

    /// Saves a tenant's settings; this engine uses them at once, others within seconds.
    public func saveSettings(_ settings: TenantSettings, tenant: String) async throws {
        try await store.saveSettings(settings, tenant: tenant, now: now)
        settingsCache.withLock { $0[tenant] = nil }
    }

    /// Whether a message opts its contact out, by the tenant's words.
    private func optOut(_ inbound: Inbound) async throws -> OptOut? {
        let s = try await settings(inbound.tenant)
        return s.isOptOut(inbound.message.text) ? OptOut(reply: s.optOutReply) : nil
    }

    private func vm(_ hash: String, _ load: @Sendable (String) async throws -> Program?) async throws -> VM {
        if let vm = vms.withLock({ $0[hash] }) { return vm }
        guard let program = try await load(hash) else { throw EngineError(.notFound, "program \(hash.prefix(12)) is not stored") }
        let vm = VM(program: program)
        vms.withLock { $0[hash] = vm }
        return vm
    }

    // MARK: Inbound

    /// Stores an inbound message durably before returning (so it can be acknowledged), de-duplicated by provider id.
    public func ingest(_ inbound: Inbound) async throws -> IngestResult {
        let start = TriggerMatcher.match(text: inbound.message.text, channelKind: inbound.channelKind,
                                         flows: try await publishedFlows(inbound.tenant))
        let result = try await ingests.submit(IngestItem(inbound: inbound, start: start, newConversationID: UUID().uuidString.lowercased(),
                                                         optOut: try await optOut(inbound)))
        Failpoint.hit(.ingestAfterCommit)
        if case .accepted = result { wake.signal() }
        if case .optedOut = result { deliveryWake.signal() }
        return result
    }

    /// Starts a conversation from outside (an API call, later a trigger or a campaign); its first turn runs on a
    /// worker like any other.
    public func start(_ start: ConversationStart) async throws -> StartOutcome {
        let outcome = try await store.start(start, now: now)
        if case .started = outcome { wake.signal() }
        return outcome
    }

    /// Wakes the campaign loop: a campaign was made, resumed or is due sooner.
    public func campaignsChanged() {
        campaignWake.signal()
    }

    /// Runs one batch of the campaign most overdue: leases it, starts the contacts its rate allows now (each start
    /// marks its contact's row in its own transaction, so a batch redone after a crash starts nobody twice), and
    /// records what became of the others. Returns how many contacts it handled (1 for a due campaign with none).
    @discardableResult
    public func runCampaigns() async throws -> Int {
        guard let batch = try await store.claimCampaign(now: now, lease: configuration.campaignLease, maxBatch: configuration.campaignBatch)
        else { return 0 }
        let campaign = batch.campaign
        guard let flow = try await publishedFlows(campaign.tenant).first(where: { $0.name == campaign.flow }) else {
            try await store.finishCampaignBatch(batch, outcomes: [], started: 0, failure: "flow \(campaign.flow) has no published version", now: now)
            logger.warning("campaign failed: its flow is not published", metadata: ["campaign": "\(campaign.id)", "tenant": "\(campaign.tenant)"])
            return 1
        }
        var outcomes: [CampaignTargetOutcome] = [], started = 0
        do {
            for target in batch.targets {
                let outcome = try await store.start(ConversationStart(
                    tenant: campaign.tenant, channel: campaign.channel, channelKind: campaign.channelKind, contact: target.address, flow: flow,
                    variables: campaign.variables, idempotencyKey: nil, requestDigest: "", newConversationID: UUID().uuidString.lowercased(),
                    newContactID: target.contact, answer: .null, campaign: CampaignMark(campaign: campaign.id, contact: target.contact)), now: now)
                switch outcome {
                case .started:
                    started += 1
                    outcomes.append(.done)
                    Failpoint.hit(.campaignAfterStart)
                case .notQueued, .repeated, .keyReused: outcomes.append(.done)
                case .optedOut: outcomes.append(.skipped(reason: "opted_out"))
                case .busy:
                    outcomes.append(campaign.ifBusy == .skip ? .skipped(reason: "in_conversation")
                                                             : .later(at: now.adding(seconds: configuration.campaignRetryBusy)))
                }
            }
        } catch {
            // The contacts not reached stay queued for the next batch; what was done is recorded.
            if started > 0 { wake.signal() }
            try? await store.finishCampaignBatch(batch, outcomes: outcomes, started: started, failure: nil, now: now)
            throw error
        }
        try await store.finishCampaignBatch(batch, outcomes: outcomes, started: started, failure: nil, now: now)
        if started > 0 { wake.signal() }
        return max(1, batch.targets.count)
    }

    /// Fires the schedules that are due: each occurrence makes one campaign (the flow sent to the segment or the
    /// fixed list, paced like any campaign), once across all processes; occurrences missed while none ran are run
    /// once, late, or skipped, as the schedule says. Returns how many schedules it handled.
    @discardableResult
    public func runSchedules() async throws -> Int {
        let due = try await store.claimSchedules(now: now, lease: configuration.campaignLease, limit: 16)
        var made = false
        for schedule in due {
            let firing = try await firing(of: schedule)
            if try await store.finishSchedule(schedule, firing, now: now), firing.campaign != nil { made = true }
            if let error = firing.error {
                logger.warning("schedule made no campaign", metadata: ["tenant": "\(schedule.tenant)", "flow": "\(schedule.flow)", "reason": "\(error)"])
            }
        }
        if made { campaignWake.signal() }
        return due.count
    }

    /// What a due schedule does now: the occurrence it runs and the campaign that makes, or why it makes none.
    private func firing(of schedule: ScheduleRecord) async throws -> ScheduleFiring {
        let now = self.now
        guard let spec = ScheduleSpec(schedule.spec), let due = schedule.nextAt else {
            return ScheduleFiring(occurrence: nil, campaign: nil, contacts: [], missed: 0, next: nil, error: "the schedule cannot be read")
        }
        let (occurrence, missed, next) = spec.decide(due: due, now: now)
        guard let occurrence else { return ScheduleFiring(occurrence: nil, campaign: nil, contacts: [], missed: missed, next: next, error: nil) }
        func failed(_ why: String) -> ScheduleFiring {
            ScheduleFiring(occurrence: occurrence, campaign: nil, contacts: [], missed: missed, next: next, error: why)
        }
        // The channel: the one it names, else the tenant's only channel of the flow's kind.
        let kind = schedule.spec["trigger_channel"].nonEmptyText
        let channels = try await store.channels(tenant: schedule.tenant, limit: 1000, offset: 0).items
        let channel: ChannelRecord
        if let id = spec.channel {
            guard let c = channels.first(where: { $0.id == id }) else { return failed("no channel \(id)") }
            channel = c
        } else {
            let candidates = channels.filter { kind == nil || $0.kind == kind }
            guard candidates.count == 1 else {
                return failed(candidates.isEmpty ? "no \(kind ?? "") channel to send on" : "several \(kind ?? "") channels: name one in trigger.schedule.channel")
            }
            channel = candidates[0]
        }
        if let kind, kind != channel.kind { return failed("the flow runs on \(kind) channels; channel \(channel.id) is \(channel.kind)") }
        if configuration.templateKinds.contains(channel.kind), schedule.spec["opens_with_template"] != true {
            return failed("template_required: \(channel.kind) takes only approved templates outside its reply window; the flow must open with one")
        }
        // Whom: the segment as it is now, or the fixed list.
        var segmentID: String?
        var filter: Value
        if let name = spec.segment {
            let segments = try await store.segments(tenant: schedule.tenant, limit: 10_000, offset: 0).items
            guard let s = segments.first(where: { $0.name == name }) ?? segments.first(where: { $0.id == name }) else {
                return failed("no segment \(name)")
            }
            segmentID = s.id
            filter = s.filter
        } else {
            filter = ["address": .list(spec.contacts.map(Value.string))]
        }
        if case .map(var m) = filter {
            if let other = m["channel"]?.nonEmptyText, other != channel.id { return failed("segment \(spec.segment ?? "") picks channel \(other)") }
            m["channel"] = nil
            filter = .map(m)
        }
        let campaign = CampaignRecord(
            id: ScheduleSpec.campaignID(tenant: schedule.tenant, flow: schedule.flow, occurrence: occurrence), tenant: schedule.tenant,
            name: "\(schedule.flow) at \(occurrence.iso8601)", flow: schedule.flow, channel: channel.id, channelKind: channel.kind,
            segment: segmentID, filter: filter, variables: [:], startsAt: now,
            rate: spec.rate ?? (configuration.templateKinds.contains(channel.kind) ? 80 : 10), dailyLimit: nil, ifBusy: .skip, createdAt: now)
        return ScheduleFiring(occurrence: occurrence, campaign: campaign, contacts: spec.segment == nil ? spec.contacts : [],
                              missed: missed, next: next, error: nil)
    }

    /// Hands a conversation back from a human agent to its flow.
    public func handBack(conversation: String, tenant: String) async throws {
        guard try await store.post(.handback, conversation: conversation, tenant: tenant, providerID: nil, now: now) else {
            throw EngineError(.notFound, "no conversation \(conversation)")
        }
        wake.signal()
    }

    /// Delivers an external event (a payment, a callback) to the conversation waiting on `name` with `key`.
    @discardableResult
    public func deliverEvent(tenant: String, name: String, key: String, payload: Value, providerID: String?) async throws -> Bool {
        let delivered = try await store.postExternal(tenant: tenant, name: name, key: key, payload: payload, providerID: providerID, now: now)
        if delivered { wake.signal() }
        return delivered
    }

    /// Delivers a POST to a resume link (`ResumeLinks`) as the `resume` event its conversation waits for.
    public func resume(token: String, payload: Value) async throws -> Bool {
        guard let links = configuration.resumeLinks, let conversation = ResumeLinks.conversation(in: token) else { return false }
        let delivered = try await store.postResume(conversation: conversation, token: token, payload: payload, now: now) { tenant, effectKey in
            links.link(tenant: tenant, conversation: conversation, effectKey: effectKey).token
        }
        if delivered { wake.signal() }
        return delivered
    }

    /// Runs a failed conversation's failed block again.
    public func retry(conversation: String, tenant: String) async throws {
        guard try await store.post(.retry, conversation: conversation, tenant: tenant, providerID: nil, now: now) else {
            throw EngineError(.notFound, "no conversation \(conversation)")
        }
        wake.signal()
    }

    /// Ends a conversation, whatever it was doing.
    public func cancel(conversation: String, tenant: String) async throws {
        guard try await store.post(.cancel, conversation: conversation, tenant: tenant, providerID: nil, now: now) else {
            throw EngineError(.notFound, "no conversation \(conversation)")
        }
        wake.signal()
    }

    /// What an explicit migration to a flow's latest version did.
    public struct MigrationReport: Sendable {
        public var version: Int
        public var moved: [String] = []
        /// Conversation id and why it stayed.
        public var stayed: [(id: String, reason: String)] = []
    }

    /// Moves a flow's open conversations on older versions to its latest published version, mapping each by
    /// block id; reports what could not move and why. Conversations that moved keep their variables and waits.
    public func migrateConversations(tenant: String, flow: String) async throws -> MigrationReport {
        guard let latest = try await store.publishedFlows(tenant: tenant).first(where: { $0.name == flow }),
              let target = try await store.program(hash: latest.programHash) else {
            throw EngineError(.notFound, "flow \(flow) has no published version")
        }
        var report = MigrationReport(version: latest.version)
        var programs: [String: Program] = [:]
        for c in try await store.conversations(tenant: tenant, status: nil, contact: nil)
        where c.flow == flow && c.status.isOpen && c.programHash != target.hash {
            guard let continuation = c.continuation else {
                report.stayed.append((c.id, "the conversation has not started yet"))
                continue
            }
            if programs[c.programHash] == nil { programs[c.programHash] = try await store.program(hash: c.programHash) }
            guard let old = programs[c.programHash] else {
                report.stayed.append((c.id, "its program is missing"))
                continue
            }
            switch ConversationMigration.map(continuation, from: old, to: target) {
            case .failure(let refusal):
                report.stayed.append((c.id, refusal.reason))
            case .success(let moved):
                if try await store.move(conversation: c, to: target.hash, continuation: moved, now: now) {
                    report.moved.append(c.id)
                } else {
                    report.stayed.append((c.id, "it changed while migrating; run the migration again"))
                }
            }
        }
        return report
    }

    // MARK: Work

    /// Runs one batch of due turns; returns how many ran.
    @discardableResult
    public func runTurns() async throws -> Int {
        let started = ContinuousClock.now
        let count = try await store.runTurns(limit: configuration.turnBatch, now: now, lease: configuration.turnLease) { work, load in
            let vm = try await self.vm(work.conversation.programHash, load)
            var debounce: Int64?
            if case .number(let d) = vm.program.metadata["debounce"] { debounce = Int64(d) }
            let outcome = TurnMachine.run(
                TurnMachine.Input(conversation: work.conversation, events: work.events, now: self.now, debounce: debounce,
                                  contact: work.contact),
                vm: vm)
            self.log(outcome, from: work.conversation)
            return outcome
        }
        if count > 0 {
            deliveryWake.signal()
            EngineMetrics.turns.increment(by: count)
            let elapsed = ContinuousClock.now - started
            EngineMetrics.turnBatchDuration.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        return count
    }

    /// One line per turn (debug) and per failure (warning), keyed by conversation so a request's log line
    /// (which names the conversation it started or fed) leads to its turns. Texts and variables stay out of logs.
    private func log(_ outcome: TurnMachine.Outcome, from before: ConversationRecord) {
        let c = outcome.conversation
        guard !outcome.traces.isEmpty else { return }
        let metadata: Logger.Metadata = [
            "conversation": "\(c.id)", "tenant": "\(c.tenant)", "flow": "\(c.flow)", "status": "\(c.status.rawValue)",
            "events": "\(outcome.processed.count)", "effects": "\(outcome.outbox.count)",
        ]
        if c.status == .failed, before.status != .failed {
            logger.warning("conversation failed", metadata: metadata.merging(["error": "\(c.failure ?? "")"]) { a, _ in a })
        } else {
            logger.debug("turn", metadata: metadata)
        }
    }

    /// Claims and performs one batch of outbox deliveries, concurrently, and records their outcomes in one
    /// transaction; returns how many were attempted.
    @discardableResult
    public func dispatch() async throws -> Int {
        let claimed = try await store.claimDeliveries(limit: configuration.deliveryBatch, now: now, lease: configuration.delivery.lease)
        guard !claimed.isEmpty else { return 0 }
        Failpoint.hit(.deliveryAfterClaim, claimed.map(\.entry.action))
        let finished = await withTaskGroup(of: (Delivery, DeliveryMachine.Action).self) { group in
            for d in claimed {
                group.addTask { (d, await self.deliver(d)) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        try await store.finishDeliveries(finished, now: now)
        if finished.contains(where: { $0.0.entry.kind == .perform }) {
            wake.signal()  // a connector's result (or failure) is an event its conversation waits for
        }
        return claimed.count
    }

    /// Runs `body`, or fails with a retryable `timeout` once `deadline` passes (the body is cancelled).
    static func withDeadline<T: Sendable>(_ deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws -> T)
        async throws -> T
    {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw ConnectorError(code: "timeout", message: "the connector did not answer before its deadline", retryable: true)
            }
            return value
        }
    }

    private func deliver(_ d: Delivery) async -> DeliveryMachine.Action {
        let outcome: Result<Value, ConnectorError>
        if let connector = connectors.connector(for: d.entry.action) {
            var log = logger
            log[metadataKey: "conversation"] = "\(d.conversation)"
            log[metadataKey: "tenant"] = "\(d.tenant)"
            log[metadataKey: "key"] = "\(d.entry.idempotencyKey)"
            let context = ConnectorContext(tenant: d.tenant, conversation: d.conversation, idempotencyKey: d.entry.idempotencyKey,
                                           attempt: d.attempt, logger: log, http: configuration.http,
                                           deadline: .now + configuration.connectorTimeout,
                                           resume: configuration.resumeLinks?.link(tenant: d.tenant, conversation: d.conversation,
                                                                                   effectKey: d.entry.idempotencyKey))
            do {
                let parameters: Value
                do { parameters = try SealedPayload.open(d.entry.payload, key: d.entry.idempotencyKey, with: configuration.secrets) } catch {
                    throw ConnectorError(code: "sealed", message: "the payload is sealed under another key than this server's", retryable: false)
                }
                outcome = .success(try await Self.withDeadline(context.deadline) {
                    try await connector.perform(action: d.entry.action, parameters: parameters, context: context)
                })
                Failpoint.hit(.deliveryAfterCall, [d.entry.action])
            } catch let e as ConnectorError {
                outcome = .failure(e)
            } catch {
                // Only the error's type: a description may carry a URL, a header or a body.
                outcome = .failure(ConnectorError(code: "error", message: "the connector failed (\(type(of: error)))", retryable: true))
            }
        } else {
            outcome = .failure(ConnectorError(code: "no_connector", message: "no connector performs \(d.entry.action)", retryable: false))
        }
        let action = DeliveryMachine.next(attempt: d.attempt, outcome: outcome, now: now, policy: configuration.delivery,
                                          random: Double.random(in: 0..<1))
        let metadata: Logger.Metadata = [
            "key": "\(d.entry.idempotencyKey)", "conversation": "\(d.conversation)", "tenant": "\(d.tenant)",
            "action": "\(d.entry.action)", "attempt": "\(d.attempt)",
        ]
        switch action {
        case .complete:
            EngineMetrics.deliveries(outcome: "done").increment()
        case .retry(let at, let error):
            EngineMetrics.deliveries(outcome: "retry").increment()
            logger.debug("delivery will be retried", metadata: metadata.merging(["at": "\(at.iso8601)", "error": "\(error)"]) { a, _ in a })
        case .deadLetter(let error):
            EngineMetrics.deliveries(outcome: "dead").increment()
            logger.warning("delivery dead-lettered", metadata: metadata.merging(["error": "\(error)"]) { a, _ in a })
        }
        return action
    }

    /// Routes messages that arrived after their conversation ended; returns how many.
    @discardableResult
    public func reroute() async throws -> Int {
        let pending = try await store.messagesToReroute(limit: 64)
        for (seq, inbound) in pending {
            let start = TriggerMatcher.match(text: inbound.message.text, channelKind: inbound.channelKind,
                                             flows: try await publishedFlows(inbound.tenant))
            try await store.reroute(sequence: seq, inbound: inbound, start: start, newConversationID: UUID().uuidString.lowercased(),
                                    optOut: try await optOut(inbound), now: now)
        }
        return pending.count
    }

    /// One pass over all kinds of work; returns how much was done.
    public func step() async throws -> Int {
        try await runTurns() + dispatch() + reroute() + runSchedules() + runCampaigns()
    }

    /// Works until nothing is left to do now (tests, `flowline chat`-like drivers).
    public func drain(maxPasses: Int = 10_000) async throws {
        for _ in 0..<maxPasses {
            if try await step() == 0 { return }
        }
    }

    /// Wakes the delivery loop: something outside a turn queued a send (an agent's message, a driver's follow-up).
    public func outboxChanged() {
        deliveryWake.signal()
    }

    /// Ends `run()` gracefully: the passes in flight finish uncancelled (a turn's outcome is committed, a call's done
    /// mark is written; a connector call takes at most `connectorTimeout`), then the loops return. Cancelling `run()`
    /// instead stops at once, and whatever was in flight is redone after its lease.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        wake.signal()
        deliveryWake.signal()
        campaignWake.signal()
        maintenanceWake.signal()
    }

    /// Works until stopped or cancelled: the service loop of `flowline serve` and worker processes. Turns and
    /// deliveries run in two loops, so a slow connector never holds up the next turn.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.loop(self.wake) { try await self.runTurns() + self.reroute() } }
            group.addTask { await self.loop(self.deliveryWake) { try await self.dispatch() } }
            group.addTask { await self.loop(self.campaignWake) { try await self.runSchedules() + self.runCampaigns() } }
            group.addTask {
                while !Task.isCancelled, !self.stopping.load(ordering: .relaxed) {
                    do { try await self.maintain() } catch { self.logger.warning("maintenance failed; it runs again later", metadata: ["error": "\(error)"]) }
                    await self.maintenanceWake.wait(timeout: self.configuration.maintenanceInterval)
                }
            }
        }
    }

    /// Forgets what retention says to: the messages and traces of conversations that ended more than their
    /// tenant's retention period ago, a page at a time, and idempotency keys past their lifetime. Returns how many
    /// messages went.
    @discardableResult
    public func maintain() async throws -> Int {
        var purged = 0
        for (tenant, days) in try await store.retentionPeriods() {
            let cutoff = now.adding(seconds: -Int64(days) * 86_400)
            while !stopping.load(ordering: .relaxed) {
                let page = try await store.purgeMessages(tenant: tenant, endedBefore: cutoff, limit: 200)
                if page.conversations == 0 { break }
                purged += page.messages
            }
        }
        let keys = try await store.purgeIdempotencyKeys(before: now.adding(seconds: -configuration.idempotencyKeyLifetime))
        if purged > 0 || keys > 0 {
            logger.info("retention purge", metadata: ["messages": "\(purged)", "idempotency_keys": "\(keys)"])
        }
        return purged
    }

    /// Repeats `pass` while it finds work; then sleeps until woken or the poll interval passes.
    private func loop(_ signal: WakeSignal, _ pass: @Sendable () async throws -> Int) async {
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            passCount.add(1, ordering: .relaxed)
            do {
                if try await pass() > 0 { continue }
            } catch is CancellationError {
                return
            } catch {
                logger.error("engine pass failed; retrying", metadata: ["error": "\(error)"])
            }
            await signal.wait(timeout: configuration.pollInterval)
        }
    }
}

/// The engine's metrics, reported through swift-metrics (Prometheus at `/metrics` when serving).
///
/// Each handle is made where it is used, not kept: swift-metrics binds a handle to the factory bootstrapped when the
/// handle is made, so one made before the bootstrap (in a test process, by any engine that ran first) would count
/// into nothing forever. Making one asks the registry for the same series by its label: a lookup per batch.
public enum EngineMetrics {
    static var turns: Counter { Counter(label: "flowline_turns_total") }
    static var turnBatchDuration: Metrics.Timer { Metrics.Timer(label: "flowline_turn_batch_duration", preferredDisplayUnit: .milliseconds) }
    static func deliveries(outcome: String) -> Counter {
        Counter(label: "flowline_deliveries_total", dimensions: [("outcome", outcome)])
    }
    /// Unprocessed events and due conversations, as last sampled.
    public static var backlog: Gauge { Gauge(label: "flowline_backlog") }
    /// Outbox rows waiting to be delivered, as last sampled.
    public static var outboxPending: Gauge { Gauge(label: "flowline_outbox_pending") }
    /// Conversations whose turn is due now (timers that fired, debounce windows that closed), as last sampled.
    public static var turnsDue: Gauge { Gauge(label: "flowline_turns_due") }
    /// Dead-lettered deliveries, as last sampled.
    public static var deadLetters: Gauge { Gauge(label: "flowline_dead_letters") }
}
