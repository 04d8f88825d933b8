import Connectors
import FlowCompiler
import FlowRuntime
import FlowVM
import Foundation
import Testing

/// The builder's graph form converts to and from flow documents without loss.
@Suite struct FlowGraphTests {
    let compiler = FlowCompiler(catalog: BuiltinActions.catalog)

    @Test(arguments: ExamplesTests.flows)
    func examplesRoundTripThroughTheGraph(_ url: URL) throws {
        let source = Golden.read(url)
        let graph = try FlowGraph.graph(fromSource: source, file: url.lastPathComponent)
        let regenerated = try FlowGraph.source(fromGraph: graph)
        #expect(try FlowGraph.graph(fromSource: regenerated, file: "regenerated.json") == graph, "graph → source → graph is lossless")
        let original = try compiler.program(source: source, file: "x")
        let rebuilt = try compiler.program(source: regenerated, file: "x")
        // Same flow: same blocks, same variables, same behaviour on the example's chat script.
        #expect(Set(original.blocks.map(\.id)) == Set(rebuilt.blocks.map(\.id)))
        #expect(Set(original.variables) == Set(rebuilt.variables))
        let script = Golden.read(url.deletingPathExtension().appendingPathExtension("chat"))
        let mockURL = url.deletingPathExtension().appendingPathExtension("mock.yaml")
        let mocks = FileManager.default.fileExists(atPath: mockURL.path)
            ? try DataDocument.value(from: Golden.read(mockURL), file: "mock") : .null
        func transcript(_ p: Program) -> [String] {
            var s = ChatSession(program: p, simulator: Simulator(mocks: mocks), now: Timestamp(milliseconds: 1_767_614_400_000))
            var lines = s.start()
            for line in script.split(separator: "\n").map(String.init) where !line.isEmpty && !line.hasPrefix("#") {
                lines += s.input(line)
            }
            return lines
        }
        #expect(transcript(original) == transcript(rebuilt))
    }

    /// `on_message` is a port of `wait` and `wait_for` (an edge in the graph, a block reference the checker resolves),
    /// and no other block's key.
    @Test func onMessageIsAWaitsPort() throws {
        let source = """
            flow: w
            start: nap
            blocks:
              nap:
                wait: 1d
                on_message: heard
                next: done
              heard:
                text: "heard"
              done:
                end: "bye"
            """
        let graph = try FlowGraph.graph(fromSource: source, file: "w.yaml")
        guard case .list(let edges) = graph["edges"] else { Issue.record("no edges"); return }
        #expect(edges.contains { $0["from"] == "nap" && $0["port"] == "on_message" && $0["to"] == "heard" })
        let back = try FlowGraph.source(fromGraph: graph)
        #expect(try compiler.program(source: back, file: "w").blocks.count == 3)
        #expect(FlowGraph.ports(of: BlockTypes.all.first { $0.name == "wait" }!).contains("on_message"))
        #expect(!FlowGraph.ports(of: BlockTypes.all.first { $0.name == "ask" }!).contains("on_message"))

        let unknown = compiler.compile(source: source.replacingOccurrences(of: "on_message: heard", with: "on_message: nowhere"), file: "w.yaml")
        #expect(unknown.diagnostics.contains { $0.severity == .error && $0.message.contains("nowhere") }, "\(unknown.diagnostics)")
        let onAsk = "flow: a\nstart: q\nblocks:\n  q:\n    ask: \"?\"\n    on_message: q\n"
        #expect(compiler.compile(source: onAsk, file: "a.yaml").diagnostics.contains { $0.code == "unknown-key" })
    }

    @Test func positionsSurviveInTheLayout() throws {
        let graph: Value = [
            "flow": "g", "start": "a",
            "nodes": [
                ["id": "a", "type": "ask", "params": ["ask": "Pick", "buttons": ["Yes", "No"], "save": "c", "timeout": ["after": "5m"]],
                 "position": ["x": 10, "y": 20]],
                ["id": "b", "type": "end", "params": ["end": "yes!"], "position": ["x": 10, "y": 120]],
                ["id": "c", "type": "end", "params": ["end": "no"], "position": ["x": 200, "y": 120]],
            ],
            "edges": [
                ["from": "a", "port": "branch", "index": 0, "when": "c == 'Yes'", "to": "b"],
                ["from": "a", "port": "branch", "index": 1, "to": "c"],
                ["from": "a", "port": "timeout", "to": "c"],
            ],
        ]
        let source = try FlowGraph.source(fromGraph: graph)
        let result = compiler.compile(source: source, file: "g.json")
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.formatted))")
        #expect(try FlowGraph.graph(fromSource: source, file: "g.json") == graph)
    }

    @Test func anEdgeFromAnUnknownPortIsRefusedNotDropped() throws {
        let graph: Value = [
            "flow": "g", "start": "a",
            "nodes": [["id": "a", "type": "text", "params": ["text": "hi"]], ["id": "b", "type": "end", "params": ["end": "bye"]]],
            "edges": [["from": "a", "port": "nxet", "to": "b"]],
        ]
        #expect(throws: FlowCompilerError.self) { try FlowGraph.source(fromGraph: graph) }
    }

    /// Schemathesis found a graph whose node position was `false` saved as a draft: the envelope's types are checked.
    @Test func positionsAndBranchIndexesOfTheWrongTypeAreRefused() throws {
        func graph(position: Value, index: Value) -> Value {
            ["flow": "g", "start": "a",
             "nodes": [["id": "a", "type": "text", "params": ["text": "hi"], "position": position], ["id": "b", "type": "end", "params": ["end": "x"]]],
             "edges": [["from": "a", "port": "branch", "index": index, "to": "b"]]]
        }
        #expect(throws: Never.self) { try FlowGraph.source(fromGraph: graph(position: ["x": 1, "y": 2], index: 0)) }
        #expect(throws: FlowCompilerError.self) { try FlowGraph.source(fromGraph: graph(position: false, index: 0)) }
        #expect(throws: FlowCompilerError.self) { try FlowGraph.source(fromGraph: graph(position: .null, index: 0.5)) }
        #expect(throws: FlowCompilerError.self) { try FlowGraph.source(fromGraph: graph(position: .null, index: "1")) }
    }
}
