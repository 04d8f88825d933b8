import FlowCompiler
import FlowEngine
import FlowVM
import Foundation
import Hummingbird

extension TenantRecords {
    /// Records what the caller of this request did: its tenant, its key (or person), the request's id.
    func audit(_ context: FlowlineRequestContext, _ caller: Caller, _ action: String, _ subject: String, at: Timestamp) async throws {
        try await audit(AuditEntry(tenant: caller.tenant, actor: caller.keyID, action: action, subject: subject, request: context.id, at: at))
    }
}

/// `GET /v1/audit`: a tenant's audit log, newest first, for its admins.
struct AuditRoutes {
    let store: any TenantRecords

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("audit", use: list)
    }

    /// `?actor=&action=&subject=&after=&before=&limit=&offset=`; `after` and `before` are ISO 8601 instants.
    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.admin, "reading the audit log needs an admin")
        let page = try Page(request)
        let q = request.uri.queryParameters
        func text(_ name: String) throws -> String? {
            guard let v = q[Substring(name)].map(String.init), !v.isEmpty else { return nil }
            return try BodyText.identifier(v, name, max: 512)
        }
        let filter = AuditFilter(actor: try text("actor"), action: try text("action"), subject: try text("subject"),
                                 after: try request.queryTime("after"), before: try request.queryTime("before"))
        let (items, total) = try await store.auditEntries(tenant: caller.tenant, filter: filter, limit: page.limit, offset: page.offset)
        return page.response("entries", items.map { e in
            ["id": .number(Double(e.id)), "actor": .string(e.actor), "action": .string(e.action), "subject": .string(e.subject),
             "request": e.request.map(Value.string) ?? .null, "at": .string(e.at.iso8601)]
        }, total: total)
    }
}
