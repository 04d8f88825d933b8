import AsyncHTTPClient
import FlowCompiler
import FlowEngine
import FlowRuntime
import FlowStore
import FlowVM
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Metrics
import Prometheus

/// How `flowline serve` is set up.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    public var database = "sqlite:./flowline.db"
    /// Fixes the bootstrap admin key instead of generating one (`FLOWLINE_ADMIN_KEY`).
    public var adminKey: String?
    /// The first admin, created on a database with no people (`FLOWLINE_ADMIN_EMAIL`, `FLOWLINE_ADMIN_PASSWORD`);
    /// without them, `serve` prints a one-time setup link instead.
    public var adminEmail: String?
    public var adminPassword: String?
    /// Flows published to the demo tenant at start-up.
    public var flowsDirectory: String? = "flows"
    public var demoTenant = "demo"
    /// Fixes the platform key (creates tenants) instead of generating one (`FLOWLINE_PLATFORM_KEY`).
    public var platformKey: String?
    /// Seals channel secrets at rest (`FLOWLINE_SECRET_KEY`, 32 bytes in base64).
    public var secretKey: String?
    /// Custom connectors (docs/connectors.md): their actions join the catalog and the compiler's checks.
    public var connectors: [any Connector] = []
    /// Custom channel kinds (docs/connectors.md), after the built-in ones.
    public var channels: [any ChannelDriver] = []
    /// Signs every `webhook:` request when set (`FLOWLINE_WEBHOOK_SIGNING_SECRET`).
    public var webhookSigningSecret: String?
    /// Where the outside world reaches this server (`FLOWLINE_PUBLIC_URL`): the base of resume links handed to n8n
    /// and other systems. `http://host:port` when unset.
    public var publicURL: String?
    /// The OpenID Connect providers people may sign in with (`FLOWLINE_OIDC_PROVIDERS`, README.md).
    public var singleSignOn: [OIDCProvider] = []
    /// Self-service sign-up (`FLOWLINE_SIGNUP=open`), off by default.
    public var signUp = false
    /// Seconds a claimed delivery stays with this process before another may attempt it again
    /// (`FLOWLINE_DELIVERY_LEASE`, 60 by default): after a crash, the wait before a send is retried. A connector call
    /// gets at most half of it (and never more than 30 s), so a slow call is never attempted twice at once.
    public var deliveryLease: Int64 = 60
    /// Seconds a campaign's batch stays with this process (`FLOWLINE_CAMPAIGN_LEASE`, 30 by default): after a crash,
    /// the wait before another process goes on with the campaign.
    public var campaignLease: Int64 = 30

    public init() {}

    /// What the engine's side shares with `flowline work`: everything but HTTP and auth.
    public var runtime: Runtime.Configuration {
        var c = Runtime.Configuration(database: database, secretKey: secretKey, publicURL: publicURL ?? "http://\(host):\(port)",
                                      webhookSigningSecret: webhookSigningSecret, deliveryLease: deliveryLease, connectors: connectors,
                                      channels: channels)
        c.campaignLease = campaignLease
        return c
    }

    /// How people sign in, as the router needs it.
    var people: PeopleSettings {
        PeopleSettings(firstTenant: demoTenant, publicURL: publicURL ?? (port == 0 ? nil : "http://\(host):\(port)"), singleSignOn: singleSignOn,
                       signUp: signUp)
    }

    /// Checks what can be checked before anything is started, so a mistake in the environment is one clear line.
    public func validate() throws(StartupError) {
        for (name, key) in [("FLOWLINE_ADMIN_KEY", adminKey), ("FLOWLINE_PLATFORM_KEY", platformKey)] {
            if let key, !APIKeys.isWellFormed(key) {
                throw StartupError("\(name) must look like fl_<prefix>_<secret>: letters and digits, a secret of at least 16")
            }
        }
        if let secretKey, (try? SecretBox(base64: secretKey)) == nil {
            throw StartupError("FLOWLINE_SECRET_KEY must be 32 bytes in base64 (openssl rand -base64 32)")
        }
        guard (0...65535).contains(port) else { throw StartupError("the port must be from 0 (any free port) to 65535, not \(port)") }
        if let publicURL, URLComponents(string: publicURL)?.host == nil {
            throw StartupError("FLOWLINE_PUBLIC_URL must be an absolute URL such as https://flows.example.com")
        }
        if let problem = singleSignOn.lazy.compactMap({ $0.problem() }).first { throw StartupError(problem) }
        if !singleSignOn.isEmpty {
            // The provider sends people back to the public URL: it must be known, and https.
            guard let url = people.publicURL else { throw StartupError("single sign-on needs FLOWLINE_PUBLIC_URL when the port is chosen at start") }
            guard SingleSignOn.trusted(url) else { throw StartupError("single sign-on needs FLOWLINE_PUBLIC_URL to be https (http only on loopback), not \(url)") }
        }
        guard (2...3600).contains(campaignLease) else {
            throw StartupError("the campaign lease must be from 2 to 3600 seconds, not \(campaignLease)")
        }
        guard (2...86_400).contains(deliveryLease) else {
            throw StartupError("the delivery lease must be from 2 to 86400 seconds, not \(deliveryLease)")
        }
        guard database.hasPrefix("sqlite:") || database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") else {
            throw StartupError("the database must be sqlite:PATH or postgres://user:password@host:port/db")
        }
    }
}

/// How people sign in: the tenant the first admin administers, where the server is reached (cookies are `Secure`
/// on https; a provider sends people back to `<publicURL>/v1/sso/{provider}/callback`), and the single sign-on
/// providers.
public struct PeopleSettings: Sendable {
    public var firstTenant: String
    /// Where people reach the server; nil when not known before it listens (`--port 0` without
    /// `FLOWLINE_PUBLIC_URL`): then links are answered as paths, and nothing is emailed.
    public var publicURL: String?
    public var singleSignOn: [OIDCProvider]
    /// Anyone may sign up for a tenant of their own (`FLOWLINE_SIGNUP=open`); the first tenant's `email` channel
    /// sends the links.
    public var signUp: Bool

    public init(firstTenant: String = "demo", publicURL: String? = "http://127.0.0.1:8080", singleSignOn: [OIDCProvider] = [],
                signUp: Bool = false) {
        self.firstTenant = firstTenant
        self.publicURL = publicURL
        self.singleSignOn = singleSignOn
        self.signUp = signUp
    }

    var secureCookies: Bool { publicURL?.hasPrefix("https://") == true }
}

/// The HTTP API: builds the router and the application, and bootstraps a fresh database.
public enum FlowlineServer {
    /// The router with every route collection; used by `serve` and by router tests.
    /// - Parameter channels: the channel kinds; the built-in ones on `store` when nil.
    /// - Parameters:
    ///   - people: how people sign in (the first admin's tenant, the public URL, single sign-on providers).
    public static func router(store: SQLStore, engine: Engine, catalog: ActionCatalog, secrets: SecretBox?, channels: Channels? = nil,
                              metrics: PrometheusCollectorRegistry? = nil, people: PeopleSettings = PeopleSettings()) -> Router<FlowlineRequestContext> {
        router(store: store, engine: engine, catalog: catalog, secrets: secrets, channels: channels, metrics: metrics, limiter: WorkLimiter(),
               people: people)
    }

    static func router(store: SQLStore, engine: Engine, catalog: ActionCatalog, secrets: SecretBox?, channels: Channels? = nil,
                       metrics: PrometheusCollectorRegistry?, limiter: WorkLimiter, people: PeopleSettings = PeopleSettings())
        -> Router<FlowlineRequestContext>
    {
        let channels = channels ?? Channels(store: store, secrets: secrets)
        let router = Router(context: FlowlineRequestContext.self)
        let table = RouteTable()
        // Every request gets one log line with its id (hb.request.id), method, path and status; the auth middleware
        // adds the tenant and key id, and routes that feed a conversation log its id.
        router.add(middleware: RequestLogMiddleware())
        router.add(middleware: ProblemMiddleware(routes: table))
        router.add(middleware: MetricsMiddleware())
        if let metrics {
            router.get("metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                         body: .init(byteBuffer: ByteBuffer(bytes: metrics.emitToBuffer())))
            }
        }
        router.get("health") { _, _ in json(["status": "ok"]) }
        router.get("ready") { _, _ in
            do {
                try await store.ping()
                return json(["status": "ready"])
            } catch {
                throw Problem(.unavailable, "the database is not reachable")
            }
        }
        let document = openAPIDocument(channels: channels)
        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: document)))
        }
        WebhookRoutes(engine: engine, channels: channels).addRoutes(to: router)
        StudioRoutes().addRoutes(to: router)
        PeopleRoutes(store: store, engine: engine, firstTenant: people.firstTenant, secureCookies: people.secureCookies).addRoutes(to: router)
        SSORoutes(store: store, engine: engine, sso: SingleSignOn(providers: people.singleSignOn), publicURL: people.publicURL ?? "",
                  secureCookies: people.secureCookies).addRoutes(to: router)
        let v1 = router.group("v1").add(middleware: AuthMiddleware(store: store, now: { engine.now }))
        let compiler = FlowCompiler(catalog: catalog)
        FlowRoutes(store: store, engine: engine, compiler: compiler, limiter: limiter).addRoutes(to: v1)
        ConversationRoutes(store: store, engine: engine).addRoutes(to: v1)
        ChannelRoutes(store: store, engine: engine, secrets: secrets, channels: channels).addRoutes(to: v1)
        KeyRoutes(store: store, engine: engine).addRoutes(to: v1)
        CatalogRoutes(catalog: catalog).addRoutes(to: v1)
        SimulateRoutes(store: store, compiler: compiler, limiter: limiter).addRoutes(to: v1)
        InboxRoutes(store: store, engine: engine).addRoutes(to: v1)
        EventRoutes(store: store).addRoutes(to: v1)
        TenantRoutes(store: store, engine: engine).addRoutes(to: v1)
        AuditRoutes(store: store).addRoutes(to: v1)
        ContactRoutes(store: store, engine: engine).addRoutes(to: v1)
        let starts = StartRoutes(store: store, engine: engine, channels: channels)
        starts.addRoutes(to: v1)
        HookRoutes(store: store, engine: engine, secrets: secrets, starts: starts).addRoutes(to: v1, public: router)
        SettingsRoutes(store: store, engine: engine).addRoutes(to: v1)
        SegmentRoutes(store: store, engine: engine).addRoutes(to: v1)
        CampaignRoutes(store: store, engine: engine, channels: channels).addRoutes(to: v1)
        let mail = PeopleMail(store: store, engine: engine, secrets: secrets, publicURL: people.publicURL)
        MemberRoutes(store: store, engine: engine, mail: mail).addRoutes(to: v1, public: router)
        SignUpRoutes(store: store, engine: engine, mail: mail, operatorTenant: people.firstTenant, open: people.signUp,
                     secureCookies: people.secureCookies).addRoutes(to: router)
        table.load(router.routes.map { ($0.path.description, $0.method.rawValue) })
        return router
    }

    /// Creates the demo tenant, its first admin key and publishes `flowsDirectory` on a fresh database.
    /// Returns the admin key when one was created (it is shown once).
    public static func bootstrap(store: any APIStore, engine: Engine, configuration: ServerConfiguration, logger: Logger)
        async throws -> (admin: String, platform: String)?
    {
        let catalog = Runtime.catalog(engine.connectors)
        try await store.migrate()
        let tenant = configuration.demoTenant
        var createdKey: (String, String)?
        if try await !store.tenantExists(tenant) {
            try await store.ensureTenant(id: tenant, name: "Demo")
            try await store.ensureTenant(id: "_platform", name: "Platform")
            let admin = try await APIKeys.create(store: store, tenant: tenant, role: .admin, label: "bootstrap",
                                                 fixed: configuration.adminKey).key
            let platform = try await APIKeys.create(store: store, tenant: "_platform", role: .platform, label: "bootstrap",
                                                    fixed: configuration.platformKey).key
            createdKey = (admin, platform)
        } else if let fixed = configuration.adminKey, let prefix = fixed.split(separator: "_").dropFirst().first,
                  try await store.apiKey(prefix: String(prefix)) == nil {
            _ = try await APIKeys.create(store: store, tenant: tenant, role: .admin, label: "FLOWLINE_ADMIN_KEY", fixed: fixed)
        }
        try await firstAdmin(store: store, configuration: configuration, at: engine.now, logger: logger)
        if let dir = configuration.flowsDirectory, FileManager.default.fileExists(atPath: dir) {
            let compiler = FlowCompiler(catalog: catalog)
            let published = try await store.publishedFlows(tenant: tenant)
            let files = (try FileManager.default.contentsOfDirectory(atPath: dir)).filter {
                ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json")) && !$0.contains(".mock.")
            }.sorted()
            for file in files {
                let path = (dir as NSString).appendingPathComponent(file)
                guard let source = try? String(contentsOfFile: path, encoding: .utf8),
                      let program = compiler.compile(source: source, file: path).program else {
                    logger.warning("example flow has errors; not published", metadata: ["file": "\(path)"])
                    continue
                }
                if published.first(where: { $0.name == program.name })?.programHash == program.hash { continue }
                _ = try await store.saveDraft(tenant: tenant, name: program.name, source: source, at: engine.now)
                let version = try await engine.publish(tenant: tenant, program: program, source: source)
                logger.info("published example flow", metadata: ["flow": "\(program.name)", "version": "\(version)"])
            }
        }
        return createdKey
    }

    /// On a database with no people: the first admin from the environment, or a one-time setup link, printed (like
    /// Jenkins' initial admin password), that `POST /v1/setup` spends.
    static func firstAdmin(store: any APIStore, configuration: ServerConfiguration, at now: Timestamp, logger: Logger) async throws {
        guard try await store.userCount() == 0 else { return }
        let tenant = configuration.demoTenant
        if let email = configuration.adminEmail, let password = configuration.adminPassword {
            do {
                guard let user = try await People.createAdmin(store: store, email: email, password: password, name: nil, tenant: tenant, at: now) else {
                    return
                }
                try await store.audit(AuditEntry(tenant: tenant, actor: user.id, action: "user.setup", subject: user.id, at: now))
                logger.notice("created the first admin from FLOWLINE_ADMIN_EMAIL", metadata: ["user": "\(user.id)"])
            } catch let p as Problem {
                // Never the password itself: what is wrong with it.
                throw StartupError("FLOWLINE_ADMIN_EMAIL and FLOWLINE_ADMIN_PASSWORD: \(p.detail)")
            }
            return
        }
        let token = APIKeys.random(32)
        try await store.insertLink(LinkRecord(hash: APIKeys.hash(token), kind: "setup"), at: now)
        // With --port 0 and no public URL, the address is known only once it listens (printed next): the path, then.
        let base = configuration.people.publicURL ?? "http://\(configuration.host):<the port it listens on>"
        say("""
            No one can sign in yet. Set up the first admin of tenant '\(tenant)' (a one-time link, valid until used):
              \(base)/setup#\(token)
            or: curl -X POST \(base)/v1/setup -d '{"token": "\(token)", "email": "you@example.com", "password": "…"}'
            """)
    }

    /// Runs the server and the engine until SIGTERM or SIGINT; in-flight turns finish before it exits.
    public static func run(_ configuration: ServerConfiguration, logger: Logger) async throws {
        // Everything that can be refused is refused before anything is started; what is started is shut down on
        // every path out, so a failure is an error to print, never a crash in a deinit.
        try configuration.validate()
        // Before any metric is made: one made earlier would stay bound to the no-op backend.
        let metrics = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))
        let runtime = try await Runtime.start(configuration.runtime, lifecycle: .service, logger: logger)
        do {
            try await serve(configuration, runtime: runtime, metrics: metrics, logger: logger)
        } catch {
            await runtime.shutdown()
            throw error
        }
        await runtime.shutdown()
    }

    /// One service group runs the store's pool, the engine, the backlog sampler and the HTTP server; before the
    /// server binds, the database is reached and bootstrapped, and only then do the engine and the sampler start.
    /// A graceful stop (SIGTERM, SIGINT) stops them in reverse: the server, the engine's turns in flight, the pool.
    private static func serve(_ configuration: ServerConfiguration, runtime: Runtime, metrics: PrometheusCollectorRegistry,
                              logger: Logger) async throws {
        let (store, engine, secrets) = (runtime.store, runtime.engine, runtime.secrets)
        let ready = Gate()
        var app = Application(
            router: router(store: store, engine: engine, catalog: runtime.catalog, secrets: secrets, channels: runtime.channels,
                           metrics: metrics, limiter: WorkLimiter(), people: configuration.people),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "flowline"),
            services: runtime.services(ready: ready) + [BacklogSampler(store: store, engine: engine, ready: ready)],
            onServerRunning: { channel in
                // The port bound, which differs from the one asked for with --port 0 (any free port).
                say("Flowline listening on http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port) (database \(Runtime.redacted(configuration.database)))")
            },
            logger: logger)
        app.beforeServerStarts {
            try await runtime.prepare()
            let keys: (admin: String, platform: String)?
            do {
                keys = try await bootstrap(store: store, engine: engine, configuration: configuration, logger: logger)
            } catch let e as StartupError {
                throw e
            } catch {
                throw StartupError("cannot prepare the database: \(String(describing: error).prefix(300))")
            }
            if let keys {
                say("""
                    Admin API key for tenant '\(configuration.demoTenant)' (shown once, store it now):
                      \(keys.admin)
                    Platform API key, which creates tenants (shown once):
                      \(keys.platform)
                    """)
            }
            ready.open()
        }
        try await app.runService()
    }

    /// Prints to stdout unbuffered, so a supervisor or a pipe sees it at once.
    static func say(_ s: String) {
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }

}

/// The hand-maintained OpenAPI 3.1 document (Sources/Server/openapi.json); a test keeps it true to the router. What
/// the channel kinds declare is filled in when it is served (`openAPIDocument(channels:)`).
public let openAPIDocument: [UInt8] = {
    guard let url = Bundle.module.url(forResource: "openapi", withExtension: "json"), let data = try? Data(contentsOf: url) else { return [] }
    return [UInt8](data)
}()

/// The document as served: the body of `POST /v1/channels` and the kinds of `/webhooks/{kind}/{id}` come from the
/// channel drivers' declarations, so a new kind is documented by declaring its fields.
public func openAPIDocument(channels: Channels) -> [UInt8] {
    guard case .map(var document) = Value(json: String(decoding: openAPIDocument, as: UTF8.self)) ?? .null else { return openAPIDocument }
    func edit(_ value: inout Value, _ path: ArraySlice<String>, _ change: (inout Value) -> Void) {
        guard let key = path.first else { return change(&value) }
        guard case .map(var m) = value, var next = m[key] else { return }
        edit(&next, path.dropFirst(), change)
        m[key] = next
        value = .map(m)
    }
    var root = Value.map(document)
    edit(&root, ["paths", "/v1/channels", "post", "requestBody", "content", "application/json", "schema"]) { schema in
        guard case .map(var s) = schema, case .map(var properties) = s["properties"] else { return }
        properties["kind"] = ["type": "string", "enum": .list(channels.drivers.map { .string($0.kind) })]
        var summaries: [String: [String]] = [:]
        for d in channels.drivers { for f in d.fields { summaries[f.name, default: []].append("\(d.kind): \(f.summary)") } }
        for (name, field) in channels.fieldsByName {
            guard case .map(var fs) = field.schema else { continue }
            fs["description"] = .string(summaries[name, default: []].joined(separator: "; ") + (field.isSecret ? " (write-only, sealed at rest)" : ""))
            properties[name] = .map(fs)
        }
        s["properties"] = .map(properties)
        // A kind's required fields must be there and not null (null is taken as absent).
        s["allOf"] = .list(channels.drivers.filter { $0.fields.contains(where: \.required) }.map { d in
            let required = d.fields.filter(\.required)
            var present: [String: Value] = [:]
            for f in required { present[f.name] = ["not": ["type": "null"]] }
            return ["if": ["properties": ["kind": ["const": .string(d.kind)]], "required": ["kind"]],
                    "then": ["required": .list(required.map { .string($0.name) }), "properties": .map(present)]]
        })
        schema = .map(s)
    }
    // An edit names any field of the channel's kind, each as its form says, or null to remove it.
    edit(&root, ["paths", "/v1/channels/{id}", "patch", "requestBody", "content", "application/json", "schema"]) { schema in
        guard case .map(var s) = schema, case .map(var properties) = s["properties"] else { return }
        for (name, field) in channels.fieldsByName {
            guard case .map(var fs) = field.schema else { continue }
            if case .string(let type)? = fs["type"] { fs["type"] = [.string(type), "null"] }
            fs["description"] = .string(channels.drivers.filter { $0.fields.contains { $0.name == name } }.map(\.kind).joined(separator: ", ")
                                        + (field.isSecret ? " (write-only, sealed at rest)" : ""))
            properties[name] = .map(fs)
        }
        s["properties"] = .map(properties)
        schema = .map(s)
    }
    for method in ["get", "post"] {
        let webhookKinds = Value.list(channels.drivers.filter { $0.receivesWebhooks && $0.webhookMethods.contains(method.uppercased()) }
            .map { .string($0.kind) })
        edit(&root, ["paths", "/webhooks/{kind}/{id}", method, "parameters"]) { parameters in
            guard case .list(var list) = parameters else { return }
            for i in list.indices where list[i]["name"] == "kind" {
                if case .map(var p) = list[i] { p["schema"] = ["type": "string", "enum": webhookKinds]; list[i] = .map(p) }
            }
            parameters = .list(list)
        }
    }
    if case .map(let m) = root { document = m }
    return Array(Value.map(document).jsonText.utf8)
}

/// Samples the backlog gauges every few seconds (they read the database, so they count every process's work), once
/// the database is ready.
struct BacklogSampler: Service {
    let store: any StoreHealth
    let engine: Engine
    let ready: Gate
    func run() async throws {
        guard await ready.wait() else { return }
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await sample()
                try? await Task.sleep(for: .seconds(5))
            }
        }
    }

    func sample() async throws {
        let (events, deliveries) = try await store.backlog(now: engine.now)
        let (due, dead) = try await store.dueAndDead(now: engine.now)
        EngineMetrics.backlog.record(events)
        EngineMetrics.outboxPending.record(deliveries)
        EngineMetrics.turnsDue.record(due)
        EngineMetrics.deadLetters.record(dead)
    }
}

