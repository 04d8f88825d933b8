/// How large a value may grow, checked where values are made (lists, maps, results of functions, events from
/// outside), so a flow that doubles a list in a loop fails its own conversation cleanly with `value_too_large`
/// long before it costs the process memory, and everything stored can be read back.
public enum ValueLimits {
    /// Lists and maps nested in one value. Reading stored values refuses 256, so what is made always reads back.
    public static let maxDepth = 64
    /// Items in one value, counted through every nested list and map.
    public static let maxNodes = 100_000
    /// UTF-8 bytes of text in one value, map keys included.
    public static let maxBytes = 1024 * 1024
    /// UTF-8 bytes of all a conversation keeps between turns (its variables and stack).
    public static let maxContinuationBytes = 4 * 1024 * 1024

    /// What measuring a value found.
    public struct Size: Sendable {
        public var nodes = 0
        public var bytes = 0
    }

    /// Measures `value` without recursion, stopping at the first limit it passes: the work is bounded by the
    /// limits, not by the value.
    public static func measure(_ value: Value, depth base: Int = 0) throws(FlowVMError) -> Size {
        var size = Size()
        var stack: [(Value, Int)] = [(value, base)]
        while let (v, depth) = stack.popLast() {
            size.nodes += 1
            if size.nodes > maxNodes { throw FlowVMError(.valueTooLarge, "a value holds more than \(maxNodes) items") }
            switch v {
            case .null, .bool, .number: break
            case .string(let s): size.bytes += s.utf8.count
            case .list(let items):
                if depth + 1 > maxDepth { throw FlowVMError(.valueTooLarge, "lists and maps nested more than \(maxDepth) deep") }
                for item in items { stack.append((item, depth + 1)) }
            case .map(let m):
                if depth + 1 > maxDepth { throw FlowVMError(.valueTooLarge, "lists and maps nested more than \(maxDepth) deep") }
                for (k, item) in m {
                    size.bytes += k.utf8.count
                    stack.append((item, depth + 1))
                }
            }
            if size.bytes > maxBytes { throw FlowVMError(.valueTooLarge, "a value holds more than \(maxBytes / 1024) KiB of text") }
        }
        return size
    }

    /// Checks a value the VM just made and returns the fuel measuring it cost.
    static func check(_ value: Value) throws(FlowVMError) -> Int {
        switch value {
        case .list, .map: return try measure(value).nodes / 64
        default: return 0
        }
    }

    /// Checks everything a continuation keeps between turns. Runs at every wait, so scalars, the common case, are
    /// counted in place and only lists and maps are walked.
    static func check(_ c: Continuation) throws(FlowVMError) {
        var bytes = 0, nodes = 0
        func add(_ v: Value) throws(FlowVMError) {
            switch v {
            case .null, .bool, .number: nodes += 1
            case .string(let s):
                nodes += 1
                bytes += s.utf8.count
            case .list, .map:
                let size = try measure(v)
                nodes += size.nodes
                bytes += size.bytes
            }
            if bytes > maxContinuationBytes || nodes > maxNodes * 4 {
                throw FlowVMError(.valueTooLarge, "the conversation keeps more than \(maxContinuationBytes / 1024 / 1024) MiB between turns")
            }
        }
        for v in c.variables { try add(v) }
        for v in c.stack { try add(v) }
    }
}
