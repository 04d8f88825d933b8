import FlowEngine
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import ServiceLifecycle

/// `GET /v1/events`: a Server-Sent Events stream of the caller's tenant only: `message` events (both directions)
/// and `turn` events (a conversation's status and wait after each turn, so agents see handoffs arrive). It reads
/// the database, so it sees the work of every engine process. Each event's id is a cursor; reconnecting with
/// `Last-Event-ID` resumes after it. The stream ends after `timeout` seconds (default 25) or `limit` events, and
/// clients reconnect, as SSE clients do.
struct EventRoutes {
    let store: any ConversationRecords

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("events", use: stream)
    }

    static func cursor(_ text: String?) -> (Int64, Int64)? {
        guard let parts = text?.split(separator: "-"), parts.count == 2, let m = Int64(parts[0]), let t = Int64(parts[1]), m >= 0, t >= 0
        else { return nil }
        return (m, t)
    }

    @Sendable func stream(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let q = request.uri.queryParameters
        func number(_ name: Substring, _ value: Int, _ range: ClosedRange<Int>) throws -> Int {
            guard let text = q[name].map(String.init) else { return value }
            guard let n = Int(text), range.contains(n) else { throw Problem(.badRequest, "\(name) must be from \(range.lowerBound) to \(range.upperBound)") }
            return n
        }
        let limit = try number("limit", 10_000, 1...10_000)
        let timeout = try number("timeout", 25, 0...300)
        let start: (Int64, Int64)
        if let last = request.headers[HTTPField.Name("Last-Event-ID")!] ?? q["after"].map(String.init) {
            guard let c = Self.cursor(last) else { throw Problem(.badRequest, "Last-Event-ID must be a cursor from this stream") }
            start = c
        } else {
            start = try await store.latestCursors(tenant: caller.tenant)
        }
        let store = self.store
        let tenant = caller.tenant
        let deadline = Date().addingTimeInterval(Double(timeout))
        let body = ResponseBody { writer in
            var (m, t) = start
            var sent = 0
            try await writer.write(ByteBuffer(string: ": flowline events for tenant \(tenant)\n\n"))
            while sent < limit {
                let changes = try await store.changes(tenant: tenant, afterMessage: m, afterTrace: t, limit: min(100, limit - sent))
                var chunk = ""
                for (id, conversation, message) in changes.messages where sent < limit {
                    m = id
                    sent += 1
                    let data: Value = ["conversation": .string(conversation), "direction": .string(message.direction.rawValue),
                                       "text": .string(message.text), "at": .string(message.at.iso8601)]
                    chunk += "id: \(m)-\(t)\nevent: message\ndata: \(data.jsonText)\n\n"
                }
                for (id, conversation, status, wait) in changes.turns where sent < limit {
                    t = id
                    sent += 1
                    let data: Value = ["conversation": .string(conversation), "status": .string(status), "wait": wait]
                    chunk += "id: \(m)-\(t)\nevent: turn\ndata: \(data.jsonText)\n\n"
                }
                if !chunk.isEmpty { try await writer.write(ByteBuffer(string: chunk)) }
                // A stopping server ends its streams (the browser reconnects to another process, or to this one
                // when it is back) instead of holding its shutdown for a stream's whole timeout.
                if sent >= limit || Date() >= deadline || Task.isShuttingDownGracefully { break }
                if changes.messages.isEmpty && changes.turns.isEmpty { try await Task.sleep(for: .milliseconds(250)) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}
