import Connectors
import FlowEngine
import FlowStore
import FlowVM
import Logging
import Synchronization

/// The channel kinds a runtime knows, by kind, and what it does with them: open a channel's account for its driver,
/// hand a provider's webhook to it, and perform sends, receipts and actions through it. `serve` and `work` share
/// one, so every process delivers every kind's sends.
public final class Channels: Sendable {
    public let drivers: [any ChannelDriver]
    private let byKind: [String: any ChannelDriver]
    let store: SQLStore
    let secrets: SecretBox?
    let settings = ProgramSettings()

    /// - Parameter drivers: the kinds; a later driver replaces an earlier one of the same kind.
    public init(drivers: [any ChannelDriver] = BuiltinChannels.all, store: SQLStore, secrets: SecretBox?) {
        var byKind: [String: any ChannelDriver] = [:], order: [String] = []
        for d in drivers {
            if byKind[d.kind] == nil { order.append(d.kind) }
            byKind[d.kind] = d
        }
        self.byKind = byKind
        self.drivers = order.compactMap { byKind[$0] }
        self.store = store
        self.secrets = secrets
    }

    public subscript(kind: String) -> (any ChannelDriver)? { byKind[kind] }

    /// Every field any kind declares, by name: a request naming one is checked by its form whatever its kind, so it is
    /// valid or not on its own (as /openapi.json describes it).
    public var fieldsByName: [String: ChannelField] {
        var out: [String: ChannelField] = [:]
        for d in drivers { for f in d.fields where out[f.name] == nil { out[f.name] = f } }
        return out
    }

    /// A channel's account for its driver, its secrets opened; at `now`, a rotated-out signing secret still in its
    /// day signs too. Throws `EngineError(.secret)` when they cannot be opened.
    public func account(_ channel: SQLStore.ChannelRecord, at now: Timestamp? = nil) throws -> ChannelAccount {
        var account = ChannelAccount(id: channel.id, tenant: channel.tenant, kind: channel.kind, config: channel.config,
                                     callbackURL: channel.callbackURL)
        if byKind[channel.kind]?.fields.contains(where: \.isSecret) == true {
            account.credentials = try channel.credentials(secrets)  // the declared secret fields, sealed together
        } else {
            account.signingSecret = try channel.openSecret(secrets)  // one secret that signs what the channel sends
            if let now, let until = channel.previousSecretUntil, now < until {
                account.retiringSigningSecret = try channel.openPreviousSecret(secrets)
            }
        }
        return account
    }

    /// `account` for a connector call: a secret that cannot be opened is worth retrying (a key being rotated).
    func connectorAccount(_ channel: SQLStore.ChannelRecord, at now: Timestamp? = nil) throws -> ChannelAccount {
        do { return try account(channel, at: now) } catch { throw ConnectorError(code: "secret", message: "\(error)", retryable: true) }
    }

    /// The engine's connectors for every kind: `channel.send` and `channel.read` routed by the channel's kind, and each
    /// kind's actions with the account they run with.
    func connectors(now: @escaping @Sendable () -> Timestamp, tools: ToolBox) -> [any Connector] {
        [ChannelSend(channels: self, now: now, tools: tools), ChannelRead(channels: self)]
            + drivers.filter { !$0.actions.isEmpty }.map { KindActions(driver: $0, channels: self, now: now, tools: tools) }
    }

    /// The store a driver sees for one conversation.
    func conversationStore(_ context: ConnectorContext, channel: String, contact: String, now: @escaping @Sendable () -> Timestamp,
                           tools: ToolBox) -> ConversationStore {
        ConversationStore(store: store, tenant: context.tenant, conversation: context.conversation, channel: channel, contact: contact,
                          clock: now, settings: settings, toolbox: tools)
    }

    /// Why a webhook found no channel: a missing channel, or one of another kind, or a kind that takes none.
    public struct NoSuchChannel: Error, Sendable {
        public var kind: String
        public var id: String
    }

    /// Hands a provider's request for `/webhooks/{kind}/{id}` to its kind's driver. Throws `NoSuchChannel` (404) when
    /// the channel does not exist, is of another kind or its kind takes no webhooks, and the driver's `WebhookRefusal`.
    public func webhook(kind: String, id: String, _ request: WebhookRequest, engine: Engine, logger: Logger) async throws -> WebhookResponse {
        guard let driver = byKind[kind], driver.receivesWebhooks, let channel = try await store.channel(id: id), channel.kind == kind else {
            throw NoSuchChannel(kind: kind, id: id)
        }
        guard driver.webhookMethods.contains(request.method) else {
            throw WebhookRefusal(405, "\(kind) webhooks take \(driver.webhookMethods.joined(separator: " or "))",
                                 allow: driver.webhookMethods.joined(separator: ", "))
        }
        var log = logger
        log[metadataKey: "channel"] = "\(channel.id)"
        let inbox = Inbox(engine: engine, store: store, channel: channel, replyWindow: driver.replyWindow, logger: log)
        do {
            return try await driver.receive(request, account: account(channel), inbox: inbox)
        } catch let refusal as WebhookRefusal {
            log.warning("webhook refused", metadata: ["kind": "\(kind)", "status": "\(refusal.status)"])
            throw refusal
        }
    }
}

/// Each program version's top-level settings (`whatsapp_template`…), by program hash: a version never changes, so what
/// each declares is kept (a few hundred bytes per version) and a send reads nothing once its version is known.
final class ProgramSettings: Sendable {
    private let entries = Mutex<[String: Value]>([:])

    func metadata(_ hash: String, _ load: () async throws -> Value?) async throws -> Value {
        if let known = entries.withLock({ $0[hash] }) { return known }
        guard let metadata = try await load() else { return .null }
        entries.withLock { e in
            if e.count >= 10_000 { e.removeAll(keepingCapacity: true) }
            e[hash] = metadata
        }
        return metadata
    }
}

/// What a driver's webhook does, bound to its one channel: messages are stored for this channel's tenant only.
struct Inbox: ChannelInbox {
    let engine: Engine
    let store: SQLStore
    let channel: SQLStore.ChannelRecord
    let replyWindow: Int64?
    let logger: Logger

    var now: Timestamp { engine.now }

    func receive(_ m: ReceivedMessage) async throws -> ReceiveOutcome {
        var message = m.message
        message.replyWindow = replyWindow
        let result = try await engine.ingest(Inbound(
            tenant: channel.tenant, channel: channel.id, channelKind: channel.kind, contact: m.contact, contactName: m.contactName,
            contactPhone: m.contactPhone, providerID: m.providerID, message: message))
        if case .accepted(let conversation, _) = result {
            logger.info("\(channel.kind) message stored", metadata: ["conversation": "\(conversation)"])
        }
        return result
    }

    func queue(_ actions: [QueuedAction]) async throws {
        guard !actions.isEmpty else { return }
        try await store.enqueue(actions, tenant: channel.tenant, queue: { $0.key }, now: engine.now)
        engine.outboxChanged()
    }

    func updateStatus(providerID: String, status: String, errorCode: String?,
                      followUp: @escaping @Sendable (StatusChange) -> QueuedAction?) async throws -> StatusChange {
        let queued = Mutex(false)
        let change = try await store.updateStatus(channel: channel.id, providerID: providerID, tenant: channel.tenant, status: status,
                                                  errorCode: errorCode, at: engine.now) { change in
            let action = followUp(change)
            if action != nil { queued.withLock { $0 = true } }
            return action
        }
        if change.changed, status == "failed" {
            logger.warning("\(channel.kind) message failed after it was sent", metadata: [
                "conversation": "\(change.conversation ?? "?")", "code": "\(errorCode ?? "?")",
            ])
        }
        if queued.withLock({ $0 }) { engine.outboxChanged() }
        return change
    }

    func resume(event: String, key: String, payload: Value, providerID: String) async throws -> Bool {
        try await engine.deliverEvent(tenant: channel.tenant, name: event, key: key, payload: payload, providerID: providerID)
    }
}

/// What a driver reads and records for one conversation.
struct ConversationStore: ChannelStore {
    let store: SQLStore
    let tenant: String
    let conversation: String
    let channel: String
    let contact: String
    let clock: @Sendable () -> Timestamp
    let settings: ProgramSettings
    let toolbox: ToolBox

    var now: Timestamp { clock() }

    func lastInboundAt() async throws -> Timestamp? { try await store.lastInboundAt(conversation: conversation, tenant: tenant) }

    func contactPhone(_ contact: String) async throws -> String? {
        try await store.contactPhone(tenant: tenant, channel: channel, contact: contact)
    }

    func recordSent(providerID: String, fallback: Value) async throws {
        try await store.recordSent(channel: channel, providerID: providerID, tenant: tenant, conversation: conversation, at: now, fallback: fallback)
    }

    func flowSetting(_ name: String, program: String?) async throws -> Value {
        var hash = program
        if hash == nil { hash = try await store.conversation(id: conversation, tenant: tenant)?.programHash }
        guard let hash else { return .null }
        let metadata = try await settings.metadata(hash) { try await store.program(hash: hash)?.metadata }
        return metadata[name]
    }

    func history(limit: Int) async throws -> [(fromContact: Bool, text: String)] {
        try await store.messages(conversation: conversation, tenant: tenant).suffix(limit).map { ($0.direction == .inbound, $0.text) }
    }

    var tools: [ActionDefinition] { toolbox.definitions }

    func performTool(_ action: String, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        try await toolbox.perform(action, parameters, context)
    }
}

/// `channel.send`: a conversation's message, through its channel's driver.
struct ChannelSend: Connector {
    let definitions = [ActionDefinition.channelSend]
    let channels: Channels
    let now: @Sendable () -> Timestamp
    let tools: ToolBox

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard case .string(let id) = parameters["channel"], let channel = try await channels.store.channel(id: id, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the conversation's channel does not exist", retryable: false)
        }
        guard let driver = channels[channel.kind], driver.carriesConversations else {
            throw ConnectorError(code: "no_driver", message: "no driver sends on \(channel.kind) channels", retryable: false)
        }
        let store = channels.conversationStore(context, channel: channel.id, contact: parameters["contact"].text, now: now, tools: tools)
        return try await driver.send(parameters, account: channels.connectorAccount(channel, at: now()), context: context, store: store)
    }
}

/// `channel.read`: a read receipt for an inbound message, through the channel it came on (channels without receipts
/// have nothing to do).
struct ChannelRead: Connector {
    let definitions = [ActionDefinition.channelRead]
    let channels: Channels

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        guard let channel = try await channels.store.channel(id: parameters["channel"].text, tenant: context.tenant) else {
            throw ConnectorError(code: "no_channel", message: "the message's channel does not exist", retryable: false)
        }
        guard let driver = channels[channel.kind] else { return ["read": false] }
        let read = try await driver.markRead(parameters["message_id"].text, account: channels.connectorAccount(channel), context: context)
        return ["read": .bool(read)]
    }
}

/// A kind's actions, with the account they run with: the conversation's own channel for a conversation channel
/// (`whatsapp.template` goes to the conversation's contact on its number), else the tenant's newest channel of the
/// kind (`stripe.checkout` uses the tenant's Stripe account).
struct KindActions: Connector {
    let driver: any ChannelDriver
    let channels: Channels
    let now: @Sendable () -> Timestamp
    let tools: ToolBox

    var definitions: [ActionDefinition] { driver.actions }

    func perform(action: String, parameters: Value, context: ConnectorContext) async throws -> Value {
        let kind = driver.kind
        let channel: SQLStore.ChannelRecord
        var contact = ""
        if driver.carriesConversations {
            guard let conversation = try await channels.store.conversation(id: context.conversation, tenant: context.tenant),
                  let c = try await channels.store.channel(id: conversation.channel, tenant: context.tenant), c.kind == kind else {
                throw ConnectorError(code: "not_\(kind)", message: "\(action) needs a conversation on a \(kind) channel", retryable: false)
            }
            channel = c
            contact = conversation.contact
        } else {
            guard let c = try await channels.store.newestChannel(tenant: context.tenant, kind: kind) else {
                throw ConnectorError(code: "no_\(kind)_channel", message: "the tenant has no \(kind) channel: create one with POST /v1/channels",
                                     retryable: false)
            }
            channel = c
        }
        let store = channels.conversationStore(context, channel: channel.id, contact: contact, now: now, tools: tools)
        return try await driver.perform(action: action, parameters: parameters, account: channels.connectorAccount(channel), context: context,
                                        store: store)
    }
}

/// Lets `ai.chat` call the other actions as tools; filled once the registry exists (it holds `ai.chat` itself).
final class ToolBox: Sendable {
    private let registry = Mutex<ConnectorRegistry?>(nil)

    func set(_ r: ConnectorRegistry) { registry.withLock { $0 = r } }

    /// Every action flows may `use:`, but the AI itself.
    var definitions: [ActionDefinition] {
        guard let r = registry.withLock({ $0 }) else { return [] }
        return r.catalog(adding: BuiltinActions.catalog).actions.values.filter { $0.name != "ai.chat" && r.connector(for: $0.name) != nil }
    }

    @Sendable func perform(_ action: String, _ parameters: Value, _ context: ConnectorContext) async throws -> Value {
        guard action != "ai.chat", let connector = registry.withLock({ $0 })?.connector(for: action) else {
            throw ConnectorError(code: "ai_tool_unknown", message: "no connector performs \(action)", retryable: false)
        }
        return try await connector.perform(action: action, parameters: parameters, context: context)
    }
}
