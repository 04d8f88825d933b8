/// A line diff of two texts (longest common subsequence), for comparing flow versions.
enum LineDiff {
    /// Lines prefixed `  ` (same), `- ` (only in `a`) or `+ ` (only in `b`).
    static func diff(_ a: String, _ b: String) -> [String] {
        let x = a.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let y = b.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard x.count * y.count <= 25_000_000 else {
            return x.map { "- " + $0 } + y.map { "+ " + $0 }
        }
        // lengths[i][j]: LCS of x[i...] and y[j...]
        var lengths = Array(repeating: Array(repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in stride(from: x.count - 1, through: 0, by: -1) {
            for j in stride(from: y.count - 1, through: 0, by: -1) {
                lengths[i][j] = x[i] == y[j] ? lengths[i + 1][j + 1] + 1 : max(lengths[i + 1][j], lengths[i][j + 1])
            }
        }
        var out: [String] = []
        var i = 0, j = 0
        while i < x.count || j < y.count {
            if i < x.count, j < y.count, x[i] == y[j] {
                out.append("  " + x[i]); i += 1; j += 1
            } else if i < x.count, j == y.count || lengths[i + 1][j] >= lengths[i][j + 1] {
                out.append("- " + x[i]); i += 1
            } else {
                out.append("+ " + y[j]); j += 1
            }
        }
        return out
    }
}
