import FlowEngine
import Synchronization
import Testing

@Suite struct GroupCommitTests {
    final class Recorder: Sendable {
        let batches = Mutex<[[Int]]>([])
    }

    @Test func concurrentCallersShareCommitsAndGetTheirOwnResults() async throws {
        let recorder = Recorder()
        let commit = GroupCommit<Int, Int>(maxBatch: 8, maxLeaders: 1, batch: { items in
            recorder.batches.withLock { $0.append(items) }
            try await Task.sleep(for: .milliseconds(20))  // a commit takes time; others queue meanwhile
            return items.map { $0 * 10 }
        }, single: { $0 * 10 })
        let results = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for i in 0..<40 { group.addTask { (i, try await commit.submit(i)) } }
            var all: [Int: Int] = [:]
            for try await (i, r) in group { all[i] = r }
            return all
        }
        #expect(results.count == 40)
        #expect(results.allSatisfy { $0.value == $0.key * 10 })
        let batches = recorder.batches.withLock { $0 }
        #expect(batches.flatMap { $0 }.sorted() == Array(0..<40), "every item committed exactly once")
        #expect(batches.allSatisfy { $0.count <= 8 })
        #expect(batches.count < 40, "callers that arrive during a commit share the next one (\(batches.count) commits)")
    }

    @Test func aFailedBatchFallsBackToOneByOneSoOnlyTheBadItemFails() async throws {
        struct Bad: Error {}
        let singles = Mutex<[Int]>([])
        let commit = GroupCommit<Int, Int>(maxBatch: 16, maxLeaders: 1, batch: { items in
            try await Task.sleep(for: .milliseconds(10))
            if items.contains(13) { throw Bad() }
            return items
        }, single: { item in
            singles.withLock { $0.append(item) }
            if item == 13 { throw Bad() }
            return item
        })
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for i in 0..<30 { group.addTask { (i, (try? await commit.submit(i)) == i) } }
            var all: [Int: Bool] = [:]
            for await (i, ok) in group { all[i] = ok }
            return all
        }
        #expect(outcomes[13] == false)
        #expect(outcomes.filter { !$0.value }.count == 1, "only the bad item fails")
        #expect(singles.withLock { $0 }.contains(13))
    }
}
