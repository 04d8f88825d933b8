import FlowEngine
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

/// A small SMTP client on SwiftNIO (RFC 5321): EHLO, STARTTLS and EHLO again, AUTH PLAIN or LOGIN, MAIL FROM,
/// RCPT TO, DATA with CRLF line ends and dot-stuffing, QUIT. `tls` speaks TLS from the first byte (port 465).
///
/// With `starttls` the client never falls back to plain text: a server that does not offer STARTTLS is refused,
/// and credentials are only sent over TLS. Replies decide failures as RFC 5321 says: 4xx is temporary
/// (retried), 5xx is permanent.
public struct SMTPClient: Sendable {
    public enum Security: String, Sendable {
        case starttls, tls, none
    }

    public enum AuthMechanism: String, Sendable {
        case plain = "PLAIN", login = "LOGIN"
    }

    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var security: Security
        public var username: String?
        public var password: String?
        /// Certificates to trust instead of the system's (a private CA); PEM.
        public var trustedCertificatePEM: String?
        /// The mechanism to use; the best the server offers (PLAIN, then LOGIN) when nil.
        public var authMechanism: AuthMechanism?
        /// The name this client gives in EHLO.
        public var clientName: String

        public init(host: String, port: Int? = nil, security: Security = .starttls, username: String? = nil, password: String? = nil,
                    trustedCertificatePEM: String? = nil, authMechanism: AuthMechanism? = nil, clientName: String = "flowline.localhost") {
            self.host = host
            self.port = port ?? (security == .tls ? 465 : 587)
            self.security = security
            self.username = username
            self.password = password
            self.trustedCertificatePEM = trustedCertificatePEM
            self.authMechanism = authMechanism
            self.clientName = clientName
        }
    }

    public let configuration: Configuration

    public init(_ configuration: Configuration) {
        self.configuration = configuration
    }

    /// A reply: its code and text lines.
    struct Reply {
        var code: Int
        var lines: [String]
    }

    /// Sends `data` (an RFC 5322 message, lines ending in CRLF) from `from` to `recipients`, before `deadline`.
    public func send(from: String, to recipients: [String], data: String, deadline: ContinuousClock.Instant) async throws {
        let configuration = configuration
        let tls = try makeTLSContext()
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        let implicitHandshake = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Void.self)
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if configuration.security == .tls {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: tls, serverHostname: Self.sniName(configuration.host)))
                            try channel.pipeline.syncOperations.addHandler(TLSHandshakeWaiter(implicitHandshake))
                        } else {
                            implicitHandshake.succeed()
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder(), maximumBufferSize: 64 * 1024))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            implicitHandshake.succeed()
            throw ConnectorError(code: "smtp_unreachable", message: "the SMTP server did not accept a connection", retryable: true)
        }
        try await Self.withDeadline(deadline, channel: channel.channel) {
            try await channel.executeThenClose { inbound, outbound in
                // A failed handshake must be reported as TLS, not as whatever read or write notices it first.
                try await Self.handshake(implicitHandshake.futureResult)
                var session = Session(lines: inbound.makeAsyncIterator(), outbound: outbound)
                try await session.expect(220, "greeting")
                var features = try await session.ehlo(configuration.clientName)
                if configuration.security == .starttls {
                    guard features.contains("STARTTLS") else {
                        throw ConnectorError(code: "smtp_no_starttls",
                                             message: "the SMTP server does not offer STARTTLS, and mail is not sent in plain text", retryable: false)
                    }
                    try await session.command("STARTTLS", expect: 220, "STARTTLS")
                    let handler = try NIOSSLClientHandler(context: tls, serverHostname: Self.sniName(configuration.host))
                    let handshake = channel.channel.eventLoop.makePromise(of: Void.self)
                    // The waiter goes right behind the TLS handler, which starts the handshake once added.
                    try await channel.channel.pipeline.addHandler(TLSHandshakeWaiter(handshake), position: .first)
                    try await channel.channel.pipeline.addHandler(handler, position: .first)
                    try await Self.handshake(handshake.futureResult)
                    features = try await session.ehlo(configuration.clientName)  // the server forgets everything at STARTTLS
                }
                if let user = configuration.username, let password = configuration.password {
                    try await session.authenticate(user: user, password: password, features: features, preferred: configuration.authMechanism)
                }
                try await session.command("MAIL FROM:<\(from)>", expect: 250, "MAIL FROM")
                for r in recipients { try await session.command("RCPT TO:<\(r)>", expect: 250, "RCPT TO") }
                try await session.command("DATA", expect: 354, "DATA")
                try await session.write(Self.dotStuffed(data) + ".\r\n")
                try await session.expect(250, "the message")
                try? await session.write("QUIT\r\n")
            }
        }
    }

    /// Waits for a TLS handshake; any failure is `smtp_tls`, permanent (a certificate will not fix itself).
    private static func handshake(_ done: EventLoopFuture<Void>) async throws {
        do { try await done.get() } catch let error as NIOSSLError {
            throw ConnectorError(code: "smtp_tls", message: "TLS with the SMTP server failed (\(Self.tlsReason(error)))", retryable: false)
        } catch is BoringSSLError {
            throw ConnectorError(code: "smtp_tls", message: "TLS with the SMTP server failed (its certificate is not trusted)", retryable: false)
        } catch {
            throw ConnectorError(code: "smtp_tls", message: "TLS with the SMTP server failed (the connection closed during the handshake)",
                                 retryable: false)
        }
    }

    /// The SNI name: a host name, never an IP address (TLS forbids those in SNI).
    static func sniName(_ host: String) -> String? {
        host.allSatisfy({ $0.isNumber || $0 == "." }) || host.contains(":") ? nil : host
    }

    private func makeTLSContext() throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let pem = configuration.trustedCertificatePEM {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
            } catch {
                throw ConnectorError(code: "smtp_certificate", message: "the email channel's ca_certificate is not a PEM certificate", retryable: false)
            }
        }
        return try NIOSSLContext(configuration: tls)
    }

    /// Lines that start with "." get another (RFC 5321 §4.5.2); line ends become CRLF; the data ends with CRLF.
    public static func dotStuffed(_ data: String) -> String {
        var lines = data.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines.map { $0.hasPrefix(".") ? "." + $0 : $0 }.joined(separator: "\r\n") + "\r\n"
    }

    /// Runs `body`, closing the connection (which ends any wait on it) when the deadline passes first.
    private static func withDeadline(_ deadline: ContinuousClock.Instant, channel: any Channel, _ body: @escaping @Sendable () async throws -> Void)
        async throws
    {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask { try await body(); return true }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return false
            }
            defer { group.cancelAll() }
            do {
                if try await group.next() == false {
                    channel.close(promise: nil)
                    throw ConnectorError(code: "smtp_timeout", message: "the SMTP server did not answer in time", retryable: true)
                }
            } catch let error as ConnectorError {
                throw error
            } catch let error as NIOSSLError {
                throw ConnectorError(code: "smtp_tls", message: "TLS with the SMTP server failed (\(Self.tlsReason(error)))", retryable: false)
            } catch is BoringSSLError {
                throw ConnectorError(code: "smtp_tls", message: "TLS with the SMTP server failed (its certificate is not trusted)", retryable: false)
            } catch {
                throw ConnectorError(code: "smtp_connection", message: "the SMTP connection failed", retryable: true)
            }
        }
    }

    private static func tlsReason(_ error: NIOSSLError) -> String {
        switch error {
        case .handshakeFailed: "its certificate is not trusted, or the handshake failed"
        case .unableToValidateCertificate: "its certificate is not valid for this host"
        default: "\(error)"
        }
    }

    /// One conversation with the server.
    struct Session {
        var lines: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

        mutating func reply() async throws -> Reply {
            var lines: [String] = []
            while let buffer = try await self.lines.next() {
                let line = String(buffer: buffer)
                guard line.count >= 3, let code = Int(line.prefix(3)) else {
                    throw ConnectorError(code: "smtp_protocol", message: "the SMTP server sent something that is not a reply", retryable: true)
                }
                lines.append(String(line.dropFirst(4)))
                if line.count == 3 || line[line.index(line.startIndex, offsetBy: 3)] == " " { return Reply(code: code, lines: lines) }
            }
            throw ConnectorError(code: "smtp_connection", message: "the SMTP server closed the connection", retryable: true)
        }

        func write(_ text: String) async throws {
            try await outbound.write(ByteBuffer(string: text))
        }

        /// Reads a reply and fails as RFC 5321 says when its code is not `code`.
        mutating func expect(_ code: Int, _ step: String) async throws {
            let reply = try await reply()
            guard reply.code == code else { throw Self.failure(reply, step) }
        }

        mutating func command(_ line: String, expect code: Int, _ step: String) async throws {
            try await write(line + "\r\n")
            try await expect(code, step)
        }

        /// EHLO; answers the extension keywords the server offers (`STARTTLS`, `AUTH PLAIN LOGIN`…), upper-cased.
        mutating func ehlo(_ name: String) async throws -> [String] {
            try await write("EHLO \(name)\r\n")
            let reply = try await reply()
            guard reply.code == 250 else { throw Self.failure(reply, "EHLO") }
            return reply.lines.dropFirst().map { $0.uppercased() }
        }

        mutating func authenticate(user: String, password: String, features: [String], preferred: AuthMechanism?) async throws {
            let offered = Set(features.first { $0.hasPrefix("AUTH ") || $0.hasPrefix("AUTH=") }?.dropFirst(5).split(separator: " ").map(String.init) ?? [])
            let mechanism = preferred ?? [.plain, .login].first { offered.contains($0.rawValue) }
            guard let mechanism, offered.contains(mechanism.rawValue) else {
                throw ConnectorError(code: "smtp_auth_unsupported", message: "the SMTP server offers no AUTH mechanism this client speaks",
                                     retryable: false)
            }
            func base64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
            switch mechanism {
            case .plain:
                try await command("AUTH PLAIN " + base64("\0\(user)\0\(password)"), expect: 235, "AUTH")
            case .login:
                // The prompts' text varies between servers: only their code counts.
                try await command("AUTH LOGIN", expect: 334, "AUTH")
                try await command(base64(user), expect: 334, "AUTH")
                try await command(base64(password), expect: 235, "AUTH")
            }
        }

        /// A reply as a failure: 4xx retried later, 5xx permanent. The server's text is kept out: it may echo
        /// addresses or credentials.
        static func failure(_ reply: Reply, _ step: String) -> ConnectorError {
            let retryable = (400..<500).contains(reply.code)
            return ConnectorError(code: "smtp_\(reply.code)", message: "the SMTP server answered \(reply.code) to \(step)", retryable: retryable)
        }
    }
}

/// Splits the stream into lines at LF, dropping the CR before it: SMTP replies are lines.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let end = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        var line = buffer.readSlice(length: end - buffer.readerIndex + 1)!
        line.moveWriterIndex(to: line.writerIndex - 1)
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        context.fireChannelRead(Self.wrapInboundOut(line))
        return .continue
    }
}

/// Completes its promise when the TLS handler in front of it reports the handshake done, and fails it with the
/// first error or the connection closing before that.
final class TLSHandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let promise: EventLoopPromise<Void>
    private var done = false

    init(_ promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted? = event as? TLSUserEvent, !done {
            done = true
            promise.succeed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(ChannelError.eof)
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(ChannelError.eof)
        }
    }
}
