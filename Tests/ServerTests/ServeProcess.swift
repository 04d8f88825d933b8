import AsyncHTTPClient
import FlowVM
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// A `flowline serve` process of this build, on a port the kernel picks (`--port 0`): the port is read from the
/// line the server prints once it listens, so no port is chosen, closed and raced for. Its output goes to `log`.
final class ServeProcess: @unchecked Sendable {
    static let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/debug/flowline").path
    static let adminKey = "fl_e2eadmin_0123456789abcdefghijklmnopqrstuv"

    let process = Process()
    let log: String
    private let logStart: UInt64
    private(set) var port = 0

    /// Starts the server and waits until it answers `/ready`.
    init(database: String, log: String, secretKey: String, flows: String, environment: [String: String] = [:]) async throws {
        self.log = log
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["serve", "--port", "0", "--database", database, "--flows", flows]
        var env = ProcessInfo.processInfo.environment
        env["FLOWLINE_ADMIN_KEY"] = Self.adminKey
        env["FLOWLINE_SECRET_KEY"] = secretKey
        env["FLOWLINE_PUBLIC_URL"] = env["FLOWLINE_PUBLIC_URL"] ?? "http://flowline.test"
        env["FLOWLINE_FAILPOINTS"] = nil
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if !FileManager.default.fileExists(atPath: log) { FileManager.default.createFile(atPath: log, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        logStart = handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        port = try await Peers.eventually("flowline serve listens (see \(log))", seconds: 30) { () -> Int? in
            guard self.process.isRunning else { return -1 }
            guard let line = self.output.split(separator: "\n").last(where: { $0.hasPrefix("Flowline listening on http://") }),
                  let port = line.split(separator: " ")[3].split(separator: ":").last.flatMap({ Int($0) }) else { return nil }
            return port
        }
        guard port > 0 else {
            Issue.record("flowline serve exited at start: \(output.suffix(2000))")
            throw CancellationError()
        }
        _ = try await Peers.eventually("the server is ready", seconds: 30) { () -> Bool? in
            (try? await self.api.call(.GET, "/ready", auth: false).status) == 200 ? true : nil
        }
    }

    var api: HTTP { HTTP(base: "http://127.0.0.1:\(port)") }

    /// What this process wrote to the log.
    var output: String {
        guard let handle = FileHandle(forReadingAtPath: log) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: logStart)
        return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    }

    var isRunning: Bool { process.isRunning }

    /// Whether the process ended by SIGKILL, as a failpoint ends it.
    var wasKilled: Bool { !process.isRunning && process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then the exit status (0 for a clean shutdown).
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Waits for the process to end on its own (a failpoint), up to `seconds`.
    func waitForExit(seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return !process.isRunning
    }

    struct HTTP {
        let base: String
        @discardableResult
        func call(_ method: HTTPMethod, _ path: String, _ body: String? = nil, headers: [(String, String)] = [],
                  auth: Bool = true) async throws -> (status: Int, body: Value) {
            var request = HTTPClientRequest(url: base + path)
            request.method = method
            if auth { request.headers.add(name: "Authorization", value: "Bearer \(ServeProcess.adminKey)") }
            for (n, v) in headers { request.headers.add(name: n, value: v) }
            if let body {
                if !headers.contains(where: { $0.0 == "Content-Type" }) { request.headers.add(name: "Content-Type", value: "application/json") }
                request.body = .bytes(ByteBuffer(string: body))
            }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(15))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            return (Int(response.status.code), Value(json: text) ?? .string(text))
        }

        /// A browser's GET: redirects are answers to read, not to follow; cookies are sent as given.
        static let browser = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

        func get(_ url: String, cookie: String? = nil) async throws -> (status: Int, headers: HTTPHeaders, body: Value) {
            var request = HTTPClientRequest(url: url.hasPrefix("http") ? url : base + url)
            if let cookie { request.headers.add(name: "Cookie", value: cookie) }
            let response = try await Self.browser.execute(request, timeout: .seconds(15))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            return (Int(response.status.code), response.headers, Value(json: text) ?? .string(text))
        }
    }
}
