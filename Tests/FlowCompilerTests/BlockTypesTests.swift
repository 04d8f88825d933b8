@testable import FlowCompiler
import Connectors
import FlowVM
import Foundation
import Testing

/// `BlockTypes` is the one table of block types: its schemas accept every block of the example flows, refuse what
/// the compiler refuses, and list exactly the keys the parser takes.
@Suite struct BlockTypesTests {
    /// The part of JSON Schema the block schemas use: type, properties, required, additionalProperties, anyOf, items,
    /// enum, pattern, minimum. Returns the first problem, or nil.
    static func problem(_ v: Value, _ schema: Value, _ path: String = "") -> String? {
        if case .list(let options) = schema["anyOf"] {
            return options.contains { problem(v, $0, path) == nil } ? nil : "\(path): matches no form"
        }
        switch schema["type"].text {
        case "string":
            guard case .string(let s) = v else { return "\(path): not a string" }
            if case .string(let p) = schema["pattern"], s.range(of: p, options: .regularExpression) == nil { return "\(path): \(s) does not match \(p)" }
            if case .list(let allowed) = schema["enum"], !allowed.contains(v) { return "\(path): \(s) is not allowed" }
        case "integer", "number":
            guard case .number(let n) = v else { return "\(path): not a number" }
            if schema["type"] == "integer", n != n.rounded() { return "\(path): not an integer" }
            if case .number(let min) = schema["minimum"], n < min { return "\(path): below \(min)" }
        case "array":
            guard case .list(let items) = v else { return "\(path): not a list" }
            for (i, item) in items.enumerated() { if let p = problem(item, schema["items"], "\(path)[\(i)]") { return p } }
        case "object":
            guard case .map(let m) = v else { return "\(path): not a map" }
            if case .list(let required) = schema["required"] {
                for r in required where m[r.text] == nil { return "\(path): missing \(r.text)" }
            }
            for (k, sub) in m {
                if case .string(let p) = schema["propertyNames"]["pattern"], k.range(of: p, options: .regularExpression) == nil {
                    return "\(path): key \(k) does not match \(p)"
                }
                if case .map(let props) = schema["properties"], let s = props[k] {
                    if let p = problem(sub, s, path + "." + k) { return p }
                } else if schema["additionalProperties"] == false {
                    return "\(path): unknown key \(k)"
                }
            }
        case "boolean":
            guard case .bool = v else { return "\(path): not a boolean" }
            if case .list(let allowed) = schema["enum"], !allowed.contains(v) { return "\(path): \(v) is not allowed" }
        case "null":
            guard v == .null else { return "\(path): not null" }
        default:
            break
        }
        return nil
    }

    static func type(of block: Value) -> String {
        guard case .map(let m) = block else { return "?" }
        return BlockTypes.actionKeys.first { m[$0] != nil } ?? "condition"
    }

    @Test func everyBlockOfTheExampleFlowsMatchesItsTypesSchema() throws {
        let dir = Golden.root.appendingPathComponent("flows")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") && !$0.contains(".mock.") }
        #expect(files.count >= 5)
        var checked = 0
        for file in files {
            let doc = try DataDocument.value(from: String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8), file: file)
            guard case .map(let blocks) = doc["blocks"] else { continue }
            for (id, block) in blocks {
                let type = Self.type(of: block)
                let schema = try #require(BlockTypes.all.first { $0.name == type }?.schema)
                #expect(Self.problem(block, schema) == nil, "\(file) \(id) (\(type)): \(Self.problem(block, schema) ?? "")")
                checked += 1
            }
        }
        #expect(checked > 40, "\(checked) blocks checked")
    }

    @Test func theSchemasRefuseWhatTheCompilerRefuses() throws {
        let bad: [(Value, String)] = [
            (["text": "hi", "nxet": "b"], "a misspelt key"),
            (["ask": "Name?", "retries": -1], "negative retries"),
            (["wait_for": ["match": "x"]], "wait_for without its event"),
            (["webhook": ["url": "https://x.example", "method": "FETCH"]], "an unknown method"),
            (["goto": "not an id!"], "a goto that is no block id"),
            (["next": [["when": "x", "goto": "a", "else": "b"]]], "a branch with an unknown key"),
            (["contact": ["set": ["bad name": 1]], "next": "b"], "an attribute name a filter could not name"),
            (["contact": ["tag": "vip", "label": "x"], "next": "b"], "a contact edit with an unknown key"),
        ]
        for (block, what) in bad {
            let schema = try #require(BlockTypes.all.first { $0.name == Self.type(of: block) }?.schema)
            #expect(Self.problem(block, schema) != nil, "\(what) must be refused")
            let flow = FlowCompiler(catalog: BuiltinActions.catalog).compile(
                source: Value.map(["flow": "f", "start": "a", "blocks": ["a": block, "b": ["end": "ok"]]]).jsonText, file: "f.json")
            #expect(flow.hasErrors, "and the compiler refuses \(what) too")
        }
    }

    @Test func theTableIsWhatTheParserTheGraphAndTheSchemasUse() {
        #expect(FlowParser.actionKeys == BlockTypes.actionKeys && FlowGraph.blockTypes == BlockTypes.actionKeys)
        #expect(BlockTypes.all.count == 14)
        for t in BlockTypes.all {
            guard case .map(let properties) = t.schema["properties"] else {
                Issue.record("\(t.name) has no properties")
                continue
            }
            #expect(Set(properties.keys) == Set(t.keys) && Set(t.keys) == Set(FlowParser.blockKeys[t.name] ?? []), "\(t.name)")
        }
    }
}
