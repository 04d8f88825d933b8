import FlowVM

/// A published flow version, as routing and turns need it.
public struct PublishedFlow: Sendable, Hashable {
    public var tenant: String
    public var name: String
    public var version: Int
    public var programHash: String
    /// `trigger.channel` of the flow (`api`, `whatsapp`), if it has a trigger.
    public var triggerChannel: String?
    public var keywords: [String]
    /// Whether a message with none of the channel's keywords may start it. A flow with no keywords is its channel's
    /// catch-all unless something else starts it (`trigger.schedule`, `trigger.webhook`, `trigger.event`): a reply to a reminder
    /// that has ended must not start the reminder again.
    public var catchAll: Bool

    public init(tenant: String, name: String, version: Int, programHash: String, triggerChannel: String?, keywords: [String],
                catchAll: Bool = true) {
        self.tenant = tenant
        self.name = name
        self.version = version
        self.programHash = programHash
        self.triggerChannel = triggerChannel
        self.keywords = keywords
        self.catchAll = catchAll && keywords.isEmpty
    }

    public init(tenant: String, version: Int, program: Program) {
        let trigger = program.metadata["trigger"]
        var keywords: [String] = []
        if case .list(let k) = trigger["keywords"] { keywords = k.map(\.text) }
        self.init(tenant: tenant, name: program.name, version: version, programHash: program.hash,
                  triggerChannel: trigger == .null ? nil : trigger["channel"].text, keywords: keywords,
                  catchAll: program.metadata["schedule"] == .null && program.metadata["webhook"] == .null
                    && program.metadata["event"] == .null)
    }
}

extension Inbound {
    /// Whether a contact address is a WhatsApp business-scoped user id (a BSUID: an ISO 3166 alpha-2 country code, a
    /// period, then letters, digits and periods, `US.ENT.…` for a parent) rather than a phone number. Such a contact's
    /// phone, when known, is kept apart (`contactPhone`).
    public static func isBusinessScopedUserID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].count == 2, parts[0].allSatisfy({ $0.isASCII && $0.isUppercase }) else { return false }
        return parts.dropFirst().allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } }
    }
}

/// A message from a contact on a channel, before it is stored.
public struct Inbound: Sendable, Hashable {
    public var tenant: String
    /// The channel's id (one tenant may have several channels of a kind).
    public var channel: String
    /// The channel's kind (`api`, `whatsapp`), which triggers name.
    public var channelKind: String
    /// The contact's address on the channel (a phone number, an API user id).
    public var contact: String
    public var contactName: String?
    /// The contact's phone number, when it is known and not already `contact` (a WhatsApp user keyed by business-scoped
    /// user id whose notification also carried a `wa_id`): replies go to it first.
    public var contactPhone: String?
    /// The provider's id for the message (WhatsApp `wamid`, the API's `id`): the de-duplication key.
    public var providerID: String
    public var message: InboundMessage

    public init(tenant: String, channel: String, channelKind: String, contact: String, contactName: String? = nil,
                contactPhone: String? = nil, providerID: String, message: InboundMessage) {
        self.tenant = tenant
        self.channel = channel
        self.channelKind = channelKind
        self.contact = contact
        self.contactName = contactName
        self.contactPhone = contactPhone
        self.providerID = providerID
        self.message = message
    }
}

/// What storing an inbound event did.
/// One message to store, with what the engine decided before storing it.
public struct IngestItem: Sendable {
    public var inbound: Inbound
    /// The flow to start when the contact has no open conversation.
    public var start: PublishedFlow?
    public var newConversationID: String
    /// Set when the message is one of the tenant's opt-out words: it opts the contact out instead of reaching a flow.
    public var optOut: OptOut?

    public init(inbound: Inbound, start: PublishedFlow?, newConversationID: String, optOut: OptOut? = nil) {
        self.inbound = inbound
        self.start = start
        self.newConversationID = newConversationID
        self.optOut = optOut
    }
}

/// A conversation started from outside, not by a contact's message (`POST /v1/flows/{name}/start`).
public struct ConversationStart: Sendable, Hashable {
    public var tenant: String
    public var channel: String
    public var channelKind: String
    /// The contact's address on the channel; a contact record is made for one that has none.
    public var contact: String
    public var flow: PublishedFlow
    public var variables: [String: Value]
    /// The caller's `Idempotency-Key`: a start repeated with it starts nothing and answers as the first did.
    public var idempotencyKey: String?
    /// A digest of what was asked, so one key reused for a different start is refused rather than replayed.
    public var requestDigest: String
    public var newConversationID: String
    /// The id a contact record made for this start gets.
    public var newContactID: String
    /// What the start answers, kept with the idempotency key so a repeat answers the same.
    public var answer: Value
    /// When the conversation starts, if later than now: it is stored `scheduled` and its first turn runs then.
    public var at: Timestamp?
    /// The campaign row this start marks started, in its own transaction; the start happens only while that row is
    /// queued and its campaign running.
    public var campaign: CampaignMark?
    /// The name a contact record made for this start gets (a webhook's `name`); an existing record keeps its own.
    public var contactName: String?

    public init(tenant: String, channel: String, channelKind: String, contact: String, flow: PublishedFlow, variables: [String: Value],
                idempotencyKey: String?, requestDigest: String, newConversationID: String, newContactID: String, answer: Value,
                at: Timestamp? = nil, campaign: CampaignMark? = nil) {
        self.at = at
        self.campaign = campaign
        self.newContactID = newContactID
        self.answer = answer
        self.tenant = tenant
        self.channel = channel
        self.channelKind = channelKind
        self.contact = contact
        self.flow = flow
        self.variables = variables
        self.idempotencyKey = idempotencyKey
        self.requestDigest = requestDigest
        self.newConversationID = newConversationID
    }
}

/// What a start did.
public enum StartOutcome: Sendable, Hashable {
    case started(conversation: String)
    /// The same `Idempotency-Key` and request as before: nothing new, and the first start's answer.
    case repeated(answer: Value)
    /// The contact is in another open conversation on the channel.
    case busy(conversation: String)
    /// The contact opted out on this channel.
    case optedOut
    /// The `Idempotency-Key` was used before for a different request.
    case keyReused
    /// A campaign's start whose row is no longer queued (another worker started it, or the campaign was cancelled)
    /// or whose campaign is not running (paused): nothing was written.
    case notQueued
}

/// What storing an inbound message did: the same answer a channel driver's inbox gives (`ReceiveOutcome`).
public typealias IngestResult = ReceiveOutcome

/// A claimed outbox row, for the dispatcher.
public struct Delivery: Sendable, Hashable {
    public var id: Int64
    public var tenant: String
    public var conversation: String
    public var entry: OutboxEntry
    /// This attempt's number, from 1.
    public var attempt: Int

    public init(id: Int64, tenant: String, conversation: String, entry: OutboxEntry, attempt: Int) {
        self.id = id
        self.tenant = tenant
        self.conversation = conversation
        self.entry = entry
        self.attempt = attempt
    }
}

/// An outbox row as the API shows it.
public struct DeliveryRecord: Sendable, Hashable {
    public enum State: String, Sendable, Hashable { case pending, done, dead }
    public var id: Int64
    public var conversation: String
    public var idempotencyKey: String
    public var action: String
    public var state: State
    public var attempts: Int
    public var lastError: String?

    public init(id: Int64, conversation: String, idempotencyKey: String, action: String, state: State, attempts: Int,
                lastError: String?) {
        self.id = id
        self.conversation = conversation
        self.idempotencyKey = idempotencyKey
        self.action = action
        self.state = state
        self.attempts = attempts
        self.lastError = lastError
    }
}

/// What a turn worker needs while a conversation is locked: its events and a way to read programs.
public struct TurnWork: Sendable {
    public var conversation: ConversationRecord
    public var events: [PendingEvent]
    public var contact: Value

    public init(conversation: ConversationRecord, events: [PendingEvent], contact: Value) {
        self.conversation = conversation
        self.events = events
        self.contact = contact
    }
}

/// Durable storage for the engine. Two implementations (PostgreSQL and SQLite) share one schema; every query
/// is scoped by tenant where a tenant's data is read.
public protocol Store: Sendable {
    /// Creates or upgrades the schema; refuses a schema newer than this code knows.
    func migrate() async throws
    func close() async

    func ensureTenant(id: String, name: String) async throws
    /// Stores a program under its hash (idempotent: programs are immutable).
    func saveProgram(_ program: Program) async throws
    func program(hash: String) async throws -> Program?
    /// Publishes a program as the flow's next version; returns the version number.
    func publish(tenant: String, program: Program, source: String, at: Timestamp) async throws -> Int
    /// The latest published version of each of the tenant's flows.
    func publishedFlows(tenant: String) async throws -> [PublishedFlow]

    /// Stores an inbound message (de-duplicated by channel and provider id) and routes it, in one transaction:
    /// to the contact's open conversation, or to a new conversation of `start`, or nowhere.
    func ingest(_ inbound: Inbound, start: PublishedFlow?, newConversationID: String, now: Timestamp) async throws -> IngestResult
    /// Stores several messages in one transaction (group commit): one result per item, in order.
    func ingest(batch: [IngestItem], now: Timestamp) async throws -> [IngestResult]
    /// Starts a conversation of `start.flow` for a contact, in one transaction with its first event (`.start`), once
    /// per idempotency key.
    func start(_ start: ConversationStart, now: Timestamp) async throws -> StartOutcome
    /// Stores an event for a conversation by id (a handback, an API event); de-duplicated by `providerID` when given.
    func post(_ body: EventBody, conversation: String, tenant: String, providerID: String?, now: Timestamp) async throws -> Bool
    /// Stores an external event for the conversation waiting on `name` with `key`; false when none waits or
    /// `providerID` was delivered before.
    func postExternal(tenant: String, name: String, key: String, payload: Value, providerID: String?, now: Timestamp) async throws -> Bool
    /// Stores the POST to a resume link for `conversation`, when it waits on `token`, or on the connector call that
    /// handed the link out and `token` is the one `expectedToken` makes for that call's tenant and effect key (in
    /// constant time); false otherwise (used, expired, forged or never valid).
    func postResume(conversation: String, token: String, payload: Value, now: Timestamp,
                    expectedToken: @Sendable (_ tenant: String, _ effectKey: String) -> String) async throws -> Bool
    /// Messages that arrived after their conversation ended, waiting to be routed again.
    func messagesToReroute(limit: Int) async throws -> [(sequence: Int64, inbound: Inbound)]
    /// Routes one of them, like `ingest` does.
    func reroute(sequence: Int64, inbound: Inbound, start: PublishedFlow?, newConversationID: String, optOut: OptOut?,
                 now: Timestamp) async throws

    /// A tenant's settings (the defaults when it set none).
    func settings(tenant: String) async throws -> TenantSettings
    func saveSettings(_ settings: TenantSettings, tenant: String, now: Timestamp) async throws
    /// Deletes the messages and traces of the tenant's conversations that ended before `endedBefore`, a page at a
    /// time (up to `limit` conversations); returns how many conversations and messages went.
    func purgeMessages(tenant: String, endedBefore: Timestamp, limit: Int) async throws -> (conversations: Int, messages: Int)
    /// Tenants with a message retention period, and the period in days.
    func retentionPeriods() async throws -> [(tenant: String, days: Int)]
    /// Forgets `Idempotency-Key`s recorded before `before`; returns how many.
    func purgeIdempotencyKeys(before: Timestamp) async throws -> Int

    /// Leases the campaign most overdue for `lease` seconds (choosing its contacts first if it is beginning) with the
    /// contacts its rate allows now, at most `maxBatch`; nil when none is due.
    func claimCampaign(now: Timestamp, lease: Int64, maxBatch: Int) async throws -> CampaignBatch?
    /// Records a leased batch: what became of each contact not started (one outcome per target, in order), how
    /// many were started (spent from the bucket), and when the campaign is due next; ends it when none is left
    /// queued, or as failed with `failure`. Releases the lease.
    func finishCampaignBatch(_ batch: CampaignBatch, outcomes: [CampaignTargetOutcome], started: Int, failure: String?,
                             now: Timestamp) async throws

    /// Leases up to `limit` schedules due at `now` (their `nextAt` passed) for `lease` seconds, so that one process
    /// works on each; the firing itself is made once by `finishSchedule`'s check, whatever the leases do.
    func claimSchedules(now: Timestamp, lease: Int64, limit: Int) async throws -> [ScheduleRecord]
    /// Records a claimed schedule's firing if it is still as claimed (the same version, due at the same instant), with
    /// the campaign it makes and the fixed list's contacts, in one transaction; false (nothing written) when another
    /// process fired it first or a new version replaced it.
    func finishSchedule(_ claimed: ScheduleRecord, _ firing: ScheduleFiring, now: Timestamp) async throws -> Bool
    /// A flow's schedule, for the API.
    func schedule(tenant: String, flow: String) async throws -> ScheduleRecord?
    /// What a firing resolves its channel and segment from.
    func channels(tenant: String, limit: Int, offset: Int) async throws -> (items: [ChannelRecord], total: Int)
    func segments(tenant: String, limit: Int, offset: Int) async throws -> (items: [SegmentRecord], total: Int)

    /// Claims up to `limit` conversations that are due (pending events, a deadline passed) under a lease of `lease`
    /// seconds, runs `turn` for each outside any transaction, and writes the outcomes in one; a conversation whose
    /// saved state cannot be read is marked failed and skipped. Returns how many conversations it handled.
    func runTurns(limit: Int, now: Timestamp, lease: Int64,
                  _ turn: @Sendable (TurnWork, @Sendable (String) async throws -> Program?) async throws -> TurnMachine.Outcome)
        async throws -> Int

    /// Claims due outbox rows (oldest first, one in flight per conversation) under a lease.
    func claimDeliveries(limit: Int, now: Timestamp, lease: Int64) async throws -> [Delivery]
    /// Records how a delivery ended; a finished connector action becomes an event for its conversation.
    /// Records the outcomes of a batch of deliveries in one transaction.
    func finishDeliveries(_ outcomes: [(Delivery, DeliveryMachine.Action)], now: Timestamp) async throws

    /// Moves a conversation to another program with a mapped continuation, if it has not changed since it was
    /// read (`conversation.version`); false when it had.
    func move(conversation: ConversationRecord, to programHash: String, continuation: Continuation, now: Timestamp) async throws -> Bool

    func conversation(id: String, tenant: String) async throws -> ConversationRecord?
    func conversations(tenant: String, status: ConversationStatus?, contact: String?) async throws -> [ConversationRecord]
    func messages(conversation: String, tenant: String) async throws -> [MessageRecord]
    func traces(conversation: String, tenant: String) async throws -> [TraceEntry]
    func deliveries(tenant: String, state: DeliveryRecord.State?) async throws -> [DeliveryRecord]
    /// Counts of work not yet done (unprocessed events, due conversations, pending deliveries), for tests and health.
    func backlog(now: Timestamp) async throws -> (events: Int, deliveries: Int)
    /// Deletes traces older than `before`; returns how many.
    func purgeTraces(before: Timestamp) async throws -> Int
}

/// The engine's one public error.
public struct EngineError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notFound = "not_found"
        case conflict = "conflict"
        case invalid = "invalid"
        /// A stored secret cannot be decrypted (wrong or missing key); the message never holds the secret.
        case secret = "secret"
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code.rawValue): \(message)" }
}
