/// Flows of any size for the benchmarks, shaped like real ones: variables set from expressions, templates,
/// conditions with branches, and (for the compiler) a question every tenth block.
enum FlowGenerator {
    /// A flow of `blocks` blocks in one chain. With `asks`, every tenth block waits for a reply.
    static func yaml(blocks: Int, asks: Bool) -> String {
        var lines = ["flow: generated", "variables:", "  n: { type: number, default: 0 }", "start: b0", "blocks:"]
        lines.reserveCapacity(blocks * 6)
        for i in 0..<blocks {
            let next = i + 1 < blocks ? "b\(i + 1)" : nil
            lines.append("  b\(i):")
            switch i % 10 {
            case 9 where asks:
                lines.append("    ask: \"Question \(i), {{ label }}?\"")
                lines.append("    save: answer\(i % 50)")
            case 0, 3, 6:
                lines.append("    set:")
                lines.append("      n: n + \(i % 7 + 1)")
                lines.append("      label: \"Lead {{ n }}\"")
            case 1, 4, 7:
                if let next {
                    lines.append("    next:")
                    lines.append("      - when: n > 100000000 and label != \"\"")
                    lines.append("        goto: \(next)")
                    lines.append("      - goto: \(next)")
                    continue
                }
                lines.append("    set: { done: true }")
            default:
                lines.append("    set: { total: \"n * 2 + \(i)\", tag: \"lower(label) + '-\(i)'\" }")
            }
            if let next { lines.append("    next: \(next)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A conversation loop for turns per second: each reply is checked, counted and answered with the next
    /// question (one message per turn).
    static let chatLoop = """
        flow: loop
        variables:
          orders: { type: number, default: 0 }
        start: ask
        blocks:
          ask:
            ask: "Your order number?"
            save: reply
            next: check
          check:
            next:
              - when: reply matches "^[0-9]+$" and len(reply) < 12
                goto: count
              - goto: again
          count:
            set: { orders: "orders + 1", last: "upper(reply)" }
            next: answer
          answer:
            ask: "Order {{ last }} noted ({{ orders }} so far). Next order number?"
            save: reply
            next: check
          again:
            ask: "That is not an order number. Try again?"
            save: reply
            next: check
        """
}
