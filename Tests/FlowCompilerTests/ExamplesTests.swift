import Connectors
import FlowCompiler
import FlowRuntime
import FlowVM
import Foundation
import Testing

/// Every example in flows/ compiles with no errors, pins its disassembly, and runs to its end from the chat
/// script committed beside it.
@Suite struct ExamplesTests {
    static let flows = Golden.files(in: Golden.root.appendingPathComponent("flows"), extensions: ["yaml", "json"])
    let compiler = FlowCompiler(catalog: BuiltinActions.catalog)

    @Test func thereAreAtLeastSixExamples() {
        #expect(Self.flows.count >= 6)
    }

    @Test(arguments: flows)
    func checksCleanly(_ url: URL) {
        let result = compiler.compile(source: Golden.read(url), file: "flows/" + url.lastPathComponent)
        #expect(result.diagnostics.isEmpty, "\(result.diagnostics.map(\.formatted))")
    }

    @Test(arguments: flows)
    func disassembly(_ url: URL) throws {
        let program = try compiler.program(source: Golden.read(url), file: "flows/" + url.lastPathComponent)
        let name = url.deletingPathExtension().lastPathComponent
        Golden.check(Disassembler.listing(program), against: Golden.fixtures.appendingPathComponent("disasm/\(name).txt"))
    }

    @Test(arguments: flows)
    func chatScriptRunsToTheEnd(_ url: URL) throws {
        let program = try compiler.program(source: Golden.read(url), file: "flows/" + url.lastPathComponent)
        let base = url.deletingPathExtension()
        let script = Golden.read(base.appendingPathExtension("chat"))
        #expect(!script.isEmpty, "each example needs a chat script beside it")
        let mockURL = base.appendingPathExtension("mock.yaml")
        let mocks = FileManager.default.fileExists(atPath: mockURL.path)
            ? try DataDocument.value(from: Golden.read(mockURL), file: mockURL.lastPathComponent) : .null
        var session = ChatSession(program: program, simulator: Simulator(mocks: mocks),
                                  now: Timestamp(milliseconds: 1_767_614_400_000))
        var transcript = session.start()
        for line in script.split(separator: "\n").map(String.init) where !line.isEmpty && !line.hasPrefix("#") {
            transcript.append("you: \(line)")
            transcript += session.input(line)
        }
        #expect(session.continuation.status == .ended, "\(url.lastPathComponent) did not reach its end")
        #expect(transcript.last == "end: the flow finished")
        #expect(!transcript.contains { $0.hasPrefix("note:") || $0.hasPrefix("failed:") }, "\(transcript)")
        let name = url.deletingPathExtension().lastPathComponent
        Golden.check(transcript.joined(separator: "\n") + "\n", against: Golden.fixtures.appendingPathComponent("transcripts/\(name).txt"))
    }
}
