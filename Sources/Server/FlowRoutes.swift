import FlowCompiler
import FlowEngine
import FlowVM
import Foundation
import Hummingbird

/// `/v1/flows`: drafts, validation, publishing and versions.
struct FlowRoutes {
    let store: any FlowRecords & TenantRecords
    let engine: Engine
    let compiler: FlowCompiler
    /// Compiling, converting and diffing run under it, off the request threads.
    let limiter: WorkLimiter

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.get("flows", use: list)
        group.put("flows/{name}", use: put)
        group.get("flows/{name}", use: get)
        group.delete("flows/{name}", use: delete)
        group.post("flows/{name}/validate", use: validate)
        group.post("flows/{name}/publish", use: publish)
        group.get("flows/{name}/versions", use: versions)
        group.post("flows/{name}/migrate", use: migrate)
        group.get("flows/{name}/diff", use: diff)
        group.post("flows/{name}/rollback", use: rollback)
    }

    /// The media type of the builder's graph form of a flow.
    static let graphType = "application/vnd.flowline.graph+json"

    static func diagnostics(_ d: [Diagnostic]) -> Value {
        .list(d.map { x in
            ["severity": .string(x.severity.rawValue), "code": .string(x.code), "message": .string(x.message), "line": .number(Double(x.line)),
             "column": .number(Double(x.column)), "block": x.block.map(Value.string) ?? .null, "hint": x.hint.map(Value.string) ?? .null,
             "path": x.path.map(Value.string) ?? .null]
        })
    }

    /// Compiles under the limiter.
    private func compile(_ source: String, _ name: String, _ caller: Caller) async throws -> FlowCompiler.Compilation {
        try await limiter.run(tenant: caller.tenant) { [compiler] in compiler.compile(source: source, file: "\(name).yaml") }
    }

    private func name(_ context: FlowlineRequestContext) throws -> String {
        let name = try context.parameters.require("name")
        guard !name.isEmpty, name.count <= 200, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
            throw Problem(.badRequest, "a flow name has only letters, digits, '-' and '_'")
        }
        return name
    }

    @Sendable func list(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let page = try Page(request)
        let (names, total) = try await store.flowNames(tenant: caller.tenant, limit: page.limit, offset: page.offset)
        let published = try await store.publishedFlows(tenant: caller.tenant)
        return page.response("flows", names.map { n in
            ["name": .string(n), "latest_version": published.first { $0.name == n }.map { .number(Double($0.version)) } ?? .null]
        }, total: total)
    }

    /// `DELETE /v1/flows/{name}`: a draft never published goes; a published flow keeps its versions (its
    /// conversations run on them), so it stays.
    @Sendable func delete(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "deleting flows needs a supervisor or admin")
        let name = try name(context)
        switch try await store.deleteDraft(tenant: caller.tenant, name: name) {
        case .deleted:
            try await store.audit(context, caller, "flow.delete", name, at: engine.now)
            return Response(status: .noContent)
        case .published: throw Problem(.conflict, "\(name) has published versions, which its conversations run on: it stays")
        case .missing: throw Problem(.notFound, "no flow \(name)")
        }
    }

    @Sendable func put(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "editing flows needs a supervisor or admin")
        let name = try name(context)
        var source = try await request.text(context: context)
        guard !source.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw Problem(.badRequest, "the body must be the flow, in YAML or JSON")
        }
        let contentType = request.headers[.contentType] ?? ""
        if contentType.hasPrefix("application/json") || contentType.hasPrefix(Self.graphType) {
            let value = try Problem.json(source)
            // The builder's graph form (nodes and edges) is stored as the flow document it stands for.
            if contentType.hasPrefix(Self.graphType) || value["nodes"] != .null {
                source = try await limiter.run(tenant: caller.tenant) {
                    do {
                        return try FlowGraph.source(fromGraph: value)
                    } catch {
                        throw Problem(.badRequest, "a graph needs a nodes list, and edges from a node's port (\(FlowGraph.ports.sorted().joined(separator: ", "))) to a node")
                    }
                }
            }
        }
        let (result, declared) = try await limiter.run(tenant: caller.tenant) { [compiler, source] in
            (compiler.compile(source: source, file: "\(name).yaml"), try? DataDocument.value(from: source, file: name)["flow"])
        }
        if let declared, declared != .null, declared.text != name {
            throw Problem(.conflict, "the document's flow: is '\(declared.text)' but the URL names '\(name)'")
        }
        let created = try await store.saveDraft(tenant: caller.tenant, name: name, source: source, at: engine.now)
        try await store.audit(context, caller, "flow.save", name, at: engine.now)
        return json(["name": .string(name), "valid": .bool(!result.hasErrors), "diagnostics": Self.diagnostics(result.diagnostics)],
                    status: created ? .created : .ok)
    }

    @Sendable func get(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try name(context)
        guard let source = try await store.draft(tenant: caller.tenant, name: name) else { throw Problem(.notFound, "no flow \(name)") }
        if request.headers[.accept]?.contains(Self.graphType) == true {
            guard let graph = try await limiter.run(tenant: caller.tenant, { try? FlowGraph.graph(fromSource: source, file: name) }) else {
                throw Problem(.conflict, "the draft cannot be read as a graph until its syntax errors are fixed")
            }
            return Response(status: .ok, headers: [.contentType: Self.graphType],
                            body: .init(byteBuffer: ByteBuffer(string: graph.jsonText)))
        }
        if request.headers[.accept]?.contains("yaml") == true {
            return Response(status: .ok, headers: [.contentType: "application/yaml"], body: .init(byteBuffer: ByteBuffer(string: source)))
        }
        let result = try await compile(source, name, caller)
        return json(["name": .string(name), "source": .string(source), "valid": .bool(!result.hasErrors),
                     "diagnostics": Self.diagnostics(result.diagnostics)])
    }

    @Sendable func validate(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try name(context)
        let source = try await request.text(context: context)
        guard !source.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw Problem(.badRequest, "the body must be the flow, in YAML or JSON")
        }
        let result = try await compile(source, name, caller)
        return json(["valid": .bool(!result.hasErrors), "diagnostics": Self.diagnostics(result.diagnostics)])
    }

    @Sendable func publish(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "publishing needs a supervisor or admin")
        let name = try name(context)
        guard let source = try await store.draft(tenant: caller.tenant, name: name) else { throw Problem(.notFound, "no flow \(name)") }
        let result = try await compile(source, name, caller)
        guard let program = result.program else {
            throw Problem(.invalidFlow, "the flow has errors; fix them before publishing",
                          extra: ["diagnostics": Self.diagnostics(result.diagnostics)])
        }
        let version = try await engine.publish(tenant: caller.tenant, program: program, source: source)
        try await store.audit(context, caller, "flow.publish", "\(name)@\(version)", at: engine.now)
        return json(["name": .string(name), "version": .number(Double(version)), "program": .string(program.hash)], status: .created)
    }

    @Sendable func versions(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try name(context)
        let versions = try await store.versions(tenant: caller.tenant, flow: name)
        guard !versions.isEmpty else { throw Problem(.notFound, "flow \(name) has no published version") }
        return json(["versions": .list(versions.map {
            ["version": .number(Double($0.version)), "program": .string($0.programHash), "published_at": .string($0.at.iso8601)]
        })])
    }

    @Sendable func migrate(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "migrating conversations needs a supervisor or admin")
        let flow = try name(context)
        let report = try await engine.migrateConversations(tenant: caller.tenant, flow: flow)
        try await store.audit(context, caller, "flow.migrate", "\(flow)@\(report.version): \(report.moved.count) moved, \(report.stayed.count) stayed", at: engine.now)
        return json(["version": .number(Double(report.version)), "moved": .list(report.moved.map(Value.string)),
                     "stayed": .list(report.stayed.map { ["id": .string($0.id), "reason": .string($0.reason)] })])
    }

    private func version(_ name: String, _ n: Int, _ tenant: String) async throws -> (version: Int, programHash: String, source: String, at: Timestamp) {
        guard let v = try await store.versions(tenant: tenant, flow: name).first(where: { $0.version == n }) else {
            throw Problem(.notFound, "flow \(name) has no version \(n)")
        }
        return v
    }

    /// `?from=1&to=2`: a line diff of two published versions' sources.
    @Sendable func diff(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try name(context)
        let q = request.uri.queryParameters
        guard let from = q["from"].flatMap({ Int(String($0)) }), let to = q["to"].flatMap({ Int(String($0)) }) else {
            throw Problem(.badRequest, "from and to must be version numbers")
        }
        let a = try await version(name, from, caller.tenant), b = try await version(name, to, caller.tenant)
        return json(["from": .number(Double(from)), "to": .number(Double(to)), "same_program": .bool(a.programHash == b.programHash),
                     "lines": .list(try await limiter.run(tenant: caller.tenant) { LineDiff.diff(a.source, b.source) }.map(Value.string))])
    }

    /// `{"version": N}`: publishes version N's source again as the newest version (history stays immutable).
    @Sendable func rollback(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller(.supervisor, "rolling back needs a supervisor or admin")
        let name = try name(context)
        let n = try await request.decode(Rollback.self, context: context).version
        let old = try await version(name, n, caller.tenant)
        guard let program = try await store.program(hash: old.programHash) else { throw Problem(.notFound, "version \(n)'s program is missing") }
        let version = try await engine.publish(tenant: caller.tenant, program: program, source: old.source)
        _ = try await store.saveDraft(tenant: caller.tenant, name: name, source: old.source, at: engine.now)
        try await store.audit(context, caller, "flow.rollback", "\(name)@\(n)->\(version)",
                              at: engine.now)
        return try RolledBack(name: name, version: version, program: program.hash, restored: n).response(status: .created)
    }

    struct Rollback: JSONRequest {
        var version: Int

        func validated() throws -> Rollback {
            guard (1...1_000_000).contains(version) else { throw Problem(.badRequest, "version must be a version number") }
            return self
        }
    }

    struct RolledBack: JSONResponse {
        var name: String
        var version: Int
        var program: String
        var restored: Int
    }
}
