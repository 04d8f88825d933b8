import ArgumentParser
import CRMConnector
import FlowRuntime
import Foundation
import Logging
import Server

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the API server and the engine (SQLite ./flowline.db and the flows in flows/ by default).")

    @Option(help: "Address to listen on (or $FLOWLINE_HOST).") var host: String?
    @Option(help: "Port to listen on (or $FLOWLINE_PORT).") var port: Int?
    @OptionGroup var db: DatabaseOption
    @Option(help: "Folder of flows to publish to the demo tenant at start-up.") var flows = "flows"
    @Option(help: "Seconds a claimed delivery stays with this process before another may retry it (or $FLOWLINE_DELIVERY_LEASE; 60).")
    var deliveryLease: Int64?

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        var config = ServerConfiguration.fromEnvironment(database: db.url)
        config.host = host ?? env["FLOWLINE_HOST"] ?? config.host
        config.port = port ?? env["FLOWLINE_PORT"].flatMap(Int.init) ?? config.port
        config.adminKey = env["FLOWLINE_ADMIN_KEY"]
        config.adminEmail = env["FLOWLINE_ADMIN_EMAIL"].flatMap { $0.isEmpty ? nil : $0 }
        config.adminPassword = env["FLOWLINE_ADMIN_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        config.platformKey = env["FLOWLINE_PLATFORM_KEY"]
        config.singleSignOn = OIDCProvider.providers(environment: env)
        switch env["FLOWLINE_SIGNUP"] ?? "" {
        case "open": config.signUp = true
        case "", "closed": config.signUp = false
        case let other:
            FileHandle.standardError.write(Data("flowline serve: FLOWLINE_SIGNUP is open or closed, not \(other)\n".utf8))
            throw ExitCode.failure
        }
        config.flowsDirectory = flows
        config.deliveryLease = deliveryLease ?? config.deliveryLease
        var logger = Logger(label: "flowline")
        logger.logLevel = env["FLOWLINE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        do {
            try await FlowlineServer.run(config, logger: logger)
        } catch let e as StartupError {
            FileHandle.standardError.write(Data("flowline serve: \(e.message)\n".utf8))
            throw ExitCode.failure
        } catch {
            // Only the error's type and a bounded description: never a backtrace for a configuration mistake.
            FileHandle.standardError.write(Data("flowline serve: \(String(describing: error).prefix(300))\n".utf8))
            throw ExitCode.failure
        }
    }
}

extension ServerConfiguration {
    /// What every process that runs turns reads from its environment (`serve` and `work` alike): the secrets key,
    /// the public URL of resume links, the `webhook:` signing secret, the delivery lease and custom connectors.
    static func fromEnvironment(database: String) -> ServerConfiguration {
        let env = ProcessInfo.processInfo.environment
        var config = ServerConfiguration()
        config.database = database
        config.secretKey = env["FLOWLINE_SECRET_KEY"]
        config.webhookSigningSecret = env["FLOWLINE_WEBHOOK_SIGNING_SECRET"]
        config.publicURL = env["FLOWLINE_PUBLIC_URL"]
        config.deliveryLease = env["FLOWLINE_DELIVERY_LEASE"].flatMap(Int64.init) ?? config.deliveryLease
        config.campaignLease = env["FLOWLINE_CAMPAIGN_LEASE"].flatMap(Int64.init) ?? config.campaignLease
        // The example custom connector (docs/connectors.md), when a CRM is configured.
        if let url = env["FLOWLINE_CRM_URL"] {
            config.connectors.append(CRMConnector(baseURL: url, apiKey: env["FLOWLINE_CRM_API_KEY"] ?? ""))
        }
        return config
    }
}
