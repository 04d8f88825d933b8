@testable import FlowVM
import Testing

/// Operators and the standard library, evaluated end to end (parse → lower → VM).
@Suite struct BuiltinTests {
    @Test(arguments: [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 % 4 - -1", "3"),
        ("7 / 2", "3.5"),
        ("'a' + 1", "a1"),
        ("1 < 2 and 2 < 3", "true"),
        ("1 > 2 or not (2 > 3)", "true"),
        ("not contact.name", "false"),
        ("contact.missing ?? 'fallback'", "fallback"),
        ("contact.name ?? 'fallback'", "Ana"),
        ("null ?? 1 + 1", "2"),
        ("'b' in ['a', 'b']", "true"),
        ("'na' in contact.name", "true"),
        ("'x' in contact.name", "false"),
        ("'name' in contact", "true"),
        ("'12345-678' matches '^[0-9]{5}-[0-9]{3}$'", "true"),
        ("'abc' matches '^[0-9]+$'", "false"),
        ("[1, 2, 3][1]", "2"),
        ("[1, 2, 3][-1]", "3"),
        ("[1, 2, 3][7] ?? 'none'", "none"),
        ("{a: 1, 'b c': 2}['b c']", "2"),
        ("1 == 1.0", "true"),
        ("'1' == 1", "false"),
        ("lower('ÁGUA')", "água"),
        ("upper('maçã')", "MAÇÃ"),
        ("trim('  x  ')", "x"),
        ("contains('banana', 'nan')", "true"),
        ("contains([1, 2], 3)", "false"),
        ("starts_with('+5511', '+55')", "true"),
        ("ends_with('file.pdf', '.pdf')", "true"),
        ("replace('a-b-c', '-', '')", "abc"),
        ("join(split('a,b,c', ','), ' | ')", "a | b | c"),
        ("len('ação')", "4"),
        ("len([1, 2])", "2"),
        ("string(3) + string(true)", "3true"),
        ("parse_number('15,5') + 1", "16.5"),
        ("parse_number('1.234,5', 'pt_BR')", "1234.5"),
        ("parse_number('abc') ?? 0", "0"),
        ("round(2.345, 2)", "2.35"),
        ("round(2.5)", "3"),
        ("format_number(1234.5, 2, 'pt_BR')", "1.234,50"),
        ("format_number(1234.5, 2, 'en_US')", "1,234.50"),
        ("abs(-3) + min(1, 2) + max(1, 2)", "6"),
        ("now()", "2026-01-05T12:00:00Z"),
        ("date_add(now(), '1d2h')", "2026-01-06T14:00:00Z"),
        ("date_add('2026-01-05T12:00:00Z', '-30m')", "2026-01-05T11:30:00Z"),
        ("parse_date('24/12/2026 08:30', 'dd/MM/yyyy HH:mm', 'America/Sao_Paulo')", "2026-12-24T11:30:00Z"),
        ("parse_date('2026-12-24')", "2026-12-24T00:00:00Z"),
        ("parse_date('not a date') ?? 'invalid'", "invalid"),
        ("format_date(now(), 'dd/MM/yyyy HH:mm', 'America/Sao_Paulo')", "05/01/2026 09:00"),
        ("format_date(now(), 'EEEE', 'UTC', 'pt_BR')", "segunda-feira"),
        ("first([3, 4]) + last([3, 4]) + count([3, 4])", "9"),
        ("first([]) ?? 'empty'", "empty"),
    ])
    func evaluates(_ expression: String, _ expected: String) throws {
        #expect(try evaluate(expression) == expected, "\(expression)")
    }

    @Test(arguments: ["contact.name - 1", "1 / (len(contact.name) - 3)", "contact.name.first", "-contact.name"])
    func runtimeErrorsAreDefinedErrors(_ expression: String) throws {
        #expect(try evaluate(expression) == "error: expression_error")
    }

    @Test func badRuntimeRegexIsAnError() throws {
        #expect(try evaluate("'x' matches contact.name + '['") == "error: expression_error")
    }

    @Test func hugeStringsAreRefused() throws {
        // Doubling a string 20 times would reach megabytes; the size limit stops it.
        var expression = "'0123456789abcdef'"
        for _ in 0..<14 { expression = "replace(\(expression), 'f', 'ff0123456789abcdef')" }
        #expect(try evaluate(expression) == "error: value_too_large")
    }

    @Test func dateAddRejectsGarbageAtRunTime() throws {
        #expect(try evaluate("date_add(contact.name, '1d')") == "error: expression_error")
    }
}
