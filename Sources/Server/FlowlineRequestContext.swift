import Hummingbird
import Logging

/// What the server knows about a request: who is calling (after `AuthMiddleware`) and the usual core context.
public struct FlowlineRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The caller's tenant and role, once authenticated.
    public var caller: Caller?

    /// The peer's IP address, for limiting sign-in attempts per address.
    public var remoteAddress: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Request bodies (flows, messages) are small; anything larger is refused with 413.
    public var maxUploadSize: Int { 512 * 1024 }

    /// The authenticated caller; routes behind `AuthMiddleware` can rely on it.
    func requireCaller() throws -> Caller {
        guard let caller else { throw Problem(.unauthorized, "missing or invalid API key") }
        return caller
    }

    /// The caller, when their role (a key's or a person's) allows what `minimum` may; 403 saying `why` otherwise.
    /// Every route's role check is this one line; `Caller.allows` is the one ranking of roles.
    func requireCaller(_ minimum: Caller.Role, _ why: String) throws -> Caller {
        let caller = try requireCaller()
        guard caller.allows(minimum) else { throw Problem(.forbidden, why) }
        return caller
    }
}

/// An authenticated API key's owner.
public struct Caller: Sendable, Hashable {
    public enum Role: String, Sendable, CaseIterable {
        /// Everything in its tenant, including keys and channels.
        case admin
        /// Flows, conversations and the handoff inbox.
        case supervisor
        /// Conversations and the handoff inbox.
        case agent
        /// Creates tenants; sees no tenant's data (its own tenant, `_platform`, has none).
        case platform
    }
    public var tenant: String
    public var role: Role
    /// Who acts: the API key's id, or the signed-in person's user id (`usr_…`). Audit entries, claims and agent
    /// messages name it.
    public var keyID: String
    /// The session, when a person signed in with a cookie (then unsafe methods need its CSRF token).
    public var sessionHash: String?

    /// Whether this caller may do what `minimum` may.
    func allows(_ minimum: Role) -> Bool {
        if role == .platform || minimum == .platform { return role == minimum }
        let rank: [Role: Int] = [.agent: 0, .supervisor: 1, .admin: 2]
        return rank[role]! >= rank[minimum]!
    }
}
