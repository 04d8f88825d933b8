import Connectors
import FlowCompiler
import Foundation
import Testing

/// Pins the diagnostics of every flow in Fixtures/broken: one mistake each, and a few with several.
@Suite struct DiagnosticsGoldenTests {
    static let broken = Golden.files(in: Golden.fixtures.appendingPathComponent("broken"), extensions: ["yaml", "json"])
    let compiler = FlowCompiler(catalog: BuiltinActions.catalog)

    @Test func corpusIsLargeEnough() {
        #expect(Self.broken.count >= 40)
    }

    @Test(arguments: broken)
    func diagnostics(_ url: URL) {
        let file = "broken/" + url.lastPathComponent
        let result = compiler.compile(source: Golden.read(url), file: file)
        #expect(!result.diagnostics.isEmpty, "a broken flow must produce a diagnostic")
        #expect(result.hasErrors == (result.program == nil), "a program exactly when there is no error")
        let text = result.diagnostics.map(\.formatted).joined(separator: "\n") + "\n"
        Golden.check(text, against: url.deletingPathExtension().appendingPathExtension("expected"))
    }

    /// Where in the document each diagnostic of the corpus is, as the JSON Pointer a builder marks its field by:
    /// one file, so a change in how positions map to paths shows as one reviewable diff.
    @Test func paths() {
        let lines = Self.broken.flatMap { url in
            compiler.compile(source: Golden.read(url), file: url.lastPathComponent).diagnostics.map { d in
                "\(d.file):\(d.line):\(d.column) [\(d.code)] \(d.path.map { $0.isEmpty ? "(document)" : $0 } ?? "-")"
            }
        }
        Golden.check(lines.joined(separator: "\n") + "\n", against: Golden.fixtures.appendingPathComponent("broken-paths.expected"))
    }

    /// Keys are escaped as RFC 6901 says (`~` as `~0`, `/` as `~1`), in JSON as in YAML.
    @Test func pathsEscapeKeys() {
        let json = #"{"flow": "f", "start": "hello", "blocks": {"hello": {"text": "hi", "a/b~c": 1}}}"#
        let d = compiler.compile(source: json, file: "f.json").diagnostics.first { $0.code == "unknown-key" }
        #expect(d?.path == "/blocks/hello/a~1b~0c")
        let yaml = "flow: f\nstart: hello\nblocks:\n  hello:\n    ask: pick\n    buttons: [ok, \"a much too long button title\"]\n"
        #expect(compiler.compile(source: yaml, file: "f.yaml").diagnostics.map(\.path) == ["/blocks/hello/buttons/1"])
    }

    @Test func everyDiagnosticIsLocatedAndCoded() {
        for url in Self.broken {
            for d in compiler.compile(source: Golden.read(url), file: url.lastPathComponent).diagnostics {
                #expect(d.line >= 1 && d.column >= 1)
                #expect(!d.code.isEmpty && d.code.allSatisfy { $0.isLowercase || $0 == "-" }, "code \(d.code)")
            }
        }
    }
}
