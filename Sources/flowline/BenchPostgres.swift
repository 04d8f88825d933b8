import AsyncHTTPClient
import ArgumentParser
import FlowEngine
import FlowStore
import FlowVM
import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The PostgreSQL side of `flowline bench`: fresh databases, the single-statement ceiling, outbox timings.
struct BenchPostgres {
    let base: URLComponents

    init(_ url: String) throws {
        guard let c = URLComponents(string: url), c.scheme?.hasPrefix("postgres") == true, c.host != nil else {
            throw ValidationError("not a postgres:// URL")
        }
        base = c
    }

    func configuration(database: String? = nil, connections: Int = 4) -> PostgresClient.Configuration {
        var config = PostgresClient.Configuration(
            host: base.host ?? "127.0.0.1", port: base.port ?? 5432, username: base.user ?? "postgres", password: base.password,
            database: database ?? String(base.path.dropFirst()), tls: .disable)
        config.options.maximumConnections = connections
        config.options.minimumConnections = 0
        return config
    }

    /// Runs `body` with a client on `database`.
    func withClient<T>(database: String? = nil, connections: Int = 4, _ body: (PostgresClient) async throws -> T) async throws -> T {
        let client = PostgresClient(configuration: configuration(database: database, connections: connections),
                                    backgroundLogger: Logger(label: "bench.pg", factory: { _ in SwiftLogNoOpLogHandler() }))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// Creates an empty database on the same server and returns its URL.
    func freshDatabase() async throws -> String {
        try await SQLStore.createPostgresDatabase(nextTo: base.string!, prefix: "bench_")
    }

    struct CeilingUpdate: PostgresPreparedStatement {
        static let sql = "UPDATE bench_ceiling SET n = n + 1 WHERE id = $1"
        typealias Row = Int
        var id: Int
        func makeBindings() throws -> PostgresBindings {
            var b = PostgresBindings()
            b.append(id)
            return b
        }
        func decodeRow(_ row: PostgresRow) throws -> Int { 0 }
    }

    /// The most this server commits: `concurrency` connections each running a prepared one-row UPDATE in its
    /// own transaction (autocommit, synchronous commit as configured) for `seconds`.
    func ceiling(concurrency: Int, seconds: Int) async throws -> BenchResult {
        let database = try await freshDatabase()
        let name = String(database.split(separator: "/").last!)
        return try await withClient(database: name, connections: concurrency) { client in
            _ = try await client.query("CREATE TABLE bench_ceiling (id INT PRIMARY KEY, n BIGINT NOT NULL)")
            _ = try await client.query(PostgresQuery(unsafeSQL:
                "INSERT INTO bench_ceiling SELECT g, 0 FROM generate_series(0, \(concurrency - 1)) g"))
            let setting = try await client.query("SHOW synchronous_commit").decode(String.self)
            for try await value in setting { FileHandle.standardError.write(Data("synchronous_commit = \(value)\n".utf8)) }
            let latencies = Locked<[Double]>([])
            let end = ContinuousClock.now + .seconds(seconds)
            let started = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<concurrency {
                    group.addTask {
                        var mine: [Double] = []
                        while ContinuousClock.now < end {
                            let t0 = ContinuousClock.now
                            for try await _ in try await client.execute(CeilingUpdate(id: worker)) {}
                            let d = ContinuousClock.now - t0
                            mine.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
                        }
                        latencies.withLock { $0 += mine }
                    }
                }
                try await group.waitForAll()
            }
            let all = latencies.withLock { $0 }
            return BenchResult(count: all.count, elapsed: ContinuousClock.now - started, latenciesMs: all)
        }
    }

    /// Milliseconds from each message's send time to its reply's outbox row, matched per contact in order.
    /// The row's `created_at` is the turn's clock, read as the turn starts: the commit follows within the turn batch.
    func outboxLatencies(url: String, sent: [String: [Int64]]) async throws -> [Double] {
        let name = String(url.split(separator: "/").last!)
        return try await withClient(database: name) { client in
            var rows: [String: [Int64]] = [:]
            let query: PostgresQuery = """
                SELECT c.contact, o.created_at FROM outbox o JOIN conversations c ON c.id = o.conversation_id ORDER BY o.id
                """
            for try await (contact, at) in try await client.query(query).decode((String, Int64).self) {
                rows[contact, default: []].append(at)
            }
            var latencies: [Double] = []
            for (contact, times) in sent {
                for (t, at) in zip(times.sorted(), rows[contact] ?? []) { latencies.append(Double(at - t)) }
            }
            return latencies
        }
    }
}

/// A `flowline serve` child process for the HTTP and memory figures.
struct BenchServer {
    let process: Process
    let port: Int

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func start(database: String) throws -> BenchServer {
        let port = freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["serve", "--port", "\(port)", "--database", database, "--flows", "/nonexistent"]
        var env = ProcessInfo.processInfo.environment
        env["FLOWLINE_ADMIN_KEY"] = Bench.adminKey
        env["FLOWLINE_SECRET_KEY"] = SecretBox.generateKey()
        env["FLOWLINE_LOG_LEVEL"] = "warning"
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return BenchServer(process: process, port: port)
    }

    func waitReady(_ client: HTTPClient) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let r = try? await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/ready"), timeout: .seconds(1)),
               r.status.code == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("the server did not become ready")
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
    }

    /// Resident memory (VmRSS) in MB of the server, ready and idle, after a few requests.
    func residentMB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        let kb = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(separator: " ").dropFirst().first.flatMap { Double($0) }
        return (kb ?? 0) / 1024
    }

    /// Starts a server on `database`, lets it settle, and reads its resident memory.
    static func residentMemory(database: String) async throws -> BenchResult {
        let server = try start(database: database)
        defer { server.stop() }
        let client = HTTPClient.shared
        try await server.waitReady(client)
        for path in ["/health", "/metrics", "/v1/conversations?limit=10"] {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(server.port)\(path)")
            request.headers.add(name: "Authorization", value: "Bearer \(Bench.adminKey)")
            _ = try await client.execute(request, timeout: .seconds(30)).body.collect(upTo: 1 << 22)
        }
        try await Task.sleep(for: .seconds(6))  // one backlog sample (every 5 s) has run
        return BenchResult(count: 0, elapsed: .zero, latenciesMs: nil, value: server.residentMB())
    }
}
