import FlowVM

/// Emits instructions, interns constants and resolves jumps through labels: jump operands are written as
/// placeholders and back-patched once every label is bound, so no offset is ever computed by hand.
struct Assembler {
    struct Label: Hashable { fileprivate let id: Int }

    private(set) var instructions: [Instruction] = []
    private(set) var constants: [Value] = []
    private var constantIndex: [Value: UInt32] = [:]
    private var labelPCs: [Int?] = []
    private var fixups: [(pc: Int, label: Label)] = []
    private(set) var sourceMap: [Program.SourceMark] = []

    var pc: UInt32 { UInt32(instructions.count) }

    mutating func constant(_ v: Value) -> UInt32 {
        if let i = constantIndex[v] { return i }
        let i = UInt32(constants.count)
        constants.append(v)
        constantIndex[v] = i
        return i
    }

    mutating func newLabel() -> Label {
        labelPCs.append(nil)
        return Label(id: labelPCs.count - 1)
    }

    mutating func bind(_ label: Label) {
        precondition(labelPCs[label.id] == nil, "label bound twice")
        labelPCs[label.id] = instructions.count
    }

    func address(of label: Label) -> UInt32? { labelPCs[label.id].map(UInt32.init) }

    /// Records that the next instruction comes from `location`.
    mutating func mark(_ location: SourcePosition?) {
        guard let location else { return }
        let m = Program.SourceMark(pc: pc, line: UInt32(location.line), column: UInt32(location.column))
        if let last = sourceMap.last, last.pc == m.pc {
            sourceMap[sourceMap.count - 1] = m
        } else if sourceMap.last.map({ $0.line != m.line || $0.column != m.column }) ?? true {
            sourceMap.append(m)
        }
    }

    mutating func emit(_ i: Instruction) { instructions.append(i) }

    /// Emits a control instruction whose target is `label`, to be patched later.
    mutating func emit(_ i: Instruction, to label: Label) {
        fixups.append((instructions.count, label))
        instructions.append(i)
    }

    /// Patches every jump; fails if a label was never bound (a lowering bug, not a user mistake).
    mutating func finish() -> [Instruction] {
        for f in fixups {
            guard let target = labelPCs[f.label.id] else { preconditionFailure("unbound label") }
            instructions[f.pc] = instructions[f.pc].withTarget(UInt32(target))
        }
        fixups.removeAll()
        return instructions
    }
}
