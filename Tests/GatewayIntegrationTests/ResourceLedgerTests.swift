import Foundation
import Testing
@testable import GatewayServer
import Provisioning

/// The ledger alone: GPU sharing and waiting for a release (queued admission), without kernels.
@Suite struct ResourceLedgerTests {
    private func ledger(gpus: Int, sharing: Int = 1, cpus: Double = 4) -> ResourceLedger {
        ResourceLedger(capacity: .init(cpus: cpus, memoryBytes: 1 << 30,
                                       gpus: (0..<gpus).map { GPUDevice(index: $0, uuid: "GPU-\($0)", name: "fake") }),
                       gpuSharing: sharing)
    }

    @Test func sharedDevicesGoToTheLeastUsedFirst() throws {
        let l = ledger(gpus: 2, sharing: 2)
        let picks = try (0..<4).map { i in try l.reserve(kernelID: "k\(i)", ResourceRequest(gpus: 1)).gpuIndices }
        #expect(picks == [[0], [1], [0], [1]])
        #expect(throws: GatewayError.self) { try l.reserve(kernelID: "k4", ResourceRequest(gpus: 1)) }
        l.release(kernelID: "k0")
        l.release(kernelID: "k1")
        #expect(try l.reserve(kernelID: "k5", ResourceRequest(gpus: 2)).gpuIndices == [0, 1])
    }

    @Test func exclusiveByDefault() throws {
        let l = ledger(gpus: 1)
        _ = try l.reserve(kernelID: "a", ResourceRequest(gpus: 1))
        #expect(throws: GatewayError.self) { try l.reserve(kernelID: "b", ResourceRequest(gpus: 1)) }
    }

    @Test func waitEndsOnARelease() async throws {
        let l = ledger(gpus: 0, cpus: 1)
        _ = try l.reserve(kernelID: "a", ResourceRequest(cpus: 1))
        let generation = l.releaseGeneration
        let began = ContinuousClock.now
        async let waited: Void = l.waitForRelease(after: generation, until: .now + .seconds(30))
        try await Task.sleep(for: .milliseconds(100))
        l.release(kernelID: "a")
        await waited
        #expect(ContinuousClock.now - began < .seconds(10))
    }

    @Test func aReleaseBeforeTheWaitIsNotMissed() async throws {
        let l = ledger(gpus: 0, cpus: 1)
        _ = try l.reserve(kernelID: "a", ResourceRequest(cpus: 1))
        let generation = l.releaseGeneration
        l.release(kernelID: "a")
        let began = ContinuousClock.now
        await l.waitForRelease(after: generation, until: .now + .seconds(30))
        #expect(ContinuousClock.now - began < .seconds(1))
    }

    @Test func waitEndsAtTheDeadline() async {
        let l = ledger(gpus: 0)
        let began = ContinuousClock.now
        await l.waitForRelease(after: l.releaseGeneration, until: .now + .milliseconds(200))
        #expect(ContinuousClock.now - began >= .milliseconds(200))
        await l.waitForRelease(after: l.releaseGeneration, until: .now - .seconds(1))  // already past: returns
    }
}
