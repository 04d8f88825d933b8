import FlowVM

// What the API needs from storage, by concern, so the server is written against these and not against one store:
// `SQLStore` (PostgreSQL and SQLite) conforms to all of them. Every read and write is scoped by tenant but for the
// few that say otherwise.

/// Drafts, published versions and programs.
public protocol FlowRecords: Sendable {
    /// Saves a flow's draft; true when it created the flow.
    func saveDraft(tenant: String, name: String, source: String, at: Timestamp) async throws -> Bool
    func draft(tenant: String, name: String) async throws -> String?
    /// Deletes a draft that was never published; `.published` (and nothing deleted) when it was, `.missing` when
    /// there is none.
    func deleteDraft(tenant: String, name: String) async throws -> DraftDeletion
    func flowNames(tenant: String, limit: Int, offset: Int) async throws -> (items: [String], total: Int)
    func versions(tenant: String, flow: String) async throws -> [(version: Int, programHash: String, source: String, at: Timestamp)]
    func publishedFlows(tenant: String) async throws -> [PublishedFlow]
    /// A program by its hash (a program is the same for every tenant that publishes the same source).
    func program(hash: String) async throws -> Program?
}

/// Conversations as operators and agents see them.
public protocol ConversationRecords: Sendable {
    func conversation(id: String, tenant: String) async throws -> ConversationRecord?
    func conversations(tenant: String, filter: ConversationFilter, limit: Int, offset: Int) async throws -> (items: [ConversationRecord], total: Int)
    func messages(conversation: String, tenant: String) async throws -> [MessageRecord]
    func traces(conversation: String, tenant: String) async throws -> [TraceEntry]
    func statuses(conversation: String, tenant: String) async throws -> [(messageID: String, status: String, errorCode: String?, at: Timestamp)]
    func inbox(tenant: String, queue: String?) async throws -> [InboxEntry]
    /// Claims a handed-off conversation for an agent; false when another agent has it or it is not in the inbox.
    func claim(conversation: String, tenant: String, agent: String) async throws -> Bool
    /// An agent's message, kept in the history (with who wrote it) and queued like the flow's own. Only the agent who
    /// holds the conversation may write; writing to one nobody holds claims it.
    func agentMessage(conversation: String, tenant: String, text: String, agent: String, now: Timestamp) async throws -> AgentWrite
    /// Gives a handed-off conversation to `agent`, whoever held it; false when it is not in the inbox.
    func transfer(conversation: String, tenant: String, to agent: String) async throws -> Bool
    /// The tenant's restricted queues and their named agents; a queue not here is open to every agent.
    func queueAgents(tenant: String) async throws -> [String: [String]]
    /// Restricts `queue` to `agents` (people or key ids), replacing who it had; no agents lifts the restriction.
    func setQueueAgents(tenant: String, queue: String, agents: [String]) async throws
    /// New messages and turns after two cursors, for the live event stream.
    func changes(tenant: String, afterMessage: Int64, afterTrace: Int64, limit: Int)
        async throws -> (messages: [(id: Int64, conversation: String, message: MessageRecord)], turns: [(id: Int64, conversation: String, status: String, wait: Value)])
    func latestCursors(tenant: String) async throws -> (message: Int64, trace: Int64)
}

/// Tenants, their API keys and channels, and the audit log.
public protocol TenantRecords: Sendable {
    func ensureTenant(id: String, name: String) async throws
    func tenantExists(_ id: String) async throws -> Bool
    func insertAPIKey(_ k: APIKeyRecord) async throws
    /// Any tenant's key by its public prefix: how a request is authenticated.
    func apiKey(prefix: String) async throws -> APIKeyRecord?
    func apiKeys(tenant: String, limit: Int, offset: Int) async throws -> (items: [APIKeyRecord], total: Int)
    func revokeAPIKey(id: String, tenant: String, at: Timestamp) async throws -> Bool
    func insertChannel(_ c: ChannelRecord) async throws
    /// Writes a channel's name, settings and secrets over the record they were made from; false when the tenant has
    /// no such channel or it changed since.
    func updateChannel(_ c: ChannelRecord, over read: ChannelRecord) async throws -> Bool
    func channel(id: String, tenant: String) async throws -> ChannelRecord?
    func channels(tenant: String, limit: Int, offset: Int) async throws -> (items: [ChannelRecord], total: Int)
    func audit(_ entry: AuditEntry) async throws
    /// A page of the audit log, newest first, and how many entries match in all.
    func auditEntries(tenant: String, filter: AuditFilter, limit: Int, offset: Int) async throws -> (items: [AuditEntry], total: Int)
    /// A key of this tenant by its id.
    func apiKey(id: String, tenant: String) async throws -> APIKeyRecord?
}

/// The store's own health, across tenants: readiness, the schema, and the backlog gauges.
public protocol StoreHealth: Sendable {
    func ping() async throws
    func migrate() async throws
    func backlog(now: Timestamp) async throws -> (events: Int, deliveries: Int)
    func dueAndDead(now: Timestamp) async throws -> (due: Int, dead: Int)
}

/// Everything the API needs.
public typealias APIStore = FlowRecords & ConversationRecords & TenantRecords & StoreHealth & PeopleRecords

/// People, their memberships and sessions, single-use links and failed sign-ins.
public protocol PeopleRecords: Sendable {
    func userCount() async throws -> Int
    /// Creates a person with their memberships; false when the email is taken.
    func insertUser(_ user: UserRecord, memberships: [Membership]) async throws -> Bool
    func user(email: String) async throws -> UserRecord?
    func user(id: String) async throws -> UserRecord?
    func memberships(user: String) async throws -> [Membership]
    func insertSession(_ session: SessionRecord) async throws
    func session(idHash: String) async throws -> SessionRecord?
    func touchSession(idHash: String, at: Timestamp) async throws
    func revokeSession(idHash: String) async throws
    /// Moves a session to another of its person's tenants.
    func switchSession(idHash: String, tenant: String) async throws
    /// Signs a person out everywhere; how many sessions ended.
    func revokeSessions(user: String) async throws -> Int
    /// Stores a single-use link (by the hash of its token).
    func insertLink(_ link: LinkRecord, at: Timestamp) async throws
    /// An unspent, unexpired link of `kind`, without spending it.
    func link(hash: String, kind: String, at: Timestamp) async throws -> LinkRecord?
    /// Spends a link of `kind` once; nil when it was used, expired or never existed.
    func useLink(hash: String, kind: String, at: Timestamp) async throws -> LinkRecord?
    /// A tenant's people, by email.
    func members(tenant: String) async throws -> [Member]
    /// Adds a membership, or changes its role when there is one (`.lastAdmin`: it would leave no admin).
    func setMembership(user: String, tenant: String, role: String) async throws -> MemberChange
    func removeMembership(user: String, tenant: String) async throws -> MemberChange
    func setPassword(user: String, hash: String) async throws
    /// Failed sign-ins by a key (`email:…`, `address:…`): how many in a row, and until when it is locked.
    func signInFailures(key: String) async throws -> (failures: Int, lockedUntil: Timestamp?)
    func recordSignInFailure(key: String, lockedUntil: Timestamp?, at: Timestamp) async throws
    func clearSignInFailures(key: String) async throws
}

/// What deleting a draft did.
public enum DraftDeletion: Sendable, Equatable {
    case deleted, published, missing
}
