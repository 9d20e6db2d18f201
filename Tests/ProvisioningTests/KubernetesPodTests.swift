import Foundation
import JupyterProtocol
import Testing
@testable import Provisioning

@Suite("Kernel pod manifests")
struct KernelPodTemplateTests {
    static let template = """
        apiVersion: v1
        kind: Pod
        metadata:
          name: ignored
          annotations:
            owner: "{{ kernel_username }}"
            plain: {{ kernel_username }}
        spec:
          securityContext:
            runAsUser: {{ kernel_uid }}
          containers:
          - name: "kernel-{{ kernel_id }}"
            image: "{{ kernel_image }}"
            env:
            - {name: FROM_TEMPLATE, value: "{{ kernel_id }}"}
            - {name: KERNEL_ID, value: overridden}
        """

    /// A value that would be YAML structure if pasted into the text (EG renders Jinja as text)
    /// stays one string.
    @Test func valuesCannotInjectStructure() throws {
        let hostile = "x\"\n  hostNetwork: true\nspec: {hostPID: true} #"
        let pod = try KernelPodTemplate.render(Self.template, values: [
            "kernel_username": hostile, "kernel_uid": "1000", "kernel_id": "k1", "kernel_image": "img:1",
        ])
        #expect(pod[path: "metadata", "annotations", "owner"]?.stringValue == hostile)
        #expect(pod[path: "metadata", "annotations", "plain"]?.stringValue == hostile)
        #expect(pod[path: "spec", "hostNetwork"] == nil && pod[path: "spec", "hostPID"] == nil)
        #expect(pod[path: "spec", "securityContext", "runAsUser"] == .int(1000))
        #expect(pod[path: "spec", "containers", "0", "name"]?.stringValue == "kernel-k1")
    }

    @Test func unknownNamesAndJinjaBlocksAreRefused() {
        #expect(throws: ProvisionerError.self) { try KernelPodTemplate.render("a: {{ nope }}", values: [:]) }
        #expect(throws: ProvisionerError.self) { try KernelPodTemplate.render("{% if x %}a: 1{% endif %}", values: [:]) }
        #expect(throws: ProvisionerError.self) { try KernelPodTemplate.render("a: {{ x | upper }}", values: ["x": "1"]) }
        #expect(throws: ProvisionerError.self) { try KernelPodTemplate.render("a: [", values: [:]) }
        #expect(throws: ProvisionerError.self) { try KernelPodTemplate.render("- a", values: [:]) }
    }

    @Test func theGatewayOwnsNameLabelsEnvAndResources() throws {
        let rendered = try KernelPodTemplate.render(Self.template, values: [
            "kernel_username": "alice", "kernel_uid": "1000", "kernel_id": "k1", "kernel_image": "",
        ])
        let pod = KernelPodTemplate.finish(
            rendered, podName: "alice-k1", namespace: "notebooks", kernelID: "k1", image: "elyra/kernel-py:3.3.0",
            environment: [("KERNEL_ID", "k1"), ("RESPONSE_ADDRESS", "10.0.0.1:8877")],
            resources: ResourceRequest(cpus: 0.5, memoryBytes: 512 << 20, gpus: 1), serviceAccount: "kernels", uid: 1000, gid: 100,
            volumes: .array([.object(["name": .string("data"), "emptyDir": .object([:])])]),
            volumeMounts: .array([.object(["name": .string("data"), "mountPath": .string("/data")])]))
        #expect(pod[path: "metadata", "name"]?.stringValue == "alice-k1")
        #expect(pod[path: "metadata", "namespace"]?.stringValue == "notebooks")
        #expect(pod[path: "metadata", "labels", "kernel_id"]?.stringValue == "k1")
        #expect(pod[path: "metadata", "labels", "component"]?.stringValue == "kernel")
        #expect(pod[path: "spec", "restartPolicy"]?.stringValue == "Never")
        #expect(pod[path: "spec", "serviceAccountName"]?.stringValue == "kernels")
        #expect(pod[path: "spec", "securityContext", "runAsUser"] == .int(1000))  // the template's
        #expect(pod[path: "spec", "securityContext", "runAsGroup"] == .int(100))
        let container = try #require(pod[path: "spec", "containers", "0"])
        #expect(container["image"]?.stringValue == "elyra/kernel-py:3.3.0")  // the template left it empty
        let env = (container["env"]?.arrayValue ?? []).map { ($0["name"]?.stringValue ?? "", $0["value"]?.stringValue ?? "") }
        #expect(env.filter { $0.0 == "KERNEL_ID" }.map(\.1) == ["k1"])  // protocol values win, once
        #expect(env.contains { $0 == ("FROM_TEMPLATE", "k1") })
        #expect(env.contains { $0 == ("RESPONSE_ADDRESS", "10.0.0.1:8877") })
        #expect(container[path: "resources", "limits", "cpu"]?.stringValue == "500m")
        #expect(container[path: "resources", "limits", "memory"]?.stringValue == String(512 << 20))
        #expect(container[path: "resources", "limits", "nvidia.com/gpu"]?.stringValue == "1")
        #expect(container[path: "resources", "requests"] == container[path: "resources", "limits"])
        #expect(container[path: "volumeMounts", "0", "mountPath"]?.stringValue == "/data")
        #expect(pod[path: "spec", "volumes", "0", "name"]?.stringValue == "data")
    }

    @Test func theBuiltInPod() {
        let pod = KernelPodTemplate.finish(nil, podName: "p", namespace: "default", kernelID: "k", image: "img", environment: [],
                                           resources: nil, serviceAccount: "default", uid: nil, gid: nil, volumes: nil,
                                           volumeMounts: nil)
        #expect(pod[path: "kind"]?.stringValue == "Pod")
        #expect(pod[path: "spec", "containers", "0", "name"]?.stringValue == "kernel")
        #expect(pod[path: "spec", "securityContext"] == nil)
        #expect(pod[path: "spec", "containers", "0", "resources"] == nil)
    }

    @Test func namesAreDNSLabels() {
        #expect(KernelPodTemplate.dnsLabel("Alice.Smith@Example-1f2e") == "alice-smith-example-1f2e")
        #expect(KernelPodTemplate.dnsLabel("--x--") == "x")
        #expect(KernelPodTemplate.dnsLabel(String(repeating: "a", count: 100)).count == 63)
        #expect(KernelPodTemplate.dnsLabel("élève") == "l-ve")
        #expect(KernelPodTemplate.dnsLabel("") == "kernel")
        #expect(KernelPodTemplate.cpuQuantity(2) == "2" && KernelPodTemplate.cpuQuantity(0.25) == "250m")
    }

    @Test func prohibitedIDs() throws {
        #expect(try KubernetesProvisioner.checkedID(nil, name: "KERNEL_UID", prohibited: [0]) == nil)
        #expect(try KubernetesProvisioner.checkedID("1000", name: "KERNEL_UID", prohibited: [0]) == 1000)
        #expect(throws: ProvisionerError.self) { try KubernetesProvisioner.checkedID("0", name: "KERNEL_UID", prohibited: [0]) }
        #expect(throws: ProvisionerError.self) { try KubernetesProvisioner.checkedID("root", name: "KERNEL_GID", prohibited: [0]) }
        do {
            _ = try KubernetesProvisioner.checkedID("0", name: "KERNEL_UID", prohibited: [0])
        } catch {
            #expect(error.kind == .forbidden)
        }
    }
}

@Suite("Kubernetes configuration")
struct KubernetesConfigurationTests {
    static func write(_ text: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kubeconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "token-from-file\n".write(to: dir.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        try "-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n".write(to: dir.appendingPathComponent("ca.pem"), atomically: true, encoding: .utf8)
        let path = dir.appendingPathComponent("config").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func currentContextClusterUserAndNamespace() throws {
        let path = try Self.write("""
            apiVersion: v1
            kind: Config
            current-context: b
            clusters:
            - name: one
              cluster: {server: "https://one.example:6443"}
            - name: two
              cluster: {server: "https://two.example:6443", certificate-authority: ca.pem}
            users:
            - name: u1
              user: {token: abc}
            - name: u2
              user: {tokenFile: token}
            contexts:
            - name: a
              context: {cluster: one, user: u1}
            - name: b
              context: {cluster: two, user: u2, namespace: notebooks}
            """)
        let c = try KubernetesConfiguration.kubeconfig(at: path)
        #expect(c.server.absoluteString == "https://two.example:6443")
        #expect(c.token == "token-from-file")
        #expect(c.namespace == "notebooks")
        #expect(c.caCertificatePEM?.contains("BEGIN CERTIFICATE") == true)
    }

    @Test func unsupportedUsersAndBrokenFilesAreClearErrors() throws {
        let exec = try Self.write("""
            current-context: a
            clusters: [{name: c, cluster: {server: "https://x:6443"}}]
            users: [{name: u, user: {exec: {command: aws}}}]
            contexts: [{name: a, context: {cluster: c, user: u}}]
            """)
        #expect(throws: ProvisionerError.self) { try KubernetesConfiguration.kubeconfig(at: exec) }
        #expect(throws: ProvisionerError.self) { try KubernetesConfiguration.kubeconfig(at: "/nonexistent/kubeconfig") }
        let noServer = try Self.write("current-context: a\ncontexts: [{name: a, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n")
        #expect(throws: ProvisionerError.self) { try KubernetesConfiguration.kubeconfig(at: noServer) }
    }

    @Test func inClusterNeedsTheServiceAccount() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sa-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        #expect(KubernetesConfiguration.inCluster(environment: [:], secrets: dir.path) == nil)
        #expect(KubernetesConfiguration.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1"], secrets: dir.path) == nil)
        try "tok\n".write(to: dir.appendingPathComponent("token"), atomically: true, encoding: .utf8)
        try "jupyter\n".write(to: dir.appendingPathComponent("namespace"), atomically: true, encoding: .utf8)
        let c = try #require(KubernetesConfiguration.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.0.0.1",
                                                                             "KUBERNETES_SERVICE_PORT": "443"], secrets: dir.path))
        #expect(c.server.absoluteString == "https://10.0.0.1:443" && c.token == "tok" && c.namespace == "jupyter")
    }
}
