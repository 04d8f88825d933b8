import AsyncHTTPClient
import Connectors
import FlowEngine
import FlowStore
import Foundation
import Logging

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
    public let engine: Engine

    private init(store: SQLStore, secrets: SecretBox?, http: HTTPClient, connectors: ConnectorRegistry, engine: Engine) {
        self.store = store
        self.secrets = secrets
        self.http = http
        self.connectors = connectors
        self.engine = engine
    }

    /// Opens the database (reachable within 15 s) and assembles the rest.
    /// - Parameters:
    ///   - replacing: connectors registered last, replacing any other for their actions (`flowline work
    ///     --channel-file` writes every send to a file this way).
    ///   - tune: adjusts the engine's configuration (batch sizes, leases, polling) before the engine is made.
    public static func start(_ configuration: ServerConfiguration, replacing: [any Connector] = [],
                             tune: (inout Engine.Configuration) -> Void = { _ in }, logger: Logger) async throws(StartupError) -> Runtime {
        let secrets: SecretBox?
        do {
            secrets = try FlowlineServer.secretBox(configuration, logger: logger)
        } catch {
            throw StartupError("cannot read the key for channel secrets: \(error)")
        }
        let store: SQLStore
        do {
            store = try await SQLStore.open(configuration.database, logger: logger)
        } catch {
            throw StartupError("cannot open the database \(FlowlineServer.redacted(configuration.database)): \(String(describing: error).prefix(300))")
        }
        do {
            try await reachable(store, within: .seconds(15))
        } catch {
            await store.close()
            throw StartupError("cannot reach the database \(FlowlineServer.redacted(configuration.database)) within 15 s")
        }
        let http = FlowlineServer.makeHTTPClient()
        var registry = FlowlineServer.connectors(
            store: store, secrets: secrets,
            custom: [HTTPWebhookConnector(signingSecret: configuration.webhookSigningSecret)] + configuration.connectors)
        for c in replacing { registry.register(c) }
        var engineConfiguration = Engine.Configuration()
        engineConfiguration.http = http
        engineConfiguration.delivery.lease = configuration.deliveryLease
        engineConfiguration.connectorTimeout = min(.seconds(30), .milliseconds(configuration.deliveryLease * 500))
        if let secrets {
            engineConfiguration.resumeLinks = ResumeLinks(baseURL: configuration.publicURL ?? "http://\(configuration.host):\(configuration.port)",
                                                          secrets: secrets)
        }
        tune(&engineConfiguration)
        let engine = Engine(store: store, connectors: registry, configuration: engineConfiguration, logger: logger)
        return Runtime(store: store, secrets: secrets, http: http, connectors: registry, engine: engine)
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
}
