import FlowVM

/// The visual builder's form of a flow: nodes (a block each, with its parameters and canvas position) and
/// edges (from a node's port to a node). Converts to and from the flow document without loss: positions live in
/// the document's `layout:` map, which the compiler ignores.
///
/// ```json
/// {"flow": "x", "start": "a", "trigger": {...}, "variables": {...},
///  "nodes": [{"id": "a", "type": "ask", "params": {"ask": "Name?", "save": "name"}, "position": {"x": 0, "y": 0}}],
///  "edges": [{"from": "a", "port": "next", "to": "b"},
///            {"from": "c", "port": "branch", "index": 0, "when": "x > 1", "to": "d"},
///            {"from": "a", "port": "timeout", "to": "e"}]}
/// ```
/// Ports: `next`, `branch` (with `index` and an optional `when`), `on_error`, `on_invalid`, `timeout` (an ask's
/// `timeout.next`, a `wait_for`'s `on_timeout`), `goto`, `call`.
public enum FlowGraph {
    /// Top-level keys carried over as they are.
    static let documentKeys = ["flow", "description", "trigger", "variables", "start", "debounce", "whatsapp_template"]
    /// The block keys that become edges rather than parameters.
    static let blockTypes = BlockTypes.actionKeys

    /// The graph of a flow document (YAML or JSON text).
    public static func graph(fromSource source: String, file: String) throws -> Value {
        let doc = try DataDocument.value(from: source, file: file)
        guard case .map(let top) = doc else { throw FlowCompilerError(.invalidFlow, diagnostics: []) }
        var graph: [String: Value] = [:]
        for k in documentKeys { if let v = top[k] { graph[k] = v } }
        var nodes: [Value] = [], edges: [Value] = []
        let layout = top["layout"] ?? .null
        if case .map(let blocks)? = top["blocks"] {
            for id in blocks.keys.sorted() {
                guard case .map(var block) = blocks[id]! else { continue }
                func edge(_ port: String, _ to: Value, extra: [String: Value] = [:]) {
                    var e: [String: Value] = ["from": .string(id), "port": .string(port), "to": to]
                    for (k, v) in extra { e[k] = v }
                    edges.append(.map(e))
                }
                switch block.removeValue(forKey: "next") {
                case .string(let to)?: edge("next", .string(to))
                case .list(let branches)?:
                    for (i, b) in branches.enumerated() {
                        var extra: [String: Value] = ["index": .number(Double(i))]
                        if b["when"] != .null { extra["when"] = b["when"] }
                        edge("branch", b["goto"], extra: extra)
                    }
                default: break
                }
                if let to = block.removeValue(forKey: "on_error") { edge("on_error", to) }
                if let to = block.removeValue(forKey: "on_invalid") { edge("on_invalid", to) }
                if let to = block.removeValue(forKey: "on_message") { edge("on_message", to) }
                if case .map(var timeout)? = block["timeout"], block["ask"] != nil, let to = timeout.removeValue(forKey: "next") {
                    edge("timeout", to)
                    block["timeout"] = .map(timeout)
                }
                if case .map(var waitFor)? = block["wait_for"], let to = waitFor.removeValue(forKey: "on_timeout") {
                    edge("timeout", to)
                    block["wait_for"] = .map(waitFor)
                }
                for port in ["goto", "call"] {
                    if let to = block.removeValue(forKey: port) { edge(port, to) }
                }
                let type = blockTypes.first { block[$0] != nil } ?? (edges.contains { $0["from"] == .string(id) && $0["port"] == "goto" }
                    ? "goto" : edges.contains { $0["from"] == .string(id) && $0["port"] == "call" } ? "call" : "condition")
                var node: [String: Value] = ["id": .string(id), "type": .string(type), "params": .map(block)]
                if layout[id] != .null { node["position"] = layout[id] }
                nodes.append(.map(node))
            }
        }
        graph["nodes"] = .list(nodes)
        graph["edges"] = .list(edges)
        return .map(graph)
    }

    /// The ports a node of `type` may have edges from, in the order a builder draws them: `next` (and its `branch`es),
    /// `on_invalid`, `on_message` (a wait's), `timeout` (an ask's `timeout.next`, a `wait_for`'s `on_timeout`), `on_error`, `goto`, `call`.
    public static func ports(of type: BlockType) -> [String] {
        var p: [String] = []
        if type.keys.contains("next") { p += ["next", "branch"] }
        if type.keys.contains("on_invalid") { p.append("on_invalid") }
        if type.keys.contains("on_message") { p.append("on_message") }
        if type.name == "ask" || type.name == "wait_for" { p.append("timeout") }
        if type.keys.contains("on_error") { p.append("on_error") }
        for k in ["goto", "call"] where type.keys.contains(k) { p.append(k) }
        return p
    }

    /// Where each port's target is in the block's document, as a JSON Pointer under the block (`/timeout/next`):
    /// how a builder finds the port a diagnostic's `path` is about. A branch's is `/next`, followed by its index.
    public static func portPaths(of type: BlockType) -> [String: String] {
        var paths: [String: String] = [:]
        for port in ports(of: type) {
            switch port {
            case "branch": paths[port] = "/next"
            case "timeout": paths[port] = type.name == "wait_for" ? "/wait_for/on_timeout" : "/timeout/next"
            default: paths[port] = "/" + port
            }
        }
        return paths
    }

    /// The JSON Schema of a node's `params`: the block's schema without the keys that are edges in the graph.
    public static func paramsSchema(of type: BlockType) -> Value {
        let edgeKeys: Set<String> = ["next", "on_error", "on_invalid", "on_message", "goto", "call", "on_timeout"]
        func strip(_ schema: Value, depth: Int) -> Value {
            guard case .map(var m) = schema, case .map(var properties)? = m["properties"] else { return schema }
            for k in edgeKeys where depth == 0 || k == "next" || k == "on_timeout" { properties.removeValue(forKey: k) }
            if depth == 0 { for (k, v) in properties { properties[k] = strip(v, depth: 1) } }
            m["properties"] = .map(properties)
            if case .list(let required)? = m["required"] { m["required"] = .list(required.filter { properties[$0.text] != nil }) }
            return .map(m)
        }
        return strip(type.schema, depth: 0)
    }

    /// The ports an edge may leave a node from.
    public static let ports: Set<String> = ["next", "branch", "on_error", "on_invalid", "on_message", "timeout", "goto", "call"]

    /// The envelope's types: text where text belongs, nodes and edges as lists of maps, positions as maps, branch
    /// indexes as integers. (The flow inside may still have mistakes; the compiler reports those.)
    static func isWellFormed(_ g: [String: Value]) -> Bool {
        func isText(_ v: Value?) -> Bool { if case .string = v ?? .string("") { true } else { false } }
        guard isText(g["flow"]), isText(g["start"]), isText(g["description"]), case .list(let nodes)? = g["nodes"] else { return false }
        for n in nodes {
            guard case .map = n, case .string = n["id"], case .string = n["type"] else { return false }
            for key in ["params", "position"] where n[key] != .null {
                guard case .map = n[key] else { return false }
            }
        }
        switch g["edges"] {
        case nil: return true
        case .list(let edges)?:
            return edges.allSatisfy { e in
                guard case .map = e, case .string = e["from"], case .string(let port) = e["port"], ports.contains(port),
                      case .string = e["to"] else { return false }
                if e["index"] != .null {
                    guard case .number(let i) = e["index"], i == i.rounded(), abs(i) < 1e9 else { return false }
                }
                return e["when"] == .null || isText(e["when"])
            }
        default: return false
        }
    }

    /// The flow document (as JSON text, which is YAML too) of a graph.
    public static func source(fromGraph graph: Value) throws -> String {
        guard case .map(let g) = graph, case .list(let nodes)? = g["nodes"], isWellFormed(g) else {
            throw FlowCompilerError(.invalidFlow, diagnostics: [])
        }
        var top: [String: Value] = [:]
        for k in documentKeys { if let v = g[k] { top[k] = v } }
        var blocks: [String: [String: Value]] = [:]
        var layout: [String: Value] = [:]
        for node in nodes {
            let id = node["id"].text
            guard !id.isEmpty else { continue }
            if case .map(let params) = node["params"] { blocks[id] = params } else { blocks[id] = [:] }
            if node["position"] != .null { layout[id] = node["position"] }
        }
        var branches: [String: [(Int, Value)]] = [:]
        if case .list(let edges)? = g["edges"] {
            for e in edges {
                let from = e["from"].text
                guard blocks[from] != nil else { continue }
                switch e["port"].text {
                case "next", "on_error", "on_invalid", "on_message", "goto", "call":
                    blocks[from]![e["port"].text] = e["to"]
                case "timeout":
                    if case .map(var waitFor)? = blocks[from]!["wait_for"] {
                        waitFor["on_timeout"] = e["to"]
                        blocks[from]!["wait_for"] = .map(waitFor)
                    } else {
                        var timeout: [String: Value] = [:]
                        if case .map(let t)? = blocks[from]!["timeout"] { timeout = t }
                        timeout["next"] = e["to"]
                        blocks[from]!["timeout"] = .map(timeout)
                    }
                case "branch":
                    var b: [String: Value] = ["goto": e["to"]]
                    if e["when"] != .null { b["when"] = e["when"] }
                    let index: Int
                    if case .number(let n) = e["index"] { index = Int(n) } else { index = branches[from]?.count ?? 0 }
                    branches[from, default: []].append((index, .map(b)))
                default: break
                }
            }
        }
        for (from, list) in branches { blocks[from]!["next"] = .list(list.sorted { $0.0 < $1.0 }.map(\.1)) }
        top["blocks"] = .map(blocks.mapValues { .map($0) })
        if !layout.isEmpty { top["layout"] = .map(layout) }
        return Value.map(top).jsonText
    }
}
