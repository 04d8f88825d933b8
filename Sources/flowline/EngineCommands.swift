import ArgumentParser
import FlowEngine
import FlowRuntime
import FlowStore
import Foundation
import Logging
import Server
import ServiceLifecycle
import FlowVM

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

struct Work: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an engine worker: turns, timers and outbox deliveries, until SIGTERM or SIGINT.",
        discussion: """
            Several workers may share one PostgreSQL database with each other and with `flowline serve`: a worker \
            delivers every channel's sends and every connector's actions with the tenant's credentials, reading \
            FLOWLINE_SECRET_KEY, FLOWLINE_PUBLIC_URL and FLOWLINE_WEBHOOK_SIGNING_SECRET as serve does.
            """)

    @OptionGroup var db: DatabaseOption

    @Option(help: "Write every send to this JSON-lines file instead of its channel (local runs and tests).")
    var channelFile: String?

    @Option(help: "Seconds a claimed delivery or turn stays with this worker before others may take it over.")
    var lease: Int64 = 60

    @Option(help: "Conversations per turn transaction.")
    var batch = 64

    @Flag(help: "Stop once there is no work left to do now, instead of waiting for more.")
    var untilIdle = false

    func run() async throws {
        var logger = Logger(label: "flowline.work")
        logger.logLevel = ProcessInfo.processInfo.environment["FLOWLINE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        var configuration = ServerConfiguration.fromEnvironment(database: db.url)
        configuration.deliveryLease = lease
        let runtime: Runtime
        do {
            try configuration.validate()
            runtime = try await Runtime.start(configuration.runtime, replacing: try channelFile.map { [try FileChannel(path: $0)] } ?? [],
                                              tune: { [batch, lease] config in
                                                  config.turnBatch = batch
                                                  config.turnLease = lease
                                                  config.pollInterval = .milliseconds(50)
                                              }, lifecycle: untilIdle ? .standalone : .service, logger: logger)
        } catch let e as StartupError {
            Shared.printErr("flowline work: \(e.message)")
            throw ExitCode.failure
        }
        if untilIdle {
            do {
                try await runtime.store.migrate()
                try await runtime.engine.drain()
            } catch {
                await runtime.shutdown()
                throw error
            }
            await runtime.shutdown()
            return
        }
        // One service group: the store's pool, then the engine once the database is reached and migrated. SIGTERM or
        // SIGINT stops it gracefully: the passes in flight finish, uncancelled (a turn that has run is committed).
        let ready = Gate()
        let prelude = Prelude { [logger] in
            try await runtime.prepare()
            try await runtime.store.migrate()
            ready.open()
            logger.info("worker started", metadata: ["pid": "\(getpid())"])
        }
        let group = ServiceGroup(configuration: .init(
            services: runtime.services(ready: ready).map { .init(service: $0) } + [.init(service: prelude, successTerminationBehavior: .ignore)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let e as StartupError {
            await runtime.shutdown()
            Shared.printErr("flowline work: \(e.message)")
            throw ExitCode.failure
        } catch {
            await runtime.shutdown()
            throw error
        }
        await runtime.shutdown()
        logger.info("worker stopped")
    }
}

/// Work done once at the start of a service group, beside its long-running services.
struct Prelude: Service {
    let body: @Sendable () async throws -> Void
    init(_ body: @escaping @Sendable () async throws -> Void) { self.body = body }
    func run() async throws { try await body() }
}

/// Opens the store for a one-shot command, runs `body` and closes it.
func withEngine<T>(_ db: DatabaseOption, _ body: (Engine, SQLStore) async throws -> T) async throws -> T {
    var logger = Logger(label: "flowline")
    logger.logLevel = .warning
    let store = try await SQLStore.open(db.url, logger: logger)
    do {
        try await store.migrate()
        let result = try await body(Engine(store: store, connectors: ConnectorRegistry(), logger: logger), store)
        await store.close()
        return result
    } catch {
        await store.close()
        throw error
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a flow and publish it as the tenant's next version (running conversations keep theirs).")

    @OptionGroup var db: DatabaseOption
    @Option(help: "The tenant (created if missing).") var tenant = "demo"
    @Argument(help: "The flow file.") var file: String

    func run() async throws {
        let program = try Shared.compileOrExit(file)
        let source = try Shared.read(file)
        let version = try await withEngine(db) { engine, store in
            try await store.ensureTenant(id: tenant, name: tenant)
            return try await engine.publish(tenant: tenant, program: program, source: source)
        }
        print("published \(program.name) version \(version) (\(program.hash.prefix(12)))")
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store an inbound message on the api channel, as a contact would send it (it is handled by a worker).")

    @OptionGroup var db: DatabaseOption
    @Option var tenant = "demo"
    @Option(help: "The channel's id.") var channel = "api"
    @Option(help: "The contact's address.") var contact: String
    @Option(help: "The provider's message id (default: a new one).") var id: String?
    @Argument(help: "The message text.") var text: String

    func run() async throws {
        let result = try await withEngine(db) { engine, _ in
            try await engine.ingest(Inbound(tenant: tenant, channel: channel, channelKind: "api", contact: contact,
                                            providerID: id ?? UUID().uuidString, message: InboundMessage(text: text)))
        }
        switch result {
        case .accepted(let conversation, let started): print("\(started ? "started" : "queued for") conversation \(conversation)")
        case .unrouted: print("stored; no open conversation and no flow's trigger matched")
        case .duplicate: print("duplicate message id: ignored")
        case .optedOut: print("stored; an opt-out word: the contact is opted out on this channel")
        }
    }
}

struct Conversations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a tenant's conversations.")

    @OptionGroup var db: DatabaseOption
    @Option var tenant = "demo"
    @Option(help: "active, waiting, handoff, failed or ended.") var status: String?

    func run() async throws {
        let statusFilter = try status.map { s in
            guard let v = ConversationStatus(rawValue: s) else { throw ValidationError("unknown status \(s)") }
            return v
        }
        let list = try await withEngine(db) { _, store in try await store.conversations(tenant: tenant, status: statusFilter, contact: nil) }
        for c in list {
            print([c.id, c.status.rawValue, c.flow, c.contact, c.continuation?.wait?.kind ?? "-", c.failure ?? ""].joined(separator: "\t"))
        }
    }
}

struct MigrateConversations: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-conversations",
        abstract: "Move a flow's waiting conversations to its latest version, by block id; reports what stayed and why.")

    @OptionGroup var db: DatabaseOption
    @Option var tenant = "demo"
    @Option(help: "The flow's name.") var flow: String

    func run() async throws {
        let report = try await withEngine(db) { engine, _ in try await engine.migrateConversations(tenant: tenant, flow: flow) }
        print("version \(report.version): \(report.moved.count) moved, \(report.stayed.count) stayed")
        for (id, reason) in report.stayed { print("stayed \(id): \(reason)") }
    }
}

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a failed conversation's failed block again.")
    @OptionGroup var db: DatabaseOption
    @Option var tenant = "demo"
    @Argument var conversation: String

    func run() async throws {
        try await withEngine(db) { engine, _ in try await engine.retry(conversation: conversation, tenant: tenant) }
        print("retry requested for \(conversation)")
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "End a conversation.")
    @OptionGroup var db: DatabaseOption
    @Option var tenant = "demo"
    @Argument var conversation: String

    func run() async throws {
        try await withEngine(db) { engine, _ in try await engine.cancel(conversation: conversation, tenant: tenant) }
        print("cancel requested for \(conversation)")
    }
}
