import Connectors
@testable import FlowCompiler
import FlowVM
import Foundation
import Testing

/// Hostile documents: each one used to crash the process (stack overflow), stall it for seconds, or take gigabytes.
/// Now each is a located diagnostic with its own code, in bounded time.
@Suite struct FlowLimitsTests {
    let compiler = FlowCompiler(catalog: BuiltinActions.catalog)

    func diagnostics(_ source: String) -> [Diagnostic] {
        compiler.compile(source: source, file: "hostile.yaml").diagnostics
    }

    func errors(_ source: String, code: String) -> [Diagnostic] {
        diagnostics(source).filter { $0.severity == .error && $0.code == code }
    }

    /// A flow whose one branch condition is `expression`.
    func branching(on expression: String) -> String {
        """
        flow: p
        start: a
        blocks:
          a:
            next:
              - when: "\(expression)"
                goto: b
              - goto: b
          b:
            end: ok
        """
    }

    @Test func deeplyNestedParenthesesAreTooDeep() throws {
        let e = try #require(errors(branching(on: String(repeating: "(", count: 1_500) + "x" + String(repeating: ")", count: 1_500)),
                                    code: "too-deep").first)
        #expect(e.line == 6)
        #expect(e.column > 15 && e.column < 15 + 100, "located where the nesting passes the limit, not at the start")
    }

    @Test func tenThousandNotsAreRefused() {
        let d = diagnostics(branching(on: String(repeating: "not ", count: 10_000) + "x"))
        #expect(d.contains { $0.code == "too-large" || $0.code == "too-deep" }, "\(d.map(\.formatted))")
        // 60 nots are fine: the limit is not a ban.
        #expect(!diagnostics(branching(on: String(repeating: "not ", count: 60) + "message.text")).contains { $0.severity == .error })
    }

    @Test func deepListLiteralsAndTemplatesAreTooDeep() {
        let list = """
            flow: p
            start: a
            blocks:
              a:
                set: {x: "\(String(repeating: "[", count: 200))\(String(repeating: "]", count: 200))"}
                next: b
              b:
                end: ok
            """
        #expect(!errors(list, code: "too-deep").isEmpty)
        let template = """
            flow: p
            start: a
            blocks:
              a:
                text: "{{ \(String(repeating: "(", count: 1_500))1\(String(repeating: ")", count: 1_500)) }}"
                next: b
              b:
                end: ok
            """
        let e = errors(template, code: "too-deep")
        #expect(e.count == 1 && e[0].line == 5)
    }

    @Test func longOperatorChainsAreTooDeepAsTrees() {
        // Flat in the text, 1,499 levels deep as a tree: later stages would recurse that deep.
        let sum = Array(repeating: "1", count: 1_500).joined(separator: " + ")
        #expect(!errors(branching(on: sum), code: "too-deep").isEmpty)
        #expect(!diagnostics(branching(on: Array(repeating: "1", count: 40).joined(separator: " + "))).contains { $0.severity == .error })
    }

    @Test func deeplyNestedYAMLIsTooDeepBeforeComposing() {
        let doc = "flow: p\nstart: a\nblocks:\n  a:\n    use: x\n    with: " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "\n"
        let e = errors(doc, code: "too-deep")
        #expect(e.count == 1 && e[0].line == 6, "\(diagnostics(doc).map(\.formatted))")
        // Far deeper than libyaml's own limit: still one clear error, no crash.
        let deeper = "flow: p\nx: " + String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000) + "\n"
        #expect(diagnostics(deeper).contains { $0.severity == .error })
    }

    @Test func aliasBombsAreRefusedBeforeExpansion() {
        // 10^8 leaves from under 1 KB: refused by counting, without building anything.
        var bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for c in "bcdefgh" {
            let previous = Character(UnicodeScalar(c.unicodeScalars.first!.value - 1)!)
            bomb += "\(c): &\(c) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
        }
        let started = ContinuousClock.now
        let e = errors(bomb, code: "too-large")
        #expect(e.count == 1)
        #expect(ContinuousClock.now - started < .seconds(10))
        // A few aliases within the budget are fine (YAML authors use them to share a list of buttons).
        let shared = """
            flow: p
            start: a
            blocks:
              a:
                ask: "Plan?"
                buttons: &plans [Basic, Pro]
                save: plan
                next: b
              b:
                ask: "Again?"
                buttons: *plans
                save: again
                next: c
              c:
                end: ok
            """
        #expect(!diagnostics(shared).contains { $0.severity == .error }, "\(diagnostics(shared).map(\.formatted))")
    }

    @Test func aliasesCountAtTheirExpandedDepth() {
        let doc = "deep: &d " + String(repeating: "[", count: 40) + String(repeating: "]", count: 40) + "\nagain: [[[[[[[[[[[[[[[[[[[[[[[[[[[*d]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
        #expect(!errors(doc, code: "too-deep").isEmpty)
    }

    @Test func aLongChainOfBlocksCompilesWithoutRecursion() throws {
        // Every walk over blocks (reachability, loops that never wait) is iterative: the chain of 10,001 blocks
        // (338 KB) that used to overflow the stack compiles.
        var chain = "flow: p\nstart: b0\nblocks:\n"
        for i in 0..<10_001 { chain += "  b\(i): {text: t, next: b\(i + 1)}\n" }
        chain += "  b10001:\n    end: ok\n"
        let c = compiler.compile(source: chain, file: "chain.yaml")
        #expect(!c.hasErrors, "\(c.diagnostics.prefix(3).map(\.formatted))")
        #expect(c.program?.blocks.count == 10_002)
    }

    @Test func aLongCycleWithoutWaitingIsStillFound() {
        var cycle = "flow: p\nstart: b0\nblocks:\n"
        for i in 0..<3_000 { cycle += "  b\(i):\n    text: t\n    next: b\((i + 1) % 3_000)\n" }
        let e = errors(cycle, code: "spin-loop")
        #expect(e.count == 1)
        #expect(e.first?.message.contains("b2999 → b0") == true)
    }

    @Test func tooManyBlocksIsTooLarge() {
        var chain = "flow: p\nstart: b0\nblocks:\n"
        for i in 0...FlowLimits.maxBlocks { chain += "  b\(i): {text: t, next: b\(i + 1)}\n" }
        let e = errors(chain, code: "too-large")
        #expect(e.count == 1 && e[0].line == 3)
    }

    @Test func oversizedSourcesAreTooLarge() {
        let big = "flow: p\ndescription: \"" + String(repeating: "x", count: FlowLimits.maxSourceBytes) + "\"\n"
        #expect(errors(big, code: "too-large").count == 1)
    }

    @Test func longIdentifiersAreRefusedAndSuggestionsStayCheap() {
        // 40 block ids of 400 characters, each pointing at a missing one: this took 103 s of CPU.
        var doc = "flow: p\nstart: \(String(repeating: "q", count: 399))0\nblocks:\n"
        for i in 0..<40 { doc += "  \(String(repeating: "q", count: 399))\(i):\n    text: t\n    next: \(String(repeating: "r", count: 399))\(i)\n" }
        let started = ContinuousClock.now
        #expect(errors(doc, code: "identifier-too-long").count == 40)
        #expect(ContinuousClock.now - started < .seconds(5))
        // Ids at the limit, each pointing at a near miss: hints for the first few, in bounded time.
        var near = "flow: p\nstart: \(String(repeating: "q", count: 120))000\nblocks:\n"
        for i in 0..<500 {
            let n = String(format: "%03d", i)
            near += "  \(String(repeating: "q", count: 120))\(n):\n    text: t\n    next: \(String(repeating: "q", count: 119))x\(n)\n"
        }
        let unknown = errors(near, code: "unknown-block")
        #expect(unknown.count == 500)
        #expect(unknown.filter { $0.hint != nil }.count == 20)
    }

    @Test func hintsStillFindTypos() {
        let doc = """
            flow: p
            start: welcome
            blocks:
              welcome:
                text: hi
                next: recieve
              receive:
                end: ok
            """
        #expect(errors(doc, code: "unknown-block").first?.hint == "did you mean 'receive'?")
    }

    /// The banded, early-exit distance agrees with the plain dynamic programme wherever it answers.
    @Test func boundedDistanceAgreesWithTheFullOne() {
        func full(_ a: [UInt32], _ b: [UInt32]) -> Int {
            if a.isEmpty { return b.count }
            if b.isEmpty { return a.count }
            var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { d[i][0] = i }
            for j in 0...b.count { d[0][j] = j }
            for i in 1...a.count {
                for j in 1...b.count {
                    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
                }
            }
            return d[a.count][b.count]
        }
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3_000 {
            let a = (0..<Int.random(in: 0...9, using: &rng)).map { _ in UInt32.random(in: 97...100, using: &rng) }
            let b = (0..<Int.random(in: 0...9, using: &rng)).map { _ in UInt32.random(in: 97...100, using: &rng) }
            let expected = full(a, b)
            for bound in 0...4 {
                let got = Suggest.distance(a, b, atMost: bound)
                #expect(got == (expected <= bound ? expected : nil), "\(a) \(b) bound \(bound)")
            }
        }
    }

    @Test func catastrophicPatternsAreRefusedAtCompileTime() {
        func ask(_ pattern: String) -> String {
            """
            flow: p
            start: a
            blocks:
              a:
                ask: "Code?"
                validate: {pattern: '\(pattern)'}
                save: code
                next: b
              b:
                end: ok
            """
        }
        let slow = errors(ask("(x+x+)+y"), code: "slow-pattern")
        #expect(slow.count == 1 && slow[0].line == 6)
        #expect(!errors(ask("^(a|aa)+$"), code: "slow-pattern").isEmpty)
        for fine in [#"^\d{5}$"#, ".*@.*", "^[A-Z]{3}-[0-9]+$", "(?i)^(yes|no)$"] {
            #expect(!diagnostics(ask(fine)).contains { $0.severity == .error }, "\(fine): \(diagnostics(ask(fine)).map(\.formatted))")
        }
        #expect(errors(ask(String(repeating: "a", count: PatternCheck.maxLength + 1)), code: "invalid-regex").count == 1)
        // The same check for a literal pattern after `matches`.
        #expect(errors(branching(on: "message.text matches '(x+x+)+y'"), code: "slow-pattern").count == 1)
    }
}
