import CYaml

/// A streaming pass over libyaml's events, before anything is composed: it measures nesting and what aliases
/// expand to, without recursion and without building a tree, so a document too deep for the recursive composer
/// or an alias bomb is refused in time proportional to its size.
enum YAMLScan {
    /// Why the document was refused, located; nil when it is within the limits (or is not YAML at all: the
    /// composer reports syntax errors with its own messages).
    static func check(_ text: String, maxNesting: Int = FlowLimits.maxNesting,
                      maxNodes: Int = FlowLimits.maxExpandedNodes) -> (code: String, message: String, location: SourcePosition)? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBufferPointer { buffer -> (String, String, SourcePosition)? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            // An open collection: its anchor, the values it holds so far (expanded), and its tallest child.
            struct Frame { var anchor: String?; var nodes = 0; var height = 0 }
            var stack: [Frame] = []
            // Per anchor: how many values it stands for and how deep it reaches.
            var anchors: [String: (nodes: Int, height: Int)] = [:]
            var total = 0
            func add(_ nodes: Int, _ height: Int) -> Bool {
                total = min(total + nodes, Int.max / 4)
                if var top = stack.popLast() {
                    top.nodes = min(top.nodes + nodes, Int.max / 4)
                    top.height = max(top.height, height)
                    stack.append(top)
                }
                return total <= maxNodes
            }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let mark = SourcePosition(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                let tooMany = ("too-large", "the document holds more than \(maxNodes) values once its aliases are expanded", mark)
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    return nil
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    let anchor = event.type == YAML_SEQUENCE_START_EVENT ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
                    stack.append(Frame(anchor: anchor.map { String(cString: $0) }))
                    if stack.count > maxNesting {
                        return ("too-deep", "maps and lists are nested more than \(maxNesting) deep here", mark)
                    }
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let frame = stack.popLast() else { return nil }
                    let measured = (nodes: frame.nodes + 1, height: frame.height + 1)
                    if let a = frame.anchor { anchors[a] = measured }
                    total -= frame.nodes  // counted again as part of the parent
                    guard add(measured.nodes, measured.height) else { return tooMany }
                case YAML_SCALAR_EVENT:
                    if let a = event.data.scalar.anchor { anchors[String(cString: a)] = (1, 0) }
                    guard add(1, 0) else { return tooMany }
                case YAML_ALIAS_EVENT:
                    guard let name = event.data.alias.anchor, let target = anchors[String(cString: name)] else { return nil }
                    if stack.count + target.height > maxNesting {
                        return ("too-deep", "this alias nests maps and lists more than \(maxNesting) deep", mark)
                    }
                    guard add(target.nodes, target.height) else { return tooMany }
                default:
                    continue
                }
            }
        }
    }
}
