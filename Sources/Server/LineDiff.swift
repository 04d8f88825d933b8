/// A line diff of two texts (longest common subsequence), for comparing flow versions.
enum LineDiff {
    static let maxCells = 4_000_000

    /// Lines prefixed `  ` (same), `- ` (only in `a`) or `+ ` (only in `b`).
    static func diff(_ a: String, _ b: String) -> [String] {
        let allX = a.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let allY = b.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Edits are local: the common head and tail cost nothing, and only what lies between needs the table.
        var head = 0
        while head < allX.count, head < allY.count, allX[head] == allY[head] { head += 1 }
        var tail = 0
        while tail < allX.count - head, tail < allY.count - head, allX[allX.count - 1 - tail] == allY[allY.count - 1 - tail] { tail += 1 }
        let x = Array(allX[head..<(allX.count - tail)]), y = Array(allY[head..<(allY.count - tail)])
        var out = allX[..<head].map { "  " + $0 }
        let common = allX[(allX.count - tail)...].map { "  " + $0 }
        // The table is bounded (4 million cells, 16 MB); past it the middle is shown as replaced whole.
        guard x.count * y.count <= maxCells else {
            return out + x.map { "- " + $0 } + y.map { "+ " + $0 } + common
        }
        // lengths[i * width + j]: LCS of x[i...] and y[j...]
        let width = y.count + 1
        var lengths = [Int32](repeating: 0, count: (x.count + 1) * width)
        for i in stride(from: x.count - 1, through: 0, by: -1) {
            for j in stride(from: y.count - 1, through: 0, by: -1) {
                lengths[i * width + j] = x[i] == y[j] ? lengths[(i + 1) * width + j + 1] + 1
                    : max(lengths[(i + 1) * width + j], lengths[i * width + j + 1])
            }
        }
        var i = 0, j = 0
        while i < x.count || j < y.count {
            if i < x.count, j < y.count, x[i] == y[j] {
                out.append("  " + x[i]); i += 1; j += 1
            } else if i < x.count, j == y.count || lengths[(i + 1) * width + j] >= lengths[i * width + j + 1] {
                out.append("- " + x[i]); i += 1
            } else {
                out.append("+ " + y[j]); j += 1
            }
        }
        return out + common
    }
}
