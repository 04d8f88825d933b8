import Foundation
import Testing

/// Golden files: compares text with a file kept in the repository. Run with `FLOWLINE_UPDATE_GOLDEN=1` to
/// rewrite them, then review the diff before committing.
enum Golden {
    /// The repository's root, found from this file's path.
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let fixtures = root.appendingPathComponent("Tests/FlowCompilerTests/Fixtures")
    static var updating: Bool { ProcessInfo.processInfo.environment["FLOWLINE_UPDATE_GOLDEN"] == "1" }

    static func files(in folder: URL, extensions: Set<String>) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { name in
            extensions.contains((name as NSString).pathExtension) && !name.contains(".mock.")
        }.sorted().map { folder.appendingPathComponent($0) }
    }

    static func read(_ url: URL) -> String {
        (try? String(contentsOf: url, encoding: .utf8)) ?? ""
    }

    /// Checks `actual` against the golden file, or writes it when updating.
    static func check(_ actual: String, against url: URL, sourceLocation: SourceLocation = #_sourceLocation) {
        if updating {
            try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        guard FileManager.default.fileExists(atPath: url.path) else {
            Issue.record("missing golden file \(url.lastPathComponent); run with FLOWLINE_UPDATE_GOLDEN=1", sourceLocation: sourceLocation)
            return
        }
        let expected = read(url)
        #expect(actual == expected, "\(url.lastPathComponent) differs from its golden file", sourceLocation: sourceLocation)
    }
}
