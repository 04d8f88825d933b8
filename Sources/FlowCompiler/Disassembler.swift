import FlowVM

/// A readable listing of a program: block labels, instructions with decoded operands, and source lines.
public enum Disassembler {
    public static func listing(_ p: Program) -> String {
        var out = "; flow \(p.name) — \(p.sourceFile)\n"
        out += "; format \(Program.formatVersion), hash \(p.hash)\n"
        out += "; \(p.instructions.count) instructions, \(p.constants.count) constants, \(p.variables.count) variables, \(p.blocks.count) blocks\n"
        out += "; variables: " + p.variables.enumerated().map { "\($0.offset)=\($0.element)" }.joined(separator: " ") + "\n"
        var blockAt: [Int: [Program.Block]] = [:]
        for b in p.blocks { blockAt[Int(b.pc), default: []].append(b) }
        var marks = p.sourceMap.makeIterator()
        var nextMark = marks.next()
        for (pc, ins) in p.instructions.enumerated() {
            for b in blockAt[pc] ?? [] {
                out += "\n\(b.id):" + (b.errorHandler.map { "    ; on_error → \(label(p, Int($0)))" } ?? "") + "\n"
            }
            var line = String(format: "%5d  ", pc) + describe(ins, p)
            while let m = nextMark, Int(m.pc) <= pc {
                if Int(m.pc) == pc {
                    line = line.padding(toLength: max(line.count, 56), withPad: " ", startingAt: 0) + "; line \(m.line):\(m.column)"
                }
                nextMark = marks.next()
            }
            out += line + "\n"
        }
        return out
    }

    private static func label(_ p: Program, _ pc: Int) -> String {
        if let b = p.blocks.first(where: { Int($0.pc) == pc }) { return "\(pc) <\(b.id)>" }
        return "\(pc)"
    }

    private static func constant(_ p: Program, _ i: UInt32) -> String {
        let s = p.constants[Int(i)].description
        return s.count > 60 ? String(s.prefix(57)) + "..." : s
    }

    private static func describe(_ ins: Instruction, _ p: Program) -> String {
        func op(_ name: String, _ args: String = "") -> String {
            args.isEmpty ? name : name.padding(toLength: 14, withPad: " ", startingAt: 0) + args
        }
        switch ins {
        case .push(let i): return op("push", constant(p, i))
        case .load(let s): return op("load", p.variables[Int(s)])
        case .store(let s): return op("store", p.variables[Int(s)])
        case .pop: return op("pop")
        case .member(let i): return op("member", p.constants[Int(i)].text)
        case .index: return op("index")
        case .unary(let u): return op("unary", u == .not ? "not" : "-")
        case .binary(let b): return op("binary", b.symbol)
        case .call(let f, let argc): return op("call", "\(f.name)/\(argc)")
        case .makeList(let n): return op("make_list", "\(n)")
        case .makeMap(let n): return op("make_map", "\(n)")
        case .concat(let n): return op("concat", "\(n)")
        case .jump(let t): return op("jump", label(p, Int(t)))
        case .jumpIfFalse(let t): return op("jump_if_false", label(p, Int(t)))
        case .jumpIfNotNull(let t): return op("jump_if_set", label(p, Int(t)))
        case .enterBlock(let b): return op("enter", p.blocks[Int(b)].id)
        case .callBlock(let t): return op("call_block", label(p, Int(t)))
        case .ret: return op("ret")
        case .fail(let c): return op("fail", p.constants[Int(c)].text)
        case .end: return op("end")
        case .send(let o): return op("send", p.constants[Int(o)] == .null ? "" : constant(p, o))
        case .awaitInput(let t, let to):
            return op("await_input", t == 0 ? "" : "timeout \(t)s → \(label(p, Int(to)))")
        case .validate(let s, let inv): return op("validate", "\(constant(p, s)) else → \(label(p, Int(inv)))")
        case .onMessage(let t): return op("on_message", label(p, Int(t)))
        case .sleep(let s): return op("sleep", "\(s)s")
        case .sleepUntil(let tz): return op("sleep_until", p.constants[Int(tz)].text)
        case .awaitEvent(let n, let t, let to):
            return op("await_event", p.constants[Int(n)].text + (t == 0 ? "" : " timeout \(t)s → \(label(p, Int(to)))"))
        case .handoff(let q): return op("handoff", p.constants[Int(q)].text)
        case .perform(let a): return op("perform", p.constants[Int(a)].text)
        case .updateContact: return op("update_contact")
        }
    }
}

import Foundation
