import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The Studio: plain browser code (ES modules and CSS in `Sources/Server/Studio/`) shipped in the binary and served
/// at `/`. Every page is the one `index.html`, which routes in the browser; assets are under `/studio/`. Each answer
/// has an ETag (a `304` for a browser that has it), and every page a Content-Security-Policy that allows only this
/// server's own scripts, styles and connections: no inline script, no `eval`, nothing from elsewhere.
struct StudioRoutes {
    struct Asset: Sendable {
        var body: ByteBuffer
        var contentType: String
        var etag: String
    }

    /// The pages the browser routes itself; each serves `index.html`.
    static let pages = ["", "signin", "setup", "invitation", "password", "signup", "flows", "flows/{name}", "inbox", "conversations",
                        "conversations/{id}", "channels", "members"]

    static let policy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'", "font-src 'self'",
        "form-action 'self'", "base-uri 'none'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    /// The Studio's files, read once from the bundle: path under `/studio/` → asset.
    static let assets: [String: Asset] = {
        guard let root = Bundle.module.resourceURL?.appendingPathComponent("Studio"),
              let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]) else { return [:] }
        var found: [String: Asset] = [:]
        for case let url as URL in walker where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            guard let data = try? Data(contentsOf: url) else { continue }
            let path = String(url.standardizedFileURL.path.dropFirst(root.standardizedFileURL.path.count + 1))
            let digest = SHA256.hash(data: data).prefix(12).map { String(format: "%02x", $0) }.joined()
            found[path] = Asset(body: ByteBuffer(bytes: data), contentType: contentType(path), etag: "\"\(digest)\"")
        }
        return found
    }()

    static func contentType(_ path: String) -> String {
        switch (path as NSString).pathExtension {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        case "json": "application/json"
        case "png": "image/png"
        default: "application/octet-stream"
        }
    }

    func addRoutes(to router: Router<FlowlineRequestContext>) {
        for path in Self.assets.keys.sorted() {
            router.get(RouterPath("studio/" + path)) { request, _ in Self.answer(path, request) }
        }
        for page in Self.pages {
            router.get(RouterPath(page.isEmpty ? "/" : page)) { request, _ in Self.answer("index.html", request) }
        }
    }

    /// Whether a route's path is one of the Studio's (a page or a file), not the API's.
    static func serves(_ routePath: String) -> Bool {
        let path = routePath.split(separator: "/").map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
        return path.hasPrefix("studio/") || pages.contains(path)
    }

    static func answer(_ path: String, _ request: Request) -> Response {
        guard let asset = assets[path] else { return Response(status: .notFound) }
        var headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff", HTTPField.Name("Referrer-Policy")!: "same-origin",
        ]
        if path.hasSuffix(".html") {
            headers[HTTPField.Name("Content-Security-Policy")!] = policy
            headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        }
        if request.headers[.ifNoneMatch]?.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == asset.etag }) == true {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
    }
}
