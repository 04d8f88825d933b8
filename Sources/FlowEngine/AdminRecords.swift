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
    /// The signing secret a rotation replaced, sealed like the secret, and until when it still signs beside it.
    public var previousSealedSecret: String?
    public var previousSecretUntil: Timestamp?

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

/// One line of a tenant's audit log: who did what to which object, in which request.
public struct AuditEntry: Sendable, Hashable {
    public var id: Int64
    public var tenant: String
    /// The key (or, once people sign in, the person) that acted.
    public var actor: String
    /// `flow.publish`, `conversation.cancel`, `inbox.transfer`…
    public var action: String
    /// What it acted on: a flow, a conversation, a key, a channel.
    public var subject: String
    /// The request's id (`hb.request.id` in the log), when it came through the API.
    public var request: String?
    public var at: Timestamp

    public init(id: Int64 = 0, tenant: String, actor: String, action: String, subject: String, request: String? = nil, at: Timestamp) {
        self.id = id
        self.tenant = tenant
        self.actor = actor
        self.action = action
        self.subject = subject
        self.request = request
        self.at = at
    }
}

/// What `GET /v1/audit` filters on; nil matches everything. `after` and `before` bound `at` (inclusive, exclusive).
public struct AuditFilter: Sendable, Hashable {
    public var actor: String?
    public var action: String?
    public var subject: String?
    public var after: Timestamp?
    public var before: Timestamp?

    public init(actor: String? = nil, action: String? = nil, subject: String? = nil, after: Timestamp? = nil, before: Timestamp? = nil) {
        self.actor = actor
        self.action = action
        self.subject = subject
        self.after = after
        self.before = before
    }
}

/// What became of an agent's message.
public enum AgentWrite: Sendable, Hashable {
    /// Kept in the history and queued for the contact; the conversation is now (or was already) the writer's.
    case queued
    /// The conversation is not handed off.
    case notWithAnAgent
    /// Another agent holds it.
    case claimedByAnother(String)
}

/// A person who signs in. The password is kept as a bcrypt hash only.
public struct UserRecord: Sendable, Hashable {
    public var id: String
    /// Lower case: one account per address.
    public var email: String
    public var name: String
    public var passwordHash: String
    public var createdAt: Timestamp

    public init(id: String, email: String, name: String, passwordHash: String, createdAt: Timestamp) {
        self.id = id
        self.email = email
        self.name = name
        self.passwordHash = passwordHash
        self.createdAt = createdAt
    }
}

/// A person's role in one tenant.
public struct Membership: Sendable, Hashable {
    public var tenant: String
    public var role: String

    public init(tenant: String, role: String) {
        self.tenant = tenant
        self.role = role
    }
}

/// A signed-in browser: kept by the SHA-256 of its id (the cookie), never the id itself.
public struct SessionRecord: Sendable, Hashable {
    public var idHash: String
    public var user: String
    /// The tenant the person works in now (one of their memberships).
    public var tenant: String
    /// The SHA-256 of the session's CSRF token, which unsafe requests carry in `X-CSRF-Token`.
    public var csrfHash: String
    public var createdAt: Timestamp
    public var lastSeenAt: Timestamp
    public var expiresAt: Timestamp
    public var revoked: Bool

    public init(idHash: String, user: String, tenant: String, csrfHash: String, createdAt: Timestamp, lastSeenAt: Timestamp,
                expiresAt: Timestamp, revoked: Bool = false) {
        self.idHash = idHash
        self.user = user
        self.tenant = tenant
        self.csrfHash = csrfHash
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
        self.expiresAt = expiresAt
        self.revoked = revoked
    }
}

/// A single-use link's purpose and what it carries: `setup` (the first admin), `invite` (an email and a role in a
/// tenant), `reset` (a person's new password). Kept by the SHA-256 of its token.
public struct LinkRecord: Sendable, Hashable {
    public var hash: String
    public var kind: String
    public var tenant: String?
    public var email: String?
    public var role: String?
    public var user: String?
    public var expiresAt: Timestamp?
    /// What the link's kind keeps beyond these fields (JSON): a single sign-on's nonce and PKCE verifier.
    public var detail: String?

    public init(hash: String, kind: String, tenant: String? = nil, email: String? = nil, role: String? = nil, user: String? = nil,
                expiresAt: Timestamp? = nil, detail: String? = nil) {
        self.detail = detail
        self.hash = hash
        self.kind = kind
        self.tenant = tenant
        self.email = email
        self.role = role
        self.user = user
        self.expiresAt = expiresAt
    }
}

/// A person in a tenant, as its admins see them.
public struct Member: Sendable, Hashable {
    public var user: UserRecord
    public var role: String

    public init(user: UserRecord, role: String) {
        self.user = user
        self.role = role
    }
}

/// Why a change to a tenant's people was refused.
public enum MemberChange: Sendable, Hashable {
    case done
    case notAMember
    /// It would leave the tenant without an admin.
    case lastAdmin
}
