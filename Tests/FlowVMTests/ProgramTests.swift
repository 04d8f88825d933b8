@testable import FlowVM
import Testing

@Suite struct ProgramTests {
    static let source = """
        flow: p
        start: a
        blocks:
          a:
            ask: "Pick"
            buttons: [Yes, "No"]
            save: c
            timeout: { after: 1h, next: b }
            next:
              - when: c == "Yes"
                goto: b
          b:
            use: stripe.checkout
            with: { amount: 100, currency: brl, description: "x" }
            on_error: b
        """

    @Test func encodingRoundTripsExactly() throws {
        let p = try Harness.compile(Self.source)
        let bytes = p.encoded()
        let decoded = try Program(decoding: bytes)
        #expect(decoded == p)
        #expect(decoded.encoded() == bytes)
        #expect(decoded.hash == p.hash)
    }

    @Test func hashIsTheIdentity() throws {
        let a = try Harness.compile(Self.source)
        let b = try Harness.compile(Self.source)
        let c = try Harness.compile(Self.source.replacingOccurrences(of: "Pick", with: "Choose"))
        #expect(a.hash == b.hash)
        #expect(a.hash != c.hash)
        #expect(a.hash.count == 64)
    }

    @Test func badMagicIsRefused() {
        #expect(throws: FlowVMError.self) { try Program(decoding: Array("NOPE".utf8) + [1]) }
    }

    @Test func newerFormatIsRefused() throws {
        var w = ByteWriter()
        w.bytes = Array("FLBC".utf8)
        w.uvarint(UInt64(Program.formatVersion) + 1)
        do {
            _ = try Program(decoding: w.bytes)
            Issue.record("a newer format must be refused")
        } catch let e as FlowVMError {
            #expect(e.code == .unsupportedVersion)
        }
    }

    @Test func everyTruncationFailsCleanly() throws {
        let bytes = try Harness.compile(Self.source).encoded()
        for n in 0..<bytes.count {
            #expect(throws: FlowVMError.self) { try Program(decoding: Array(bytes.prefix(n))) }
        }
    }

    @Test func outOfRangeOperandsAreRefused() throws {
        var p = try Harness.compile(Self.source)
        p.instructions[0] = .jump(UInt32(p.instructions.count + 5))
        #expect(throws: FlowVMError.self) { try Program(decoding: p.encoded()) }
        var q = try Harness.compile(Self.source)
        q.instructions[1] = .push(9999)
        #expect(throws: FlowVMError.self) { try Program(decoding: q.encoded()) }
    }

    @Test func sourceMapFindsLines() throws {
        let p = try Harness.compile(Self.source)
        let b = try #require(p.block(named: "b"))
        let mark = try #require(p.sourceMark(at: Int(b.pc)))
        #expect(mark.line == 12)
        #expect(p.blockIndex(at: Int(b.pc) + 1) == p.blocks.firstIndex { $0.id == "b" })
    }

    @Test func everyJumpLandsInsideTheProgram() throws {
        let p = try Harness.compile(Self.source)
        for i in p.instructions { if let t = i.target { #expect(Int(t) < p.instructions.count) } }
        #expect(p.blocks.first { $0.id == "b" }?.errorHandler == p.block(named: "b")?.pc)
    }
}
