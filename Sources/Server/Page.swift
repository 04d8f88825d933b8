import FlowVM
import Hummingbird

/// The `?limit=&offset=` window of a list request. Every list answers `{"<items>": [...], "total", "limit", "offset"}`,
/// so a builder pages through any of them the same way.
struct Page {
    var limit: Int
    var offset: Int

    static let maximum = 500

    init(_ request: Request, defaultLimit: Int = 100) throws {
        let q = request.uri.queryParameters
        func number(_ name: Substring, default value: Int, in range: ClosedRange<Int>) throws -> Int {
            guard let text = q[name].map(String.init) else { return value }
            guard let n = Int(text), range.contains(n) else {
                throw Problem(.badRequest, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return n
        }
        limit = try number("limit", default: defaultLimit, in: 1...Self.maximum)
        offset = try number("offset", default: 0, in: 0...1_000_000)
    }

    /// The list response for this page.
    func response(_ key: String, _ items: [Value], total: Int) -> Response {
        json([key: .list(items), "total": .number(Double(total)), "limit": .number(Double(limit)), "offset": .number(Double(offset))])
    }

    /// This page of a list already in memory (for lists a human works through, such as the inbox).
    func slice<T>(_ all: [T]) -> ArraySlice<T> {
        all.dropFirst(offset).prefix(limit)
    }
}
