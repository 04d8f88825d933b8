@testable import FlowVM
import Testing

@Suite struct ValueTests {
    @Test func jsonParsesAndPrintsCanonically() throws {
        let v = try #require(Value(json: #"{"b": [1, 2.5, true, null], "a": "x\"\u00e9\ud83d\ude00"}"#))
        #expect(v == ["a": "x\"é😀", "b": [1, 2.5, true, .null]])
        #expect(v.jsonText == #"{"a":"x\"é😀","b":[1,2.5,true,null]}"#)
        #expect(Value(json: v.jsonText) == v)
    }

    @Test func invalidJSONIsNil() {
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "[1] x"] {
            #expect(Value(json: bad) == nil, "\(bad)")
        }
    }

    @Test func textAndTruthiness() {
        #expect(Value.number(3).text == "3")
        #expect(Value.number(3.5).text == "3.5")
        #expect(Value.null.text == "")
        #expect(!Value.string("").isTruthy && Value.string("0").isTruthy)
        #expect(!Value.number(0).isTruthy && !Value.list([]).isTruthy && Value.map(["a": 1]).isTruthy)
    }

    @Test func durations() {
        #expect(DurationParser.seconds("30m") == 1800)
        #expect(DurationParser.seconds("1h30m") == 5400)
        #expect(DurationParser.seconds("2d") == 172_800)
        #expect(DurationParser.seconds("1w") == 604_800)
        for bad in ["", "10", "m", "3 days", "1x", "99999999999999999999w"] { #expect(DurationParser.seconds(bad) == nil, "\(bad)") }
    }

    @Test func timestampsPrintAsISO8601() {
        #expect(Timestamp(milliseconds: 0).iso8601 == "1970-01-01T00:00:00Z")
        #expect(Timestamp(milliseconds: 1_767_614_400_250).iso8601 == "2026-01-05T12:00:00.250Z")
        #expect(Timestamp(milliseconds: -1000).iso8601 == "1969-12-31T23:59:59Z")
    }
}
