import Benchmark
import Connectors
import FlowCompiler
import FlowVM
import Yams

/// Compiler and VM micro-benchmarks. `swift package benchmark` (in `Benchmarks/`) runs them in release mode;
/// BENCHMARKS.md records the figures and how they were taken.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
        warmupIterations: 3, maxDuration: .seconds(5), maxIterations: 2_000)

    // 1. Compile, beside the YAML parse of the same text: compile = parse + located AST + checks + lowering.
    let compiler = FlowCompiler(catalog: BuiltinActions.catalog)
    for blocks in [10, 100, 1_000, 10_000] {
        let yaml = FlowGenerator.yaml(blocks: blocks, asks: true)
        precondition(!compiler.compile(source: yaml, file: "generated.yaml").hasErrors, "the generated flow must compile")
        Benchmark("parse YAML, \(blocks) blocks") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(try Yams.compose(yaml: yaml)) }
        }
        Benchmark("compile, \(blocks) blocks") { benchmark in
            for _ in benchmark.scaledIterations { blackHole(compiler.compile(source: yaml, file: "generated.yaml")) }
        }
    }

    // 2. VM. Instructions per second: one turn straight through 1,000 compute blocks (sets, conditions,
    // templates), reporting the instructions it executes. Turns per second: a reply loop, one message per turn.
    let straight = try! compiler.program(source: FlowGenerator.yaml(blocks: 1_000, asks: false), file: "generated.yaml")
    let vm = VM(program: straight, budget: .max)
    let now = Timestamp(milliseconds: 1_800_000_000_000)
    let instructions = vm.start(VM.StartContext(), now: now).instructions
    precondition(instructions > 5_000, "the straight flow runs to its end in one turn")
    Benchmark("VM: one turn of \(instructions) instructions",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .one)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(vm.start(VM.StartContext(), now: now)) }
    }

    let loop = VM(program: try! compiler.program(source: FlowGenerator.chatLoop, file: "loop.yaml"))
    let waiting = loop.start(VM.StartContext(), now: now).continuation
    let replies = (0..<1_000).map { i -> Event in .message(InboundMessage(text: i % 5 == 0 ? "what?" : "\(100_000 + i)")) }
    Benchmark("VM: reply turns", configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .kilo)) { benchmark in
        var c = waiting
        for i in benchmark.scaledIterations {
            let r = try loop.step(c, event: replies[i % replies.count], now: now)
            c = r.continuation
            blackHole(r)
        }
    }

    // The continuation's binary form is what every durable turn writes and reads back.
    let continuation = try! loop.step(waiting, event: replies[1], now: now).continuation
    Benchmark("continuation encode + decode", configuration: .init(scalingFactor: .kilo)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try Continuation(decoding: continuation.encoded())) }
    }
}
