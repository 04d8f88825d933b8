import ArgumentParser
import AsyncHTTPClient
import Connectors
import FlowCompiler
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import Synchronization

/// `flowline bench`: the end-to-end figures of BENCHMARKS.md, each as throughput and p50/p99 latency.
/// Run it through `scripts/bench.sh`, which builds in release mode and starts a throw-away PostgreSQL.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure durable turns, the PostgreSQL ceiling, HTTP end to end, timers and memory (release build).")

    @Option(help: "A PostgreSQL server to create benchmark databases on (or $FLOWLINE_TEST_POSTGRES_URL).")
    var postgres: String?
    @Option(help: "Conversations in the durable-turn run.") var conversations = 4_000
    @Option(help: "Messages per conversation in the durable-turn run.") var messages = 5
    @Option(help: "Concurrent producers: callers storing messages at once (webhooks, API clients).") var concurrency = 64
    @Option(help: "PostgreSQL connections for the ceiling: the engine's pool size.") var connections = 16
    @Option(help: "Concurrent turn workers.") var workers = 4
    @Option(help: "Conversations per turn transaction.") var batch = 64
    @Option(help: "Timers coming due together.") var timers = 100_000
    @Option(help: "HTTP message rates per second, comma-separated.") var rates = "250,500,1000"
    @Option(help: "Seconds per HTTP rate and for the ceiling.") var seconds = 10
    @Option(help: "Contacts in the contact-filter run.") var contacts = 1_000_000
    @Option(help: "Flows with a schedule due together, in the schedules run.") var schedules = 1_000
    @Option(help: "Contacts one scheduled campaign reaches, in the schedules run.") var audience = 20_000
    @Option(help: "Sections to run, comma-separated: durable,ceiling,http,timers,memory,contacts,schedules (default: all).") var only = ""
    @Option(help: "Append the results table (Markdown) to this file.") var output: String?

    func run() async throws {
        guard let base = postgres ?? ProcessInfo.processInfo.environment["FLOWLINE_TEST_POSTGRES_URL"] else {
            throw ValidationError("give --postgres or run scripts/bench.sh, which starts PostgreSQL")
        }
        let sections = Set(only.split(separator: ",").map(String.init))
        func wanted(_ s: String) -> Bool { sections.isEmpty || sections.contains(s) }
        let pg = try BenchPostgres(base)
        var table = BenchTable()

        if wanted("durable") {
            let sqlitePath = FileManager.default.temporaryDirectory.appendingPathComponent("flowline-bench-\(UUID().uuidString).db").path
            for (label, url) in [("PostgreSQL", try await pg.freshDatabase()), ("SQLite", "sqlite:\(sqlitePath)")] {
                let r = try await durableTurns(url: url)
                table.add("durable turns, \(label): \(conversations) conversations × \(messages) messages, ingest + turns",
                          r.pipeline, unit: "messages/s")
                table.add("durable turns, \(label): storing messages alone (group commit)", r.ingestOnly, unit: "messages/s")
                table.add("durable turns, \(label): turns on stored messages (\(batch) per commit)", r.turnsOnly, unit: "turns/s")
            }
        }
        if wanted("ceiling") || wanted("durable") {
            table.add("PostgreSQL ceiling: prepared one-row UPDATE, \(connections) connections, autocommit",
                      try await pg.ceiling(concurrency: connections, seconds: seconds), unit: "tx/s")
        }
        if wanted("http") {
            for rate in rates.split(separator: ",").compactMap({ Int($0) }) {
                let r = try await http(url: try await pg.freshDatabase(), rate: rate, pg: pg)
                table.add("HTTP \(rate)/s for \(seconds) s: request → 202 (stored)", r.accepted, unit: "messages/s")
                table.add("HTTP \(rate)/s: request → outbox row committed", r.committed, unit: "messages/s")
                table.add("HTTP \(rate)/s: request → reply at the callback URL", r.delivered, unit: "messages/s")
            }
        }
        if wanted("timers") || wanted("memory") {
            let url = try await pg.freshDatabase()
            let (setup, fired) = try await timersRun(url: url, memory: wanted("memory"))
            if wanted("memory") {
                table.add("server resident memory, empty database", setup.empty, unit: "MB")
                table.add("server resident memory, \(timers) waiting conversations", setup.loaded, unit: "MB")
            }
            if wanted("timers") { table.add("\(timers) timers due together: all fired", fired, unit: "timers/s") }
        }
        if wanted("contacts") {
            for (label, url) in [("PostgreSQL", try await pg.freshDatabase()),
                                 ("SQLite", "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("flowline-bench-\(UUID().uuidString).db").path)] {
                let r = try await contactFilters(url: url)
                table.add("contacts, \(label): \(contacts) stored with 3 attributes and 1–2 tags each", r.load, unit: "contacts/s")
                for (name, result) in r.filters { table.add("contact filter, \(label), \(contacts) contacts: \(name)", result, unit: "queries/s") }
            }
        }
        if wanted("schedules") {
            for (label, url) in [("PostgreSQL", try await pg.freshDatabase()),
                                 ("SQLite", "sqlite:" + FileManager.default.temporaryDirectory.appendingPathComponent("flowline-bench-\(UUID().uuidString).db").path)] {
                let r = try await schedulesRun(url: url)
                table.add("schedules, \(label): \(schedules) due together, each making its campaign (the last one's lag)", r.fired, unit: "schedules/s")
                table.add("scheduled campaigns, \(label): those \(schedules), one contact each, all started", r.small, unit: "starts/s")
                table.add("scheduled campaign, \(label): \(audience) contacts chosen (INSERT … SELECT) and its first batch", r.enqueue, unit: "contacts/s")
                table.add("scheduled campaign, \(label): \(audience) contacts at rate 1000/s, all started", r.started, unit: "starts/s")
            }
        }
        let text = table.markdown(header: "Flowline \(BenchTable.machine())")
        print(text)
        if let output {
            let handle = FileHandle(forWritingAtPath: output) ?? {
                FileManager.default.createFile(atPath: output, contents: nil)
                return FileHandle(forWritingAtPath: output)!
            }()
            handle.seekToEndOfFile()
            handle.write(Data((text + "\n").utf8))
        }
    }

    // MARK: Schedules

    /// `schedules` flows with a schedule due at 09:00 (a fixed list of one contact each), then one due at 09:01 whose
    /// segment is `audience` contacts at the highest rate: how fast due schedules become campaigns (the firing lag of
    /// the last), how fast a thousand one-contact campaigns start, how long the big one takes to choose its contacts
    /// (one `INSERT … SELECT`), and how fast it then starts them, each start its own transaction as exactly-once needs.
    func schedulesRun(url: String) async throws -> (fired: BenchResult, small: BenchResult, enqueue: BenchResult, started: BenchResult) {
        // A real clock shifted to just before the next 09:00 UTC, so campaign buckets fill in real time.
        let now = Timestamp(Date()).milliseconds
        let today = (now / 86_400_000) * 86_400_000 + 9 * 3_600_000
        let nine = today > now + 120_000 ? today : today + 86_400_000
        let shift = Locked(nine - now - 30_000)
        let clock: @Sendable () -> Timestamp = { Timestamp(milliseconds: Timestamp(Date()).milliseconds + shift.withLock { $0 }) }
        let store = try await SQLStore.open(url, logger: Logger(label: "bench"))
        try await store.migrate()
        try await store.ensureTenant(id: "bench", name: "bench")
        try await store.insertChannel(ChannelRecord(id: "ch_bench", tenant: "bench", kind: "api", name: "bench", callbackURL: nil, createdAt: clock()))
        var batch: [ContactRecord] = []
        for i in 0..<audience {
            batch.append(ContactRecord(id: String(format: "ct_%020d", i), tenant: "bench", channel: "ch_bench", address: String(5_511_900_000_000 + i),
                                       name: nil, attributes: [:], tags: ["everyone"], createdAt: clock()))
            if batch.count == 5_000 || i == audience - 1 {
                try await store.insertContacts(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        _ = try await store.insertSegment(SegmentRecord(id: "sg_bench", tenant: "bench", name: "everyone", filter: ["tag": ["everyone"]],
                                                        createdAt: clock(), updatedAt: clock()))
        let engine = engine(store, clock: clock)
        func publish(_ name: String, _ cron: String, _ whom: String) async throws {
            let source = "flow: \(name)\ntrigger:\n  channel: api\n  schedule: { cron: \"\(cron)\", timezone: UTC, \(whom) }\n"
                + "start: hi\nblocks:\n  hi:\n    text: \"Good morning\"\n"
            _ = try await engine.publish(tenant: "bench", program: try Self.compile(source), source: source)
        }
        try await publish("digest", "1 9 * * *", "segment: everyone, rate: 1000")
        for i in 0..<schedules { try await publish("reminder-\(i)", "0 9 * * *", "contacts: [\"5511800\(i)\"]") }
        func campaigns() async throws -> Int { try await store.campaigns(tenant: "bench", limit: 1, offset: 0).total }

        // 09:00:01: the thousand fire, and their campaigns run.
        shift.withLock { $0 += 31_000 }
        var started = ContinuousClock.now
        while try await engine.runSchedules() > 0 {}
        let fired = BenchResult(count: schedules, elapsed: ContinuousClock.now - started)
        guard try await campaigns() == schedules else { throw ValidationError("\(schedules) schedules made \(try await campaigns()) campaigns") }
        started = ContinuousClock.now
        while try await engine.runCampaigns() > 0 {}
        let small = BenchResult(count: schedules, elapsed: ContinuousClock.now - started)

        // 09:01:01: the big one fires; its first batch chooses its contacts.
        shift.withLock { $0 += 60_000 }
        while try await engine.runSchedules() > 0 {}
        let id = ScheduleSpec.campaignID(tenant: "bench", flow: "digest", occurrence: Timestamp(milliseconds: nine + 60_000))
        started = ContinuousClock.now
        _ = try await engine.runCampaigns()
        let enqueue = BenchResult(count: audience, elapsed: ContinuousClock.now - started)
        guard try await store.campaignCounts(id: id, tenant: "bench").total == audience else { throw ValidationError("the campaign chose the wrong contacts") }
        started = ContinuousClock.now
        while try await store.campaignCounts(id: id, tenant: "bench").started < audience {
            if try await engine.runCampaigns() == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let all = BenchResult(count: audience, elapsed: ContinuousClock.now - started)
        await store.close()
        return (fired, small, enqueue, all)
    }

    // MARK: Contacts

    /// Stores `contacts` contacts (plan, score, city; a tag or two), then times the list's filters, each a page of
    /// 100 with its total, as `GET /v1/contacts` runs them.
    func contactFilters(url: String) async throws -> (load: BenchResult, filters: [(String, BenchResult)]) {
        let store = try await SQLStore.open(url)
        try await store.migrate()
        try await store.ensureTenant(id: "bench", name: "bench")
        let plans = ["free", "basic", "pro", "enterprise"], cities = ["São Paulo", "Rio", "Recife", "Porto Alegre", "Curitiba"]
        let started = ContinuousClock.now
        let at = Timestamp(Date())
        var batch: [ContactRecord] = []
        for i in 0..<contacts {
            var c = ContactRecord(id: String(format: "ct_%020d", i), tenant: "bench", channel: "wa", address: String(5_511_900_000_000 + i),
                                  name: "Contact \(i)", attributes: ["plan": .string(plans[i % 4]), "score": .number(Double(i % 100)),
                                                                    "city": .string(cities[i % 5])],
                                  tags: i % 10 == 0 ? ["vip", "lead"] : ["lead"], createdAt: Timestamp(milliseconds: at.milliseconds + Int64(i)))
            c.lastSeenAt = Timestamp(milliseconds: at.milliseconds - Int64(i % 1000) * 60_000)
            if i % 3 == 0 { c.consentAt = at }
            batch.append(c)
            if batch.count == 5_000 || i == contacts - 1 {
                try await store.insertContacts(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        let load = BenchResult(count: contacts, elapsed: ContinuousClock.now - started)
        func filter(_ build: (inout ContactFilter) -> Void) -> ContactFilter {
            var f = ContactFilter()
            build(&f)
            return f
        }
        let cases: [(String, ContactFilter)] = [
            ("first page, no filter", ContactFilter()),
            ("tag (10% of contacts)", filter { $0.tags = ["vip"] }),
            ("attribute eq (25%)", filter { $0.attributes = [AttributeCondition(key: "plan", op: .eq, value: "pro")] }),
            ("number range (5%)", filter { $0.attributes = [AttributeCondition(key: "score", op: .gte, value: "95")] }),
            ("tag and number range and opted in", filter {
                $0.tags = ["vip"]
                $0.attributes = [AttributeCondition(key: "score", op: .gte, value: "50")]
                $0.optedIn = true
            }),
            ("text search in name, address, phone", filter { $0.search = "ontact 4242" }),
        ]
        var results: [(String, BenchResult)] = []
        for (name, f) in cases {
            var latencies: [Double] = []
            let began = ContinuousClock.now
            for _ in 0..<20 {
                let t = ContinuousClock.now
                _ = try await store.contacts(tenant: "bench", filter: f, limit: 100, offset: 0)
                let d = ContinuousClock.now - t
                latencies.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
            }
            results.append((name, BenchResult(count: latencies.count, elapsed: ContinuousClock.now - began, latenciesMs: latencies)))
        }
        await store.close()
        return (load, results)
    }

    // MARK: Durable turns

    static let loopFlow = """
        flow: loop
        trigger: { channel: api }
        variables:
          orders: { type: number, default: 0 }
        start: ask
        blocks:
          ask:
            ask: "Your order number?"
            save: reply
            next: check
          check:
            next:
              - when: reply matches "^[0-9]+$" and len(reply) < 12
                goto: count
              - goto: again
          count:
            set: { orders: "orders + 1", last: "upper(reply)" }
            next: answer
          answer:
            ask: "Order {{ last }} noted ({{ orders }} so far). Next order number?"
            save: reply
            next: check
          again:
            ask: "That is not an order number. Try again?"
            save: reply
            next: check
        """

    static func compile(_ yaml: String) throws -> Program {
        try FlowCompiler(catalog: BuiltinActions.catalog).program(source: yaml, file: "bench.yaml")
    }

    func engine(_ store: SQLStore, clock: (@Sendable () -> Timestamp)? = nil) -> Engine {
        var config = Engine.Configuration()
        config.turnBatch = batch
        if let clock { return Engine(store: store, connectors: ConnectorRegistry(), configuration: config, clock: clock) }
        return Engine(store: store, connectors: ConnectorRegistry(), configuration: config)
    }

    /// Runs `count` ingests over `concurrency` producers; `message(i)` is the i-th message.
    func produce(_ engine: Engine, count: Int, _ message: @escaping @Sendable (Int) -> Inbound) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for p in 0..<concurrency {
                group.addTask {
                    for i in stride(from: p, to: count, by: concurrency) { _ = try await engine.ingest(message(i)) }
                }
            }
            try await group.waitForAll()
        }
    }

    /// Runs turns on `workers` tasks until `done()` holds.
    func work(_ engine: Engine, until done: @escaping @Sendable () async throws -> Bool) async throws -> Int {
        let turns = Locked(0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    while true {
                        let n = try await engine.runTurns()
                        turns.withLock { $0 += n }
                        if n == 0 {
                            if try await done() { return }
                            try await Task.sleep(for: .milliseconds(1))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        return turns.withLock { $0 }
    }

    func durableTurns(url: String) async throws -> (pipeline: BenchResult, ingestOnly: BenchResult, turnsOnly: BenchResult) {
        let store = try await SQLStore.open(url, logger: Logger(label: "bench"))
        try await store.migrate()
        try await store.ensureTenant(id: "bench", name: "bench")
        let engine = engine(store)
        let program = try Self.compile(Self.loopFlow)
        _ = try await engine.publish(tenant: "bench", program: program, source: Self.loopFlow)
        let n = conversations, k = messages
        @Sendable func inbound(_ conversation: Int, _ id: String, _ text: String) -> Inbound {
            Inbound(tenant: "bench", channel: "api", channelKind: "api", contact: "c\(conversation)", contactName: nil, providerID: id,
                    message: InboundMessage(text: text))
        }
        // Set-up: every conversation starts and waits at its question.
        try await produce(engine, count: n) { i in inbound(i, "start-\(i)", "hi") }
        try await engine.drain()

        // Pipeline: producers store messages while workers run turns; each message is one durable step.
        let mark = engine.now
        let ingested = Locked(0)
        let started = ContinuousClock.now
        async let turns = work(engine) {
            guard ingested.withLock { $0 } == n * k else { return false }
            return try await store.backlog(now: engine.now).events == 0
        }
        try await produce(engine, count: n * k) { j in inbound(j % n, "m-\(j)", "\(100_000 + j)") }
        ingested.withLock { $0 = n * k }
        _ = try await turns
        let pipelineTime = ContinuousClock.now - started
        let latencies = try await store.eventLatencies(tenant: "bench", receivedSince: mark)

        // Turns only: one stored message per conversation, then workers commit `batch` turns per transaction.
        let ingestStarted = ContinuousClock.now
        try await produce(engine, count: n) { i in inbound(i, "t-\(i)", "\(200_000 + i)") }
        let ingestTime = ContinuousClock.now - ingestStarted
        let turnsStarted = ContinuousClock.now
        let ran = try await work(engine) { (try await store.backlog(now: engine.now).events) == 0 }
        let turnsTime = ContinuousClock.now - turnsStarted
        await store.close()
        return (BenchResult(count: n * k, elapsed: pipelineTime, latenciesMs: latencies),
                BenchResult(count: n, elapsed: ingestTime, latenciesMs: nil),
                BenchResult(count: ran, elapsed: turnsTime, latenciesMs: nil))
    }

    // MARK: HTTP end to end

    static let adminKey = "fl_benchadmin_0123456789abcdefghijklmnopqrstuv"

    func http(url: String, rate: Int, pg: BenchPostgres) async throws -> (accepted: BenchResult, committed: BenchResult, delivered: BenchResult) {
        // A callback receiver in this process: replies arrive here, and each arrival is timed.
        let arrivals = Locked<[String: [Int64]]>([:])
        let router = Router()
        router.post("replies") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 16)
            let at = Int64(Date().timeIntervalSince1970 * 1000)
            if let contact = Value(json: String(buffer: body))?["contact"].text {
                arrivals.withLock { $0[contact, default: []].append(at) }
            }
            return Response(status: .noContent)
        }
        let receiverPort = Locked(0)
        let receiver = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                   onServerRunning: { channel in receiverPort.withLock { $0 = channel.localAddress?.port ?? 0 } },
                                   logger: Logger(label: "bench.receiver", factory: { _ in SwiftLogNoOpLogHandler() }))
        let receiverTask = Task { try await receiver.runService() }
        defer { receiverTask.cancel() }

        let server = try BenchServer.start(database: url)
        defer { server.stop() }
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)))
        try await server.waitReady(client)
        while receiverPort.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }

        func call(_ method: NIOHTTP1.HTTPMethod, _ path: String, _ body: String, type: String = "application/json") async throws -> Value {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(server.port)\(path)")
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(Self.adminKey)")
            request.headers.add(name: "Content-Type", value: type)
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await client.execute(request, timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            guard response.status.code < 300 else { throw ValidationError("\(method) \(path) answered \(response.status.code)") }
            return Value(json: String(buffer: bytes)) ?? .null
        }
        _ = try await call(.PUT, "/v1/flows/loop", Self.loopFlow, type: "application/yaml")
        _ = try await call(.POST, "/v1/flows/loop/publish", "")
        let channel = try await call(.POST, "/v1/channels", #"{"kind": "api", "name": "bench", "callback_url": "http://127.0.0.1:\#(receiverPort.withLock { $0 })/replies"}"#)
        let inbound = "/v1/channels/\(channel["id"].text)/inbound"

        // Open loop: message j leaves at start + j/rate whatever the server is doing; each contact writes once a
        // second, so its replies match its messages one to one.
        let total = rate * seconds
        let sent = Locked<[String: [Int64]]>([:])
        let accepted = Locked<[Double]>([])
        let startedAt = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for j in 0..<total {
                try await Task.sleep(until: startedAt + .nanoseconds(Int64(j) * 1_000_000_000 / Int64(rate)), clock: .continuous)
                let contact = "r\(rate)-\(j % rate)", port = server.port
                group.addTask {
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(inbound)")
                    request.method = .POST
                    request.headers.add(name: "Authorization", value: "Bearer \(Self.adminKey)")
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: #"{"from": "\#(contact)", "text": "\#(100_000 + j)", "id": "\#(contact)-\#(j)"}"#))
                    let t0 = ContinuousClock.now
                    let at = Int64(Date().timeIntervalSince1970 * 1000)
                    sent.withLock { $0[contact, default: []].append(at) }
                    let response = try await client.execute(request, timeout: .seconds(30))
                    _ = try await response.body.collect(upTo: 1 << 16)
                    guard response.status.code == 202 else { throw ValidationError("inbound answered \(response.status.code)") }
                    let d = ContinuousClock.now - t0
                    accepted.withLock { $0.append(Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000) }
                }
            }
            try await group.waitForAll()
        }
        let sendTime = ContinuousClock.now - startedAt
        let deadline = ContinuousClock.now + .seconds(60)
        while arrivals.withLock({ $0.values.reduce(0) { $0 + $1.count } }) < total, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let deliveredTime = ContinuousClock.now - startedAt
        // Replies per contact, in order, against that contact's messages in order.
        let sentByContact = sent.withLock { $0 }
        let arrived = arrivals.withLock { $0 }
        var delivered: [Double] = []
        for (contact, times) in sentByContact {
            for (t, a) in zip(times.sorted(), (arrived[contact] ?? []).sorted()) { delivered.append(Double(a - t)) }
        }
        try await client.shutdown()
        let committed = try await pg.outboxLatencies(url: url, sent: sentByContact)
        return (BenchResult(count: total, elapsed: sendTime, latenciesMs: accepted.withLock { $0 }),
                BenchResult(count: committed.count, elapsed: sendTime, latenciesMs: committed),
                BenchResult(count: delivered.count, elapsed: deliveredTime, latenciesMs: delivered))
    }

    // MARK: Timers and memory

    static let reminderFlow = """
        flow: reminder
        trigger: { channel: api }
        start: pause
        blocks:
          pause:
            wait: 1h
            next: remind
          remind:
            end: "Your reminder"
        """

    /// Fills a database with `timers` conversations waiting one hour, measures the server's memory on it (and on
    /// an empty one), then moves the clock past the hour and times the firing.
    func timersRun(url: String, memory: Bool) async throws -> (memory: (empty: BenchResult, loaded: BenchResult), fired: BenchResult) {
        let clock = BenchClock()
        let store = try await SQLStore.open(url, logger: Logger(label: "bench"))
        try await store.migrate()
        try await store.ensureTenant(id: "bench", name: "bench")
        let engine = engine(store, clock: { clock.now })
        _ = try await engine.publish(tenant: "bench", program: try Self.compile(Self.reminderFlow), source: Self.reminderFlow)
        let ingested = Locked(0)
        async let setup = work(engine) {
            guard ingested.withLock { $0 } == timers else { return false }
            return try await store.backlog(now: engine.now).events == 0
        }
        try await produce(engine, count: timers) { i in
            Inbound(tenant: "bench", channel: "api", channelKind: "api", contact: "t\(i)", contactName: nil, providerID: "t\(i)",
                    message: InboundMessage(text: "remind me"))
        }
        ingested.withLock { $0 = timers }
        _ = try await setup

        var memoryResults = (empty: BenchResult(count: 0, elapsed: .zero, latenciesMs: nil), loaded: BenchResult(count: 0, elapsed: .zero, latenciesMs: nil))
        if memory {
            let pg = try BenchPostgres(url)
            memoryResults = (try await BenchServer.residentMemory(database: try await pg.freshDatabase()),
                             try await BenchServer.residentMemory(database: url))
        }

        clock.advance(seconds: 3_601)
        let started = ContinuousClock.now
        _ = try await work(engine) {
            try await store.conversations(tenant: "bench", filter: .init(status: .ended), limit: 1, offset: 0).total == timers
        }
        let fired = ContinuousClock.now - started
        await store.close()
        return (memoryResults, BenchResult(count: timers, elapsed: fired, latenciesMs: nil))
    }
}

/// A value several tasks update under a lock (a class, so closures can share it).
final class Locked<T: Sendable>: Sendable {
    private let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout sending T) throws -> sending R) rethrows -> R { try mutex.withLock(body) }
}

/// A settable clock, so timers come due when the benchmark says.
final class BenchClock: Sendable {
    private let time = Locked(Timestamp(Date()))
    var now: Timestamp { time.withLock { $0 } }
    func advance(seconds: Int64) { time.withLock { $0 = $0.adding(seconds: seconds) } }
}

/// One figure: how many in how long, and the latency distribution when there is one.
struct BenchResult {
    var count: Int
    var elapsed: Duration
    var latenciesMs: [Double]?
    /// A value that is not a rate (memory in MB).
    var value: Double?

    var perSecond: Double {
        let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return s > 0 ? Double(count) / s : 0
    }

    func percentile(_ p: Double) -> Double? {
        guard let l = latenciesMs, !l.isEmpty else { return nil }
        let sorted = l.sorted()
        return sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
    }
}

struct BenchTable {
    var rows: [String] = []

    mutating func add(_ name: String, _ r: BenchResult, unit: String) {
        func ms(_ v: Double?) -> String { v.map { String(format: "%.1f ms", $0) } ?? "—" }
        let figure = r.value.map { String(format: "%.1f %@", $0, unit) } ?? String(format: "%.0f %@", r.perSecond, unit)
        let seconds = Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) / 1e18
        rows.append("| \(name) | \(figure) | \(ms(r.percentile(0.5))) | \(ms(r.percentile(0.99))) | \(r.value == nil ? "\(r.count) in \(String(format: "%.2f", seconds)) s" : "") |")
        FileHandle.standardError.write(Data((rows.last! + "\n").utf8))
    }

    func markdown(header: String) -> String {
        (["", "### \(header)", "", "| benchmark | result | p50 | p99 | count |", "|---|---|---|---|---|"] + rows).joined(separator: "\n")
    }

    static func machine() -> String {
        let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "on \(ProcessInfo.processInfo.activeProcessorCount) × \(cpu), \(ISO8601DateFormatter().string(from: Date()))"
    }
}
