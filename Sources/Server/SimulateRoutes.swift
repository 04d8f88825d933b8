import FlowEngine
import FlowCompiler
import FlowRuntime
import FlowVM
import Hummingbird

/// `POST /v1/flows/{name}/simulate`: runs the draft against scripted inputs with simulated connectors and a
/// simulated clock, and returns the transcript — the builder's preview. Nothing is stored or sent.
struct SimulateRoutes {
    let store: any FlowRecords
    let compiler: FlowCompiler
    let limiter: WorkLimiter

    func addRoutes(to group: RouterGroup<FlowlineRequestContext>) {
        group.post("flows/{name}/simulate", use: simulate)
    }

    /// Body: `{"inputs": ["hi", "/wait", ...], "mocks": {"stripe.checkout": {...}}, "now": "2026-01-05T12:00:00Z"}`;
    /// inputs use `flowline chat`'s commands.
    @Sendable func simulate(_ request: Request, context: FlowlineRequestContext) async throws -> Response {
        let caller = try context.requireCaller()
        let name = try context.parameters.require("name")
        guard let source = try await store.draft(tenant: caller.tenant, name: name) else { throw Problem(.notFound, "no flow \(name)") }
        let body = try await request.decode(SimulateBody.self, context: context)
        let inputs = body.inputs ?? []
        var start = Timestamp(milliseconds: 1_767_614_400_000)
        if let now = body.now {
            guard let t = DataDocument.timestamp(now) else { throw Problem(.badRequest, "now must be an ISO 8601 time") }
            start = t
        }
        // Compiling and running the turns is CPU work: under the limiter, off the request threads.
        let (transcript, finished, visited) = try await limiter.run(tenant: caller.tenant) { [compiler, start, inputs] in
            let compilation = compiler.compile(source: source, file: "\(name).yaml")
            guard let program = compilation.program else {
                throw Problem(.invalidFlow, "the draft has errors", extra: ["diagnostics": FlowRoutes.diagnostics(compilation.diagnostics)])
            }
            var session = ChatSession(program: program, simulator: Simulator(mocks: body.mocks ?? .null), now: start)
            var transcript = session.start()
            for input in inputs where !session.isFinished {
                transcript.append("you: \(input)")
                transcript += session.input(input)
            }
            if let waiting = session.waitingLine { transcript.append(waiting) }
            return (transcript, session.isFinished, session.visited)
        }
        return try Simulation(transcript: transcript, finished: finished, visited: visited, current: finished ? nil : visited.last).response()
    }

    /// `POST /v1/flows/{name}/simulate`.
    struct SimulateBody: JSONRequest {
        /// What the contact types, with `flowline chat`'s commands (`/wait`, `/tap`…).
        var inputs: [String]?
        /// Results by action name (`stripe.checkout`), or what a `webhook:` answers.
        var mocks: Value?
        /// The simulated clock's start, ISO 8601.
        var now: String?

        func validated() throws -> SimulateBody {
            guard (inputs?.count ?? 0) <= 200 else { throw Problem(.badRequest, "at most 200 inputs") }
            if let mocks, case .map = mocks {} else if mocks != nil { throw Problem(.badRequest, "mocks must map action names to results") }
            return self
        }
    }

    struct Simulation: JSONResponse {
        var transcript: [String]
        var finished: Bool
        /// The blocks run, in order (a block run again, in a loop, is there again).
        var visited: [String]
        /// The block the conversation waits in; none once it finished.
        var current: String?
    }
}
