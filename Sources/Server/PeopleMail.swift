import FlowEngine
import FlowStore
import FlowVM

/// Mail to people (invitations, password resets) through their tenant's `email` channel, queued in the outbox like
/// every send, with its payload sealed at rest: the link it carries opens an account.
struct PeopleMail: Sendable {
    let store: SQLStore
    let engine: Engine
    let secrets: SecretBox?
    /// Links in the mail are absolute, on the server's public URL; a path when it is not known.
    let publicURL: String?

    func link(_ path: String) -> String {
        guard let publicURL else { return path }
        return (publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL) + path
    }

    /// Queues the mail; false when the tenant has no `email` channel, no key seals it, or the public URL is not known
    /// (then the admin passes the link on).
    func send(tenant: String, to: String, key: String, subject: String, text: String) async throws -> Bool {
        guard let secrets, publicURL != nil, try await store.newestChannel(tenant: tenant, kind: "email") != nil else { return false }
        let payload = try SealedPayload.seal(["to": .string(to), "subject": .string(subject), "text": .string(text)], key: key, with: secrets)
        try await store.enqueue([QueuedAction(key: key, action: "email.send", payload: payload)], tenant: tenant, queue: { _ in "people:\(tenant)" },
                                now: engine.now)
        engine.outboxChanged()
        return true
    }
}
