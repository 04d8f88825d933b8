import AsyncHTTPClient
import FlowVM
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// n8n's Webhook node, written from its documented behaviour: `POST /webhook/<path>` reaches a workflow only while it
/// is active; `POST /webhook-test/<path>` only while the editor listens (120 s after "listen", and for one call); anything else is 404
/// `The requested webhook "POST <path>" is not registered.`. Basic auth: missing → 401, wrong → 403; header auth
/// likewise. A workflow answers with its last node's JSON, or, in `callback` style, acknowledges at once and later
/// POSTs its result to the `resume_url` it was given (what an HTTP Request node at the end of the workflow does).
public final class FakeN8N: Sendable {
    public struct Workflow: Sendable {
        public var path: String
        public var active = true
        /// The editor's "listen" ends then; nil when not listening.
        public var listeningUntil: Date?
        public var basic: (user: String, password: String)?
        public var header: (name: String, value: String)?
        /// What the last node outputs, from the received body.
        public var answer: @Sendable (Value) -> Value = { _ in ["ok": true] }
        /// When set, the workflow later POSTs this to the body's `resume_url`...
        public var callback: (@Sendable (Value) -> Value)?
        /// ...this long after it was started (0: at once, likely before its trigger's answer is even read).
        public var callbackDelay: Duration = .zero
        /// How long the Webhook node takes to answer its trigger (a slow workflow in "last node" mode).
        public var answerDelay: Duration = .zero
        /// The trigger is answered only once the callback has been answered: the callback surely comes first.
        public var answerAfterCallback = false

        public init(path: String, active: Bool = true, listeningUntil: Date? = nil, basic: (user: String, password: String)? = nil,
                    header: (name: String, value: String)? = nil, answer: @escaping @Sendable (Value) -> Value = { _ in ["ok": true] },
                    callback: (@Sendable (Value) -> Value)? = nil, callbackDelay: Duration = .zero, answerDelay: Duration = .zero,
                    answerAfterCallback: Bool = false) {
            self.path = path
            self.active = active
            self.listeningUntil = listeningUntil
            self.basic = basic
            self.header = header
            self.answer = answer
            self.callback = callback
            self.callbackDelay = callbackDelay
            self.answerDelay = answerDelay
            self.answerAfterCallback = answerAfterCallback
        }
    }

    public let workflows: Mutex<[String: Workflow]>
    public let received = Mutex<[(path: String, body: Value, headers: HTTPFields)]>([])
    public let callbacks = Mutex<[(url: String, status: Int)]>([])
    /// "answered" (a trigger's answer is sent) and "called back" (a callback was answered), in the order they happened.
    public let order = Mutex<[String]>([])
    /// Where callbacks go instead of the resume URL's own host (the server under test listens on a port chosen late).
    public let callbackBase = Mutex<String?>(nil)

    public init(_ workflows: [Workflow]) {
        self.workflows = Mutex(Dictionary(uniqueKeysWithValues: workflows.map { ($0.path, $0) }))
    }

    public var app: some ApplicationProtocol {
        let router = Router()
        for prefix in ["webhook", "webhook-test"] {
            router.post(RouterPath("\(prefix)/{path}")) { request, context -> Response in
                let path = context.parameters.get("path") ?? ""
                let now = Date()
                guard let w = self.workflows.withLock({ $0[path] }),
                      prefix == "webhook" ? w.active : (w.listeningUntil.map { $0 > now } ?? false) else {
                    return Self.json(.notFound, ["code": 404, "message": .string("The requested webhook \"POST \(path)\" is not registered."),
                                                 "hint": "Click the 'Execute workflow' button on the canvas, then try again."])
                }
                if let basic = w.basic {
                    guard let given = request.headers[.authorization] else { return Self.text(.unauthorized, "Authorization is required!") }
                    guard given == "Basic " + Data("\(basic.user):\(basic.password)".utf8).base64EncodedString() else {
                        return Self.text(.forbidden, "Authorization data is wrong!")
                    }
                }
                if let header = w.header {
                    guard let given = request.headers[HTTPField.Name(header.name)!] else { return Self.text(.unauthorized, "Authorization is required!") }
                    guard given == header.value else { return Self.text(.forbidden, "Authorization data is wrong!") }
                }
                // A test webhook serves one call, then the editor stops listening (n8n: "the test webhook … only works for one call").
                if prefix == "webhook-test" { self.workflows.withLock { $0[path]?.listeningUntil = nil } }
                let body = Value(json: String(buffer: try await request.body.collect(upTo: 1 << 20))) ?? .null
                self.received.withLock { $0.append((path, body, request.headers)) }
                if let callback = w.callback, case .string(let resume) = body["resume_url"] {
                    let result = callback(body)
                    var target = resume
                    if let base = self.callbackBase.withLock({ $0 }), let r = resume.range(of: "/webhooks/resume/") {
                        target = base + resume[r.lowerBound...]
                    }
                    let url = target
                    let delay = w.callbackDelay
                    if w.answerAfterCallback {
                        await self.callBack(url, result, after: .zero)
                    } else {
                        Task<Void, Never> { await self.callBack(url, result, after: delay) }
                    }
                    try await Task.sleep(for: w.answerDelay)
                    self.order.withLock { $0.append("answered") }
                    return Self.json(.ok, ["message": "Workflow was started"])
                }
                return Self.json(.ok, w.answer(body))
            }
        }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    private func callBack(_ url: String, _ result: Value, after delay: Duration) async {
        try? await Task.sleep(for: delay)
        var post = HTTPClientRequest(url: url)
        post.method = .POST
        post.headers.add(name: "Content-Type", value: "application/json")
        post.body = .bytes(ByteBuffer(string: result.jsonText))
        var status = 0
        if let response = try? await HTTPClient.shared.execute(post, timeout: .seconds(5)) { status = Int(response.status.code) }
        callbacks.withLock { $0.append((url, status)) }
        order.withLock { $0.append("called back") }
    }

    public static func json(_ status: HTTPResponse.Status, _ v: Value) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: v.jsonText)))
    }
    public static func text(_ status: HTTPResponse.Status, _ s: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: s)))
    }
}
