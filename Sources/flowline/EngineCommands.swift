import ArgumentParser
import FlowEngine
import FlowStore
import Foundation
import Logging

/// `--database` as every engine command takes it.
struct DatabaseOption: ParsableArguments {
    @Option(help: "sqlite:PATH or postgres://user:password@host:port/database (default: $FLOWLINE_DATABASE_URL or sqlite:./flowline.db)")
    var database: String?

    var url: String {
        database ?? ProcessInfo.processInfo.environment["FLOWLINE_DATABASE_URL"] ?? "sqlite:./flowline.db"
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the database schema (refuses a database newer than this Flowline).")

    @OptionGroup var db: DatabaseOption

    func run() async throws {
        let store = try await SQLStore.open(db.url)
        defer { Task { await store.close() } }
        do {
            try await store.migrate()
            print("schema at version \(SQLStore.schemaVersion)")
        } catch let e as StoreError {
            Shared.printErr("flowline migrate: \(e)")
            await store.close()
            throw ExitCode(1)
        }
        await store.close()
    }
}

/// Signal sources live as long as the process.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []

struct Work: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an engine worker: turns, timers and outbox deliveries, until SIGTERM or SIGINT.",
        discussion: "Several workers may share one PostgreSQL database. Messages go out through --channel-file.")

    @OptionGroup var db: DatabaseOption

    @Option(help: "Append outbound messages to this JSON-lines file (the channel for local runs and tests).")
    var channelFile: String?

    @Option(help: "Seconds a claimed delivery stays with this worker before others may retry it.")
    var lease: Int64 = 60

    @Option(help: "Conversations per turn transaction.")
    var batch = 32

    func run() async throws {
        var logger = Logger(label: "flowline.work")
        logger.logLevel = .info
        let store = try await SQLStore.open(db.url, logger: logger)
        try await store.migrate()
        var connectors = ConnectorRegistry()
        if let channelFile { connectors.register(try FileChannel(path: channelFile)) }
        var config = Engine.Configuration()
        config.turnBatch = batch
        config.delivery.lease = lease
        config.pollInterval = .milliseconds(50)
        let engine = Engine(store: store, connectors: connectors, configuration: config, logger: logger)

        let worker = Task { await engine.run() }
        let signals = AsyncStream<Int32> { continuation in
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig)
                source.setEventHandler { continuation.yield(sig) }
                source.resume()
                signalSources.append(source)
            }
        }
        logger.info("worker started", metadata: ["pid": "\(getpid())"])
        for await _ in signals { break }
        // Graceful: the current pass finishes (its transaction commits or rolls back), then we stop.
        worker.cancel()
        await worker.value
        await store.close()
        logger.info("worker stopped")
    }
}
