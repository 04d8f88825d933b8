@testable import FlowCompiler
import Testing

@Suite struct ExpressionParserTests {
    let here = SourcePosition(line: 3, column: 10)

    func parse(_ s: String) throws -> Expr { try ExpressionParser.parse(s, at: here) }

    @Test func precedenceGroupsAsDocumented() throws {
        guard case .or(let left, let right, _) = try parse("a and b or not c == d") else {
            Issue.record("or binds loosest")
            return
        }
        guard case .and = left, case .unary(.not, .binary(.equal, _, _, _), _) = right else {
            Issue.record("and above or, comparison inside not")
            return
        }
        guard case .binary(.equal, .coalesce, _, _) = try parse("x ?? 1 == 2") else {
            Issue.record("?? binds tighter than ==")
            return
        }
        guard case .binary(.add, _, .binary(.multiply, _, _, _), _) = try parse("1 + 2 * 3") else {
            Issue.record("* binds tighter than +")
            return
        }
    }

    @Test func errorsCarryTheirColumn() {
        do {
            _ = try parse("name == 'x' and (age > 3")
            Issue.record("should fail")
        } catch let error as ExpressionError {
            #expect(error.location == SourcePosition(line: 3, column: 34))
            #expect(error.message.contains("')'"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func templatesSplitIntoTextAndExpressions() throws {
        let t = try TemplateParser.parse("Hi {{ name }}!", at: here)
        #expect(t.parts.count == 3)
        #expect(t.constantText == nil)
        #expect(try TemplateParser.parse("plain", at: here).constantText == "plain")
        #expect(throws: ExpressionError.self) { try TemplateParser.parse("Bye {{ x", at: here) }
    }

    @Test func templateHolesAreLocatedAcrossLines() {
        do {
            _ = try TemplateParser.parse("Hi {{ name }}!\nBye {{ 1 + }}", at: here)
            Issue.record("should fail")
        } catch let error as ExpressionError {
            #expect(error.location.line == 4)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func keywordsAreNotVariables() {
        #expect(throws: ExpressionError.self) { try parse("and") }
        #expect(throws: ExpressionError.self) { try parse("a !") }
        #expect(throws: ExpressionError.self) { try parse("'open") }
    }
}
