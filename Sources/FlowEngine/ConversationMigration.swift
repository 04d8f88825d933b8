import FlowVM

/// Moves a waiting conversation from one version of its flow to another, mapping its position by block id.
/// Pure: the engine loads, maps and writes; this only decides whether and how.
public enum ConversationMigration {
    /// Why a conversation could not move.
    public struct Refusal: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// The continuation re-expressed for `new`, or why that is not possible.
    public static func map(_ c: Continuation, from old: Program, to new: Program) -> Result<Continuation, Refusal> {
        func refuse(_ r: String) -> Result<Continuation, Refusal> { .failure(Refusal(reason: r)) }
        guard let wait = c.wait else { return refuse("the conversation is not waiting") }
        if case .effect = wait { return refuse("the conversation is in the middle of a connector call; try again in a moment") }
        guard c.callStack.isEmpty else { return refuse("the conversation is inside a call:; it can move once it returns") }
        guard c.stack.isEmpty else { return refuse("the conversation is in the middle of a step") }
        guard c.block >= 0, c.block < old.blocks.count else { return refuse("the conversation's block is unknown") }
        let blockID = old.blocks[c.block].id
        guard let newIndex = new.blocks.firstIndex(where: { $0.id == blockID }) else {
            return refuse("block '\(blockID)' does not exist in the new version")
        }
        let start = Int(new.blocks[newIndex].pc)
        let end = new.blocks.map { Int($0.pc) }.filter { $0 > start }.min() ?? new.instructions.count
        let oldInstruction = old.instructions[c.pc]
        guard let pc = (start..<end).first(where: { sameWait(new.instructions[$0], oldInstruction, new, old) }) else {
            return refuse("block '\(blockID)' no longer waits the same way in the new version")
        }
        var moved = Continuation(programHash: new.hash, variableCount: new.variables.count)
        for (slot, name) in new.variables.enumerated() {
            if let oldSlot = old.variables.firstIndex(of: name) { moved.variables[slot] = c.variables[oldSlot] }
        }
        moved.pc = pc
        moved.block = newIndex
        moved.step = c.step
        moved.status = c.status
        if case .handoff = wait, case .handoff(let q) = new.instructions[pc] {
            moved.status = .waiting(.handoff(queue: new.constants[Int(q)].text))
        }
        return .success(moved)
    }

    /// Whether two suspending instructions wait for the same kind of thing (and, for events, the same event).
    private static func sameWait(_ a: Instruction, _ b: Instruction, _ pa: Program, _ pb: Program) -> Bool {
        switch (a, b) {
        case (.awaitInput, .awaitInput), (.sleep, .sleep), (.sleepUntil, .sleepUntil), (.handoff, .handoff): true
        case (.awaitEvent(let na, _, _), .awaitEvent(let nb, _, _)): pa.constants[Int(na)] == pb.constants[Int(nb)]
        default: false
        }
    }
}
