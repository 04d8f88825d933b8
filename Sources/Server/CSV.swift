import Foundation

/// RFC 4180 comma-separated values: fields separated by commas, records by CRLF (or LF), a field in double quotes
/// may hold commas, line breaks and doubled quotes. UTF-8, with or without a byte-order mark.
enum CSV {
    struct Failure: Error, Equatable {
        /// The 1-based line where the problem is.
        var line: Int
        var message: String
    }

    /// The records of `text`, each with the line it starts on; a blank line is no record. Fails on a quote that is
    /// never closed or text after a closing quote, which would shift every later field.
    static func parse(_ text: String) -> Result<[(line: Int, fields: [String])], Failure> {
        var records: [(line: Int, fields: [String])] = []
        var fields: [String] = []
        var field = ""
        var line = 1, recordLine = 1
        var quoted = false, afterQuote = false
        var scalars = text.unicodeScalars[...]
        if scalars.first == "\u{FEFF}" { scalars = scalars.dropFirst() }
        func endRecord() {
            fields.append(field)
            if !(fields.count == 1 && fields[0].isEmpty) { records.append((recordLine, fields)) }
            fields = []
            field = ""
            afterQuote = false
        }
        var i = scalars.startIndex
        while i < scalars.endIndex {
            let c = scalars[i]
            let next = scalars.index(after: i)
            if quoted {
                if c == "\"" {
                    if next < scalars.endIndex, scalars[next] == "\"" {
                        field.unicodeScalars.append("\"")
                        i = scalars.index(after: next)
                        continue
                    }
                    quoted = false
                    afterQuote = true
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                i = next
                continue
            }
            switch c {
            case ",":
                fields.append(field)
                field = ""
                afterQuote = false
            case "\r" where next < scalars.endIndex && scalars[next] == "\n":
                break  // the LF ends the record
            case "\n", "\r":
                endRecord()
                line += 1
                recordLine = line
            case "\"" where field.isEmpty && !afterQuote:
                quoted = true
            default:
                if afterQuote { return .failure(Failure(line: line, message: "text after a closing quote")) }
                if c == "\"" { return .failure(Failure(line: line, message: "a quote inside a field that is not quoted")) }
                field.unicodeScalars.append(c)
            }
            i = next
        }
        if quoted { return .failure(Failure(line: recordLine, message: "a quoted field is never closed")) }
        if !field.isEmpty || !fields.isEmpty || afterQuote { endRecord() }
        return .success(records)
    }

    /// One field as RFC 4180 writes it: quoted when it holds a comma, a quote or a line break. Text a spreadsheet
    /// would run as a formula (starting with `=`, `+`, `-` or `@`, and not a number) gets a leading apostrophe,
    /// which `unescaped` takes off again on import.
    static func field(_ s: String) -> String {
        var s = s
        if let first = s.unicodeScalars.first, "=+-@".unicodeScalars.contains(first), Double(s) == nil { s = "'" + s }
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A field as written by `field`, without the apostrophe that kept it from being a formula.
    static func unescaped(_ s: String) -> String {
        guard s.hasPrefix("'"), let second = s.unicodeScalars.dropFirst().first, "=+-@".unicodeScalars.contains(second) else { return s }
        return String(s.dropFirst())
    }

    static func record(_ fields: [String]) -> String { fields.map(field).joined(separator: ",") + "\r\n" }
}
