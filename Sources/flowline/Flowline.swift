import ArgumentParser
import Connectors
import FlowCompiler
import FlowRuntime
import FlowVM
import Foundation

@main
struct Flowline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowline",
        abstract: "Flowline: a durable runtime for conversational automation flows.",
        subcommands: [
            Serve.self, Check.self, Compile.self, Disasm.self, Chat.self,
            Migrate.self, Publish.self, Send.self, Work.self, Conversations.self, MigrateConversations.self, Retry.self, Cancel.self, Bench.self,
        ]
    )
}

/// Shared by the commands: the compiler with every built-in connector action.
enum Shared {
    static let compiler = FlowCompiler(catalog: BuiltinActions.catalog)
    static let flowExtensions: Set<String> = ["yaml", "yml", "json"]

    static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read \(path)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func printErr(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    /// `.yaml`, `.yml` and `.json` files, except simulator mocks (`*.mock.yaml`).
    static func isFlowFile(_ path: String) -> Bool {
        let ext = (path as NSString).pathExtension.lowercased()
        let stem = ((path as NSString).deletingPathExtension as NSString).pathExtension.lowercased()
        return flowExtensions.contains(ext) && stem != "mock"
    }

    /// Files named directly, and flow files found under folders, sorted for stable output.
    static func expand(_ paths: [String]) throws -> [String] {
        var out: [String] = []
        for p in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                throw ValidationError("no such file or folder: \(p)")
            }
            if isDir.boolValue {
                let files = FileManager.default.enumerator(atPath: p)?.compactMap { $0 as? String } ?? []
                out += files.filter { isFlowFile($0) }.sorted()
                    .map { (p as NSString).appendingPathComponent($0) }
            } else {
                out.append(p)
            }
        }
        return out
    }

    /// Compiles a flow file or prints its diagnostics and exits 1.
    static func compileOrExit(_ path: String) throws -> Program {
        let result = compiler.compile(source: try read(path), file: path)
        for d in result.diagnostics { printErr(d.formatted) }
        guard let p = result.program else { throw ExitCode(1) }
        return p
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check flows and report every mistake with its line and column.")

    @Argument(help: "Flow files, or folders to search for .yaml, .yml and .json flows.")
    var paths: [String]

    @Flag(help: "Print the diagnostics as a JSON array on stdout.")
    var json = false

    func run() throws {
        var all: [Diagnostic] = []
        for file in try Shared.expand(paths) {
            guard let source = try? Shared.read(file) else {
                all.append(Diagnostic(.error, "unreadable", "cannot read the file", file: file, at: SourcePosition(line: 1, column: 1)))
                continue
            }
            all += Shared.compiler.compile(source: source, file: file).diagnostics
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(all), as: UTF8.self))
        } else {
            for d in all { Shared.printErr(d.formatted) }
        }
        let errors = all.filter { $0.severity == .error }.count
        if !json {
            Shared.printErr("\(errors) error(s), \(all.count - errors) warning(s)")
        }
        if errors > 0 { throw ExitCode(1) }
    }
}

struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Compile a flow to bytecode.")

    @Argument(help: "The flow file.")
    var file: String

    @Option(name: .shortAndLong, help: "Where to write the bytecode (default: FILE with .flowbc).")
    var output: String?

    func run() throws {
        let program = try Shared.compileOrExit(file)
        let out = output ?? ((file as NSString).deletingPathExtension + ".flowbc")
        guard FileManager.default.createFile(atPath: out, contents: Data(program.encoded())) else {
            throw ValidationError("cannot write \(out)")
        }
        print("\(out) \(program.hash)")
    }
}

struct Disasm: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a flow's bytecode with block labels and source lines.")

    @Argument(help: "A flow file or compiled bytecode.")
    var file: String

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let bytes = [UInt8](data)
        let program: Program
        if bytes.starts(with: Array("FLBC".utf8)) {
            do {
                program = try Program(decoding: bytes)
            } catch {
                Shared.printErr("\(file): \(error)")
                throw ExitCode(1)
            }
        } else {
            program = try Shared.compileOrExit(file)
        }
        print(Disassembler.listing(program), terminator: "")
    }
}

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk to a flow in the terminal.",
        discussion: """
        Each line of input is one message. Commands: /wait lets the pending timeout pass, /event NAME [JSON] \
        delivers an external event, /handback returns a handed-off chat to the flow. Lines starting with # are \
        ignored. Waits are fast-forwarded on a simulated clock and connector calls are simulated.
        """
    )

    @Argument(help: "The flow file.")
    var file: String

    @Option(help: "A YAML or JSON file mapping action names to simulated results.")
    var mock: String?

    @Option(help: "The simulated clock's start, ISO 8601.")
    var now = "2026-01-05T12:00:00Z"

    @Option(help: "The contact's name.")
    var name = "Ana"

    func run() throws {
        let program = try Shared.compileOrExit(file)
        var simulator = Simulator()
        if let mock {
            simulator = Simulator(mocks: try DataDocument.value(from: try Shared.read(mock), file: mock))
        }
        guard let start = DataDocument.timestamp(now) else { throw ValidationError("--now must be ISO 8601, like 2026-01-05T12:00:00Z") }
        var session = ChatSession(program: program, simulator: simulator, now: start,
                                  contact: ["id": "chat-contact", "name": .string(name), "phone": "+5511999990000"])
        func emit(_ lines: [String]) {
            for l in lines { print(l) }
        }
        emit(session.start())
        while !session.isFinished, let line = readLine(strippingNewline: true) {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text.hasPrefix("#") { continue }
            print("you: \(text)")
            emit(session.input(text))
        }
        if let waiting = session.waitingLine { print(waiting) }
        if case .failed = session.continuation.status { throw ExitCode(1) }
    }
}
