import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
@testable import Server
import Testing

/// The Studio is served from the binary: every page is index.html under a strict Content-Security-Policy, files
/// have their content types and ETags (304 when the browser has them), and the API's own 404s stay JSON.
@Suite struct StudioRoutesTests {
    @Test func pagesAndFilesAreServedWithTheirTypesETagsAndPolicy() async throws {
        let rig = try await RouterTests.Rig()
        #expect(StudioRoutes.assets.keys.contains("app.js") && StudioRoutes.assets.keys.contains("studio.css"), "the Studio is in the bundle")
        try await rig.app.test(.router) { client in
            for page in ["/", "/signin", "/flows", "/flows/welcome-menu", "/inbox", "/setup", "/conversations/c-1"] {
                try await client.execute(uri: page, method: .get) { r in
                    #expect(r.status == .ok, "\(page)")
                    #expect(r.headers[.contentType] == "text/html; charset=utf-8")
                    let policy = r.headers[HTTPField.Name("Content-Security-Policy")!] ?? ""
                    #expect(policy.contains("script-src 'self'") && policy.contains("default-src 'none'") && !policy.contains("unsafe"))
                    #expect(String(buffer: r.body).contains(#"<script type="module" src="/studio/app.js"></script>"#))
                    #expect(!String(buffer: r.body).contains("<script>"), "no inline script")
                }
            }
            let etag = try await client.execute(uri: "/studio/app.js", method: .get) { r in
                #expect(r.status == .ok && r.headers[.contentType] == "text/javascript; charset=utf-8")
                return r.headers[.eTag] ?? ""
            }
            #expect(etag.hasPrefix("\"") && etag.count > 10)
            try await client.execute(uri: "/studio/app.js", method: .get, headers: [.ifNoneMatch: etag]) { #expect($0.status == .notModified) }
            try await client.execute(uri: "/studio/app.js", method: .get, headers: [.ifNoneMatch: "\"other\""]) { #expect($0.status == .ok) }
            try await client.execute(uri: "/studio/studio.css", method: .get) { #expect($0.headers[.contentType] == "text/css; charset=utf-8") }
            try await client.execute(uri: "/studio/nothing.js", method: .get) { #expect($0.status == .notFound) }
            try await client.execute(uri: "/v1/nothing", method: .get) { r in
                #expect(r.status == .notFound && r.headers[.contentType] == "application/problem+json", "the API's 404 is still a problem document")
            }
        }
        // Small enough to load at once: under 300 KB in all, no file over 50 KB.
        let sizes = StudioRoutes.assets.mapValues(\.body.readableBytes)
        #expect(sizes.values.reduce(0, +) < 300_000 && sizes.values.allSatisfy { $0 < 50_000 }, "\(sizes)")
        await rig.store.close()
    }
}
