import AsyncHTTPClient
import Connectors
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import Logging
import ServiceLifecycle

/// What every process that runs turns is made of, built once from one configuration: the store, the key for
/// channel secrets, the HTTP client, every connector (the channels' senders, the services bound to the tenant's
/// accounts, the `webhook:` connector and custom ones), resume links and the engine. `flowline serve` and
/// `flowline work` both start from it, so any number of either on one database deliver every channel's sends and
/// every connector's actions with the tenant's own credentials.
public final class Runtime: Sendable {
    public let store: SQLStore
    public let secrets: SecretBox?
    public let http: HTTPClient
    public let connectors: ConnectorRegistry
    public let channels: Channels
    public let engine: Engine

    private let database: String

    private init(store: SQLStore, secrets: SecretBox?, http: HTTPClient, connectors: ConnectorRegistry, channels: Channels, engine: Engine,
                 database: String) {
        self.database = database
        self.channels = channels
        self.store = store
        self.secrets = secrets
        self.http = http
        self.connectors = connectors
        self.engine = engine
    }

    /// What a runtime is built from: `serve` makes one from its `ServerConfiguration`, `work` from the environment.
    public struct Configuration: Sendable {
        public var database: String
        /// Seals channel secrets (`FLOWLINE_SECRET_KEY`); on SQLite a key file beside the database when nil.
        public var secretKey: String?
        /// Where the outside world reaches the server: the base of resume links.
        public var publicURL: String
        /// Signs every `webhook:` request when set.
        public var webhookSigningSecret: String?
        /// Seconds a claimed delivery stays with this process; a connector call gets at most half (and 30 s).
        public var deliveryLease: Int64
        /// Seconds a campaign's batch stays with this process; after a crash, the wait before another goes on with it.
        public var campaignLease: Int64 = 30
        /// Custom connectors: their actions join the catalog and may replace a built-in one.
        public var connectors: [any Connector]
        /// Custom channel kinds, after the built-in ones (`BuiltinChannels.all`); one of a built-in kind replaces it.
        public var channels: [any ChannelDriver]

        public init(database: String, secretKey: String? = nil, publicURL: String, webhookSigningSecret: String? = nil,
                    deliveryLease: Int64 = 60, connectors: [any Connector] = [], channels: [any ChannelDriver] = []) {
            self.channels = channels
            self.database = database
            self.secretKey = secretKey
            self.publicURL = publicURL
            self.webhookSigningSecret = webhookSigningSecret
            self.deliveryLease = deliveryLease
            self.connectors = connectors
        }
    }

    /// Opens the database (reachable within 15 s) and assembles the rest.
    /// - Parameters:
    ///   - replacing: connectors registered last, replacing any other for their actions (`flowline work
    ///     --channel-file` writes every send to a file this way).
    ///   - tune: adjusts the engine's configuration (batch sizes, leases, polling) before the engine is made.
    ///   - lifecycle: `.service` for a process with a service group: the store's pool is then one of `services`, and
    ///     the database is first reached in `prepare()`, once the group runs.
    public static func start(_ configuration: Configuration, replacing: [any Connector] = [],
                             tune: (inout Engine.Configuration) -> Void = { _ in }, lifecycle: SQLStore.Lifecycle = .standalone,
                             logger: Logger) async throws(StartupError) -> Runtime {
        let secrets: SecretBox?
        do {
            secrets = try secretBox(database: configuration.database, secretKey: configuration.secretKey, logger: logger)
        } catch {
            throw StartupError("cannot read the key for channel secrets: \(error)")
        }
        let store: SQLStore
        do {
            store = try await SQLStore.open(configuration.database, logger: logger, lifecycle: lifecycle)
        } catch {
            throw StartupError("cannot open the database \(redacted(configuration.database)): \(String(describing: error).prefix(300))")
        }
        if lifecycle == .standalone {
            do {
                try await reachable(store, within: .seconds(15))
            } catch {
                await store.close()
                throw StartupError("cannot reach the database \(redacted(configuration.database)) within 15 s")
            }
        }
        let http = makeHTTPClient()
        let channels = Channels(drivers: BuiltinChannels.all + configuration.channels, store: store, secrets: secrets)
        var registry = connectors(channels: channels,
                                  custom: [HTTPWebhookConnector(signingSecret: configuration.webhookSigningSecret)] + configuration.connectors)
        for c in replacing { registry.register(c) }
        var engineConfiguration = Engine.Configuration()
        engineConfiguration.http = http
        engineConfiguration.delivery.lease = configuration.deliveryLease
        engineConfiguration.campaignLease = configuration.campaignLease
        engineConfiguration.connectorTimeout = min(.seconds(30), .milliseconds(configuration.deliveryLease * 500))
        if let secrets { engineConfiguration.resumeLinks = ResumeLinks(baseURL: configuration.publicURL, secrets: secrets) }
        engineConfiguration.secrets = secrets
        engineConfiguration.templateKinds = Set(channels.drivers.filter { $0.replyWindow != nil }.map(\.kind))
        tune(&engineConfiguration)
        let engine = Engine(store: store, connectors: registry, configuration: engineConfiguration, logger: logger)
        return Runtime(store: store, secrets: secrets, http: http, connectors: registry, channels: channels, engine: engine,
                       database: configuration.database)
    }

    /// What a `.service` runtime's service group runs, in order: the store's pool first (so it stops last), then the
    /// engine once `ready` opens.
    public func services(ready: Gate) -> [any Service] {
        [store.service].compactMap { $0 } + [EngineService(engine: engine, ready: ready)]
    }

    /// Reaches the database (within 15 s): the first thing a `.service` runtime does once its group runs.
    public func prepare() async throws(StartupError) {
        do {
            try await Self.reachable(store, within: .seconds(15))
        } catch {
            throw StartupError("cannot reach the database \(Self.redacted(database)) within 15 s")
        }
    }

    /// Every action flows may `use:`: the built-in ones and the registered connectors'.
    public var catalog: ActionCatalog { Self.catalog(connectors, channels: channels) }

    /// The same for a registry and channel kinds of one's own (the built-in kinds when nil).
    public static func catalog(_ connectors: ConnectorRegistry, channels: Channels? = nil) -> ActionCatalog {
        var catalog = connectors.catalog(adding: BuiltinActions.catalog)
        if let channels { catalog.channels = channels.drivers.filter(\.carriesConversations).map(\.kind) }
        return catalog
    }

    /// Closes what `start` opened.
    public func shutdown() async {
        try? await http.shutdown()
        await store.close()
    }

    /// Pings the database, giving up after `limit` (a pool retries an unreachable server for minutes).
    private static func reachable(_ store: SQLStore, within limit: Duration) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { try await store.ping(); return true }
            group.addTask { try await Task.sleep(for: limit); return false }
            defer { group.cancelAll() }
            guard try await group.next() == true else { throw StartupError("timed out") }
        }
    }

    /// The engine's connectors, wherever turns run: every channel kind's sends, receipts and actions, then the custom
    /// connectors (which may replace a built-in action).
    public static func connectors(channels: Channels, custom: [any Connector] = [],
                                  clock: @escaping @Sendable () -> Timestamp = { Timestamp(Date()) }) -> ConnectorRegistry {
        let tools = ToolBox()
        let registry = ConnectorRegistry(channels.connectors(now: clock, tools: tools) + custom)
        tools.set(registry)
        return registry
    }

    /// The same for the built-in kinds on `store`.
    public static func connectors(store: SQLStore, secrets: SecretBox?, custom: [any Connector] = [],
                                  clock: @escaping @Sendable () -> Timestamp = { Timestamp(Date()) }) -> ConnectorRegistry {
        connectors(channels: Channels(store: store, secrets: secrets), custom: custom, clock: clock)
    }

    /// The HTTP client connectors share: no redirects (a webhook that moved is a configuration error to surface).
    public static func makeHTTPClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5), read: .seconds(30)),
                                                     connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 32))
        configuration.httpVersion = .http1Only
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The key that seals channel secrets: `FLOWLINE_SECRET_KEY`, or for an SQLite database a key file beside it
    /// (`flowline.db.key`, created on first start, mode 0600). PostgreSQL deployments run several processes that
    /// must share one key, so they get it from the environment or store no secrets.
    public static func secretBox(database: String, secretKey: String?, logger: Logger) throws -> SecretBox? {
        if let key = secretKey { return try SecretBox(base64: key) }
        guard database.hasPrefix("sqlite:") else {
            logger.notice("FLOWLINE_SECRET_KEY is not set: channels cannot be given secrets")
            return nil
        }
        let path = String(database.dropFirst("sqlite:".count)) + ".key"
        if let existing = FileManager.default.contents(atPath: path) {
            return try SecretBox(base64: String(decoding: existing, as: UTF8.self))
        }
        let key = SecretBox.generateKey()
        guard FileManager.default.createFile(atPath: path, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw EngineError(.secret, "cannot write the secret key file \(path)")
        }
        logger.notice("created a key for channel secrets", metadata: ["file": "\(path)"])
        return try SecretBox(base64: key)
    }

    /// A database URL without its password, for logs.
    public static func redacted(_ url: String) -> String {
        guard var c = URLComponents(string: url), c.password != nil else { return url }
        c.password = "***"
        return c.string ?? "postgres://***"
    }
}

/// Why `flowline serve` could not start: one line for people, never a secret.
public struct StartupError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
