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

    @Test func everyDiagnosticIsLocatedAndCoded() {
        for url in Self.broken {
            for d in compiler.compile(source: Golden.read(url), file: url.lastPathComponent).diagnostics {
                #expect(d.line >= 1 && d.column >= 1)
                #expect(!d.code.isEmpty && d.code.allSatisfy { $0.isLowercase || $0 == "-" }, "code \(d.code)")
            }
        }
    }
}
