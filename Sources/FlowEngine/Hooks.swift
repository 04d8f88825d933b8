import FlowVM

/// A flow's inbound webhook (`POST /hooks/{token}`): what the posted JSON starts, on which channel. The token is
/// known only by its SHA-256; the signing secret, when the hook has one, is kept sealed.
public struct FlowHook: Sendable, Hashable {
    public var tenant: String
    public var flow: String
    public var channel: String
    /// The HMAC key requests must be signed with, sealed (`SecretBox.seal`, context `hook:<tenant>:<flow>`); nil when
    /// the token alone is enough.
    public var sealedSigningSecret: String?
    public var createdAt: Timestamp

    public init(tenant: String, flow: String, channel: String, sealedSigningSecret: String?, createdAt: Timestamp) {
        self.tenant = tenant
        self.flow = flow
        self.channel = channel
        self.sealedSigningSecret = sealedSigningSecret
        self.createdAt = createdAt
    }

    /// What the signing secret is sealed under.
    public var secretContext: String { "hook:\(tenant):\(flow)" }
}

/// Flows' webhooks. Every call but the lookup by token is scoped by tenant.
public protocol HookRecords: Sendable {
    /// Makes the flow's hook, or replaces it (rotation): the old token stops working in the same transaction.
    func saveHook(_ hook: FlowHook, tokenHash: String) async throws
    func hook(tokenHash: String) async throws -> FlowHook?
    func hook(tenant: String, flow: String) async throws -> FlowHook?
    func deleteHook(tenant: String, flow: String) async throws -> Bool
}
