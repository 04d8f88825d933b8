import FlowVM

/// Compiles flows: parse → located AST → checks → lowering → bytecode.
public struct FlowCompiler: Sendable {
    /// The connector actions flows may use; their schemas check `with:`.
    public var catalog: ActionCatalog

    public init(catalog: ActionCatalog) {
        self.catalog = catalog
    }

    /// What compiling one source produced: every diagnostic, and the program when there were no errors.
    public struct Compilation: Sendable {
        public var program: Program?
        /// Sorted by position.
        public var diagnostics: [Diagnostic]
        public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }
    }

    /// Compiles YAML or JSON source; `file` is the name diagnostics and the program carry.
    public func compile(source: String, file: String) -> Compilation {
        let root: SourceNode
        switch SourceNode.parse(source) {
        case .failure(let e):
            return Compilation(program: nil, diagnostics: [Diagnostic(.error, e.code ?? "syntax", e.message, file: file, at: e.location)])
        case .success(nil):
            return Compilation(program: nil, diagnostics: [
                Diagnostic(.error, "empty-flow", "the file is empty", file: file, at: SourcePosition(line: 1, column: 1)),
            ])
        case .success(let node?):
            root = node
        }

        var parser = FlowParser(file: file)
        guard let ast = parser.parse(root) else {
            return Compilation(program: nil, diagnostics: sorted(parser.diagnostics).map { located($0, in: root) })
        }
        var checker = Checker(file: file, ast: ast, catalog: catalog)
        checker.run(priorErrors: parser.diagnostics.contains { $0.severity == .error })
        let diagnostics = sorted(parser.diagnostics + checker.diagnostics).map { located($0, in: root) }
        guard !diagnostics.contains(where: { $0.severity == .error }) else {
            return Compilation(program: nil, diagnostics: diagnostics)
        }
        let names = checker.types.keys.filter { !Program.builtinVariables.contains($0) }
        var lowering = Lowering(ast: ast, file: file, variableNames: Array(names))
        return Compilation(program: lowering.lower(), diagnostics: diagnostics)
    }

    /// Compiles and throws `FlowCompilerError` when the flow has errors.
    public func program(source: String, file: String) throws -> Program {
        let c = compile(source: source, file: file)
        guard let p = c.program else { throw FlowCompilerError(.invalidFlow, diagnostics: c.diagnostics) }
        return p
    }

    /// Codes reported at the map that lacks something (`missing-action` is reported at its block's key).
    static let aboutAMap: Set<String> = ["missing-key", "missing-start", "missing-parameter"]

    /// Adds the document path of the diagnostic's position.
    private func located(_ d: Diagnostic, in root: SourceNode) -> Diagnostic {
        var d = d
        d.path = root.pointer(to: SourcePosition(line: d.line, column: d.column), atContainer: Self.aboutAMap.contains(d.code))
        return d
    }

    private func sorted(_ d: [Diagnostic]) -> [Diagnostic] {
        d.sorted { ($0.line, $0.column, $0.code) < ($1.line, $1.column, $1.code) }
    }
}
