import FlowVM

// The records the API reads and writes besides the engine's own (Records.swift), shared by every store.

/// A stored API key: only its prefix and hash are kept.
public struct APIKeyRecord: Sendable, Hashable {
    public var id: String
    public var tenant: String
    public var role: String
    public var prefix: String
    public var hash: String
    public var label: String
    public var createdAt: Timestamp
    public var revoked: Bool

    public init(id: String, tenant: String, role: String, prefix: String, hash: String, label: String, createdAt: Timestamp,
                revoked: Bool) {
        self.id = id
        self.tenant = tenant
        self.role = role
        self.prefix = prefix
        self.hash = hash
        self.label = label
        self.createdAt = createdAt
        self.revoked = revoked
    }
}

/// A channel of a tenant.
public struct ChannelRecord: Sendable, Hashable {
    public var id: String
    public var tenant: String
    public var kind: String
    public var name: String
    public var callbackURL: String?
    public var createdAt: Timestamp
    /// The channel's secret as sealed by `SecretBox` (never the plain secret).
    public var sealedSecret: String?
    /// Settings that are not secret (`phone_number_id` of a WhatsApp channel).
    public var config: Value

    public init(id: String, tenant: String, kind: String, name: String, callbackURL: String?, createdAt: Timestamp,
                sealedSecret: String? = nil, config: Value = [:]) {
        self.config = config
        self.id = id
        self.tenant = tenant
        self.kind = kind
        self.name = name
        self.callbackURL = callbackURL
        self.createdAt = createdAt
        self.sealedSecret = sealedSecret
    }

    /// What a sealed channel secret is bound to: a ciphertext moved to another channel or tenant does not open.
    public var secretContext: String { "channel:\(tenant):\(id)" }
}

/// A conversation in the handoff inbox.
public struct InboxEntry: Sendable, Hashable {
    public var conversation: ConversationRecord
    public var queue: String
    /// The key id of the agent who claimed it.
    public var agent: String?

    public init(conversation: ConversationRecord, queue: String, agent: String?) {
        self.conversation = conversation
        self.queue = queue
        self.agent = agent
    }
}

/// What `GET /v1/conversations` filters on; nil matches everything.
public struct ConversationFilter: Sendable, Hashable {
    public var status: ConversationStatus?
    public var contact: String?
    public var flow: String?
    public var channel: String?

    public init(status: ConversationStatus? = nil, contact: String? = nil, flow: String? = nil, channel: String? = nil) {
        self.status = status
        self.contact = contact
        self.flow = flow
        self.channel = channel
    }
}
