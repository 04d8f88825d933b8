import Foundation
import Crypto

/// Compiled bytecode for one flow: immutable, and identified by the hash of its binary encoding.
public struct Program: Sendable, Hashable {
    /// The binary format version; readers refuse newer formats.
    public static let formatVersion: UInt16 = 1
    static let magic: [UInt8] = Array("FLBC".utf8)

    /// Variables every flow has, in their fixed first slots; the engine fills them.
    public static let builtinVariables = ["contact", "conversation", "channel", "error", "message"]

    /// One block's entry in the block table.
    public struct Block: Sendable, Hashable {
        public var id: String
        public var pc: UInt32
        /// Where runtime errors in this block go (`on_error`), if anywhere.
        public var errorHandler: UInt32?
        public init(id: String, pc: UInt32, errorHandler: UInt32? = nil) {
            self.id = id
            self.pc = pc
            self.errorHandler = errorHandler
        }
    }

    /// A source position: the first instruction at `pc` came from `line:column`.
    public struct SourceMark: Sendable, Hashable {
        public var pc: UInt32
        public var line: UInt32
        public var column: UInt32
        public init(pc: UInt32, line: UInt32, column: UInt32) {
            self.pc = pc
            self.line = line
            self.column = column
        }
    }

    /// The flow's name.
    public var name: String
    /// The source file's name, for traces and listings.
    public var sourceFile: String
    /// Flow-level settings the engine reads: description, trigger, debounce window.
    public var metadata: Value
    public var instructions: [Instruction]
    public var constants: [Value]
    /// Variable names by slot; the first slots are `builtinVariables`.
    public var variables: [String]
    public var blocks: [Block]
    /// Sorted by pc.
    public var sourceMap: [SourceMark]

    public init(
        name: String, sourceFile: String, metadata: Value, instructions: [Instruction], constants: [Value],
        variables: [String], blocks: [Block], sourceMap: [SourceMark]
    ) {
        self.name = name
        self.sourceFile = sourceFile
        self.metadata = metadata
        self.instructions = instructions
        self.constants = constants
        self.variables = variables
        self.blocks = blocks
        self.sourceMap = sourceMap
    }

    /// The program's identity: lowercase hex SHA-256 of its encoding.
    public var hash: String {
        SHA256.hash(data: encoded()).map { String(format: "%02x", $0) }.joined()
    }

    /// The source mark covering `pc`, for traces.
    public func sourceMark(at pc: Int) -> SourceMark? {
        var lo = 0, hi = sourceMap.count - 1, found: SourceMark?
        while lo <= hi {
            let mid = (lo + hi) / 2
            if Int(sourceMap[mid].pc) <= pc {
                found = sourceMap[mid]
                lo = mid + 1
            } else {
                hi = mid - 1
            }
        }
        return found
    }

    /// The block a pc belongs to: the last block entered at or before it.
    public func blockIndex(at pc: Int) -> Int? {
        var best: Int?
        for (i, b) in blocks.enumerated() where Int(b.pc) <= pc {
            if best == nil || blocks[best!].pc <= b.pc { best = i }
        }
        return best
    }

    /// The block table entry with this id.
    public func block(named id: String) -> Block? { blocks.first { $0.id == id } }
}


extension Program {
    /// Encodes the program: magic, format version, then its tables.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.bytes.append(contentsOf: Program.magic)
        w.uvarint(UInt64(Program.formatVersion))
        w.string(name)
        w.string(sourceFile)
        w.value(metadata)
        w.uvarint(constants.count)
        for c in constants { w.value(c) }
        w.uvarint(variables.count)
        for v in variables { w.string(v) }
        w.uvarint(blocks.count)
        for b in blocks {
            w.string(b.id)
            w.uvarint(b.pc)
            w.uvarint(b.errorHandler.map { UInt64($0) + 1 } ?? 0)
        }
        w.uvarint(sourceMap.count)
        for m in sourceMap {
            w.uvarint(m.pc)
            w.uvarint(m.line)
            w.uvarint(m.column)
        }
        w.uvarint(instructions.count)
        for i in instructions { i.encode(to: &w) }
        return w.bytes
    }

    /// Decodes and validates a program; every operand is checked so the VM can trust it.
    public init(decoding bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        guard bytes.count >= 4, Array(bytes[0..<4]) == Program.magic else {
            throw FlowVMError(.corruptEncoding, "not Flowline bytecode (bad magic)")
        }
        r.offset = 4
        let version = try r.uvarint()
        guard version <= UInt64(Program.formatVersion) else {
            throw FlowVMError(.unsupportedVersion, "bytecode format \(version) is newer than \(Program.formatVersion)")
        }
        name = try r.string()
        sourceFile = try r.string()
        metadata = try r.value()
        constants = try (0..<r.int()).map { _ in try r.value() }
        variables = try (0..<r.int()).map { _ in try r.string() }
        blocks = try (0..<r.int()).map { _ in
            let id = try r.string()
            let pc = try r.u32()
            let handler = try r.uvarint()
            return Block(id: id, pc: pc, errorHandler: handler == 0 ? nil : UInt32(truncatingIfNeeded: handler - 1))
        }
        sourceMap = try (0..<r.int()).map { _ in SourceMark(pc: try r.u32(), line: try r.u32(), column: try r.u32()) }
        instructions = try (0..<r.int()).map { _ in try Instruction(decoding: &r) }
        guard r.isAtEnd else { throw FlowVMError(.corruptEncoding, "trailing bytes after program") }
        try validate()
    }

    /// Checks every operand is in range, so a corrupt program fails here and not in the middle of a turn.
    public func validate() throws {
        func check(_ ok: Bool, _ what: String, _ pc: Int) throws {
            if !ok { throw FlowVMError(.corruptEncoding, "\(what) out of range at pc \(pc)") }
        }
        let n = instructions.count
        for (pc, ins) in instructions.enumerated() {
            if let t = ins.target { try check(Int(t) < n, "jump target", pc) }
            switch ins {
            case .push(let c), .member(let c), .fail(let c), .send(let c), .sleepUntil(let c), .handoff(let c),
                 .perform(let c), .validate(let c, _), .awaitEvent(let c, _, _):
                try check(Int(c) < constants.count, "constant", pc)
            case .load(let s), .store(let s):
                try check(Int(s) < variables.count, "variable slot", pc)
            case .enterBlock(let b):
                try check(Int(b) < blocks.count, "block", pc)
            default: break
            }
        }
        for b in blocks {
            try check(Int(b.pc) < n, "block entry", 0)
            if let h = b.errorHandler { try check(Int(h) < n, "error handler", 0) }
        }
        guard variables.count >= Program.builtinVariables.count,
              Array(variables.prefix(Program.builtinVariables.count)) == Program.builtinVariables
        else { throw FlowVMError(.corruptEncoding, "missing built-in variables") }
    }
}

extension Instruction {
    func encode(to w: inout ByteWriter) {
        switch self {
        case .push(let a): w.u8(1); w.uvarint(a)
        case .load(let a): w.u8(2); w.uvarint(a)
        case .store(let a): w.u8(3); w.uvarint(a)
        case .pop: w.u8(4)
        case .member(let a): w.u8(5); w.uvarint(a)
        case .index: w.u8(6)
        case .unary(let op): w.u8(7); w.u8(op.rawValue)
        case .binary(let op): w.u8(8); w.u8(op.rawValue)
        case .call(let f, let argc): w.u8(9); w.u8(f.rawValue); w.u8(argc)
        case .makeList(let a): w.u8(10); w.uvarint(a)
        case .makeMap(let a): w.u8(11); w.uvarint(a)
        case .concat(let a): w.u8(12); w.uvarint(a)
        case .jump(let a): w.u8(20); w.uvarint(a)
        case .jumpIfFalse(let a): w.u8(21); w.uvarint(a)
        case .jumpIfNotNull(let a): w.u8(22); w.uvarint(a)
        case .enterBlock(let a): w.u8(23); w.uvarint(a)
        case .callBlock(let a): w.u8(24); w.uvarint(a)
        case .ret: w.u8(25)
        case .fail(let a): w.u8(26); w.uvarint(a)
        case .end: w.u8(27)
        case .send(let a): w.u8(40); w.uvarint(a)
        case .awaitInput(let t, let to): w.u8(41); w.uvarint(t); w.uvarint(to)
        case .validate(let s, let inv): w.u8(42); w.uvarint(s); w.uvarint(inv)
        case .sleep(let a): w.u8(43); w.uvarint(a)
        case .sleepUntil(let a): w.u8(44); w.uvarint(a)
        case .awaitEvent(let n, let t, let to): w.u8(45); w.uvarint(n); w.uvarint(t); w.uvarint(to)
        case .handoff(let a): w.u8(46); w.uvarint(a)
        case .perform(let a): w.u8(47); w.uvarint(a)
        case .onMessage(let a): w.u8(48); w.uvarint(a)
        case .updateContact: w.u8(49)
        }
    }

    init(decoding r: inout ByteReader) throws {
        let op = try r.u8()
        switch op {
        case 1: self = .push(try r.u32())
        case 2: self = .load(try r.u32())
        case 3: self = .store(try r.u32())
        case 4: self = .pop
        case 5: self = .member(try r.u32())
        case 6: self = .index
        case 7:
            guard let u = UnaryOperator(rawValue: try r.u8()) else { throw FlowVMError(.corruptEncoding, "bad unary operator") }
            self = .unary(u)
        case 8:
            guard let b = BinaryOperator(rawValue: try r.u8()) else { throw FlowVMError(.corruptEncoding, "bad binary operator") }
            self = .binary(b)
        case 9:
            guard let f = Builtin(rawValue: try r.u8()) else { throw FlowVMError(.corruptEncoding, "bad function") }
            self = .call(f, argc: try r.u8())
        case 10: self = .makeList(try r.u32())
        case 11: self = .makeMap(try r.u32())
        case 12: self = .concat(try r.u32())
        case 20: self = .jump(try r.u32())
        case 21: self = .jumpIfFalse(try r.u32())
        case 22: self = .jumpIfNotNull(try r.u32())
        case 23: self = .enterBlock(try r.u32())
        case 24: self = .callBlock(try r.u32())
        case 25: self = .ret
        case 26: self = .fail(try r.u32())
        case 27: self = .end
        case 40: self = .send(options: try r.u32())
        case 41: self = .awaitInput(timeout: try r.u32(), onTimeout: try r.u32())
        case 42: self = .validate(spec: try r.u32(), onInvalid: try r.u32())
        case 43: self = .sleep(try r.u32())
        case 44: self = .sleepUntil(timezone: try r.u32())
        case 45: self = .awaitEvent(name: try r.u32(), timeout: try r.u32(), onTimeout: try r.u32())
        case 46: self = .handoff(queue: try r.u32())
        case 47: self = .perform(action: try r.u32())
        case 48: self = .onMessage(try r.u32())
        case 49: self = .updateContact
        default: throw FlowVMError(.corruptEncoding, "unknown opcode \(op)")
        }
    }
}
