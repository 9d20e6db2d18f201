import Testing
@testable import Provisioning

/// squeue output as Slurm 23.x prints it for `-h -t all -j <id> -o %T|%r|%B`.
@Suite struct SlurmQueueParsingTests {
    @Test func runningJobWithHost() {
        #expect(SlurmProvisioner.parseQueue(succeeded: true, output: "RUNNING|None|vm\n")
                == .known(state: "RUNNING", reason: nil, host: "vm"))
    }

    @Test func pendingJobKeepsReasonAndHasNoHost() {
        #expect(SlurmProvisioner.parseQueue(succeeded: true, output: "PENDING|Resources|n/a\n")
                == .known(state: "PENDING", reason: "Resources", host: nil))
    }

    @Test func emptyAnswerMeansPurged() {
        #expect(SlurmProvisioner.parseQueue(succeeded: true, output: "") == .gone)
    }

    @Test func invalidJobIDMeansGone() {
        #expect(SlurmProvisioner.parseQueue(succeeded: false, output: "slurm_load_jobs error: Invalid job id specified\n") == .gone)
    }

    @Test func controllerTimeoutSaysNothingAboutTheJob() {
        let q = SlurmProvisioner.parseQueue(succeeded: false,
                                            output: "slurm_load_jobs error: Socket timed out on send/recv operation\n")
        #expect(q == .unanswered("slurm_load_jobs error: Socket timed out on send/recv operation"))
    }
}
