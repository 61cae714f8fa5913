//! Non-workload printers: nodes, services, endpoints, events, storage, RBAC, policy,
//! autoscaling, networking and registration.

use serde_json::json;

use super::{ago, cell, now};
use crate::table::{cells, columns};

#[test]
fn node_status_and_roles() {
    let ready = |status: &str| json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": status}]);
    let cases = [
        (json!({"status": {"conditions": ready("True")}}), "Ready"),
        (json!({"status": {"conditions": ready("False")}}), "NotReady"),
        (json!({"status": {"conditions": ready("Unknown")}}), "NotReady"),
        (json!({"status": {}}), "Unknown"),
        (
            json!({"spec": {"unschedulable": true}, "status": {"conditions": ready("True")}}),
            "Ready,SchedulingDisabled",
        ),
        (json!({"spec": {"unschedulable": true}}), "Unknown,SchedulingDisabled"),
    ];
    for (node, want) in cases {
        assert_eq!(cell("", "Node", &node, "Status"), want, "{node}");
    }

    let labelled = |labels: serde_json::Value| json!({"metadata": {"labels": labels}});
    let roles = [
        (
            json!({"node-role.kubernetes.io/master": "", "node-role.kubernetes.io/control-plane": ""}),
            "control-plane,master",
        ),
        (json!({"kubernetes.io/role": "worker", "node-role.kubernetes.io/worker": ""}), "worker"),
        (json!({"node-role.kubernetes.io/": "", "kubernetes.io/role": ""}), "<none>"),
        (json!({"kubernetes.io/hostname": "n1"}), "<none>"),
    ];
    for (labels, want) in roles {
        assert_eq!(cell("", "Node", &labelled(labels.clone()), "Roles"), want, "{labels}");
    }

    let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(20 * 86400)},
        "status": {"conditions": ready("True"),
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}],
            "nodeInfo": {"kubeletVersion": "v1.33.1", "kernelVersion": "6.8.0", "containerRuntimeVersion": "containerd://2.0.0"}}});
    assert_eq!(
        cells("", "Node", &node, now()),
        [
            json!("n1"),
            json!("Ready"),
            json!("<none>"),
            json!("20d"),
            json!("v1.33.1"),
            json!("10.0.0.1"),
            json!("<none>"),
            json!("<unknown>"),
            json!("6.8.0"),
            json!("containerd://2.0.0")
        ]
    );
}

#[test]
fn service_cells() {
    let names: Vec<_> = columns("", "Service").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]);
    let service = |spec: serde_json::Value, status: serde_json::Value| json!({"metadata": {"name": "svc"}, "spec": spec, "status": status});
    let row = |svc: &serde_json::Value| {
        let printed = cells("", "Service", svc, now());
        [
            printed[1].clone(),
            printed[2].clone(),
            printed[3].clone(),
            printed[4].clone(),
            printed[6].clone(),
        ]
    };
    let cases = [
        (
            service(
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}, {"port": 9153}],
            "selector": {"k8s-app": "kube-dns"}}),
                json!({}),
            ),
            ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP", "k8s-app=kube-dns"],
        ),
        (
            service(json!({"clusterIP": "None", "ports": []}), json!({})),
            ["ClusterIP", "None", "<none>", "<none>", "<none>"],
        ),
        (
            service(
                json!({"type": "NodePort", "clusterIP": "10.96.1.1", "externalIPs": ["1.2.3.4", "5.6.7.8"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}),
                json!({}),
            ),
            ["NodePort", "10.96.1.1", "1.2.3.4,5.6.7.8", "80:30080/TCP", "<none>"],
        ),
        (
            service(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.2.2"],
            "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
                json!({}),
            ),
            ["LoadBalancer", "10.96.2.2", "<pending>", "443:31443/TCP", "<none>"],
        ),
        (
            service(
                json!({"type": "LoadBalancer", "clusterIP": "10.96.2.3", "externalIPs": ["9.9.9.9"]}),
                json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "203.0.113.7"},
                {"ip": "203.0.113.7"}]}}),
            ),
            ["LoadBalancer", "10.96.2.3", "203.0.113.7,lb.example.com,9.9.9.9", "<none>", "<none>"],
        ),
        (
            service(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({})),
            ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
        ),
    ];
    for (svc, want) in cases {
        assert_eq!(row(&svc), want.map(serde_json::Value::from), "{svc}");
    }
}

#[test]
fn endpoints_and_slices() {
    let endpoints = json!({"subsets": [
        {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 8080}, {"port": 9090}]},
        {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(
        cell("", "Endpoints", &endpoints, "Endpoints"),
        "10.0.0.1:8080,10.0.0.2:8080,10.0.0.1:9090 + 2 more..."
    );
    let ipv6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
    assert_eq!(cell("", "Endpoints", &ipv6, "Endpoints"), "[fd00::1]:80");
    let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.5"}]}]});
    assert_eq!(cell("", "Endpoints", &headless, "Endpoints"), "10.0.0.5");
    assert_eq!(cell("", "Endpoints", &json!({}), "Endpoints"), "<none>");

    let slice = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
    let printed = cells("discovery.k8s.io", "EndpointSlice", &slice, now());
    assert_eq!(
        printed[1..4],
        [json!("IPv4"), json!("80,metrics,* + 1 more..."), json!("10.0.0.1,10.0.0.2")]
    );
    assert_eq!(cell("discovery.k8s.io", "EndpointSlice", &json!({}), "Endpoints"), "<unset>");
}

#[test]
fn events_in_both_api_groups() {
    let core = json!({"metadata": {"name": "web.17a"}, "type": "Warning", "reason": "BackOff",
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "source": {"component": "kubelet", "host": "n1"}, "message": "Back-off restarting failed container\n",
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 12});
    assert_eq!(
        cells("", "Event", &core, now()),
        [
            json!("30s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web"),
            json!("spec.containers{app}"),
            json!("kubelet, n1"),
            json!("Back-off restarting failed container"),
            json!("10m"),
            json!(12),
            json!("web.17a")
        ]
    );
    let modern = json!({"metadata": {"name": "e"}, "type": "Normal", "reason": "Scheduled",
        "regarding": {"kind": "Pod", "name": "web"}, "note": "Successfully assigned",
        "reportingController": "default-scheduler", "eventTime": "2024-06-01T11:58:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2024-06-01T11:59:50.000000Z"}});
    assert_eq!(
        cells("events.k8s.io", "Event", &modern, now()),
        [
            json!("10s"),
            json!("Normal"),
            json!("Scheduled"),
            json!("pod/web"),
            json!(""),
            json!("default-scheduler"),
            json!("Successfully assigned"),
            json!("2m"),
            json!(3),
            json!("e")
        ]
    );
    let singleton = json!({"involvedObject": {"kind": "Node"}});
    assert_eq!(cell("", "Event", &singleton, "Count"), 1);
    assert_eq!(cell("", "Event", &singleton, "Object"), "node");
    assert_eq!(cell("", "Event", &singleton, "Last Seen"), "<unknown>");
}

#[test]
fn storage_cells() {
    let volume = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(60)},
        "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
            "claimRef": {"namespace": "default", "name": "data"}},
        "status": {"phase": "Bound"}});
    assert_eq!(
        cells("", "PersistentVolume", &volume, now()),
        [
            json!("pv1"),
            json!("1Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("fast"),
            json!("<unset>"),
            json!(""),
            json!("60s"),
            json!("Filesystem")
        ]
    );
    let pending = json!({"metadata": {"name": "data", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
        "spec": {"storageClassName": "fast", "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", &pending, now())[1..],
        [
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("old"),
            json!("<unset>"),
            json!("<unknown>"),
            json!("Filesystem")
        ]
    );
    let bound = json!({"metadata": {"deletionTimestamp": ago(1)}, "spec": {"volumeName": "pv1"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", &bound, now())[1..5],
        [json!("Terminating"), json!("pv1"), json!("10Gi"), json!("RWOP")]
    );

    let class = json!({"metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    assert_eq!(
        cells("storage.k8s.io", "StorageClass", &class, now())[..5],
        [
            json!("standard (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("WaitForFirstConsumer"),
            json!(false)
        ]
    );
}

#[test]
fn quota_config_and_secrets() {
    let quota = json!({"metadata": {"name": "q"}, "status": {
        "hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "2048Mi", "limits.cpu": "4"},
        "used": {"pods": "3", "requests.cpu": "500m", "limits.memory": "1Gi"}}});
    assert_eq!(
        cells("", "ResourceQuota", &quota, now())[..3],
        [
            json!("q"),
            json!("pods: 3/10, requests.cpu: 500m/2"),
            json!("limits.cpu: 0/4, limits.memory: 1Gi/2Gi")
        ]
    );
    let names: Vec<_> = columns("", "ResourceQuota").iter().map(|c| c.name).collect();
    assert_eq!(names, ["Name", "Request", "Limit", "Age"]);

    let config = json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(cell("", "ConfigMap", &config, "Data"), 3);
    let secret = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(cell("", "Secret", &secret, "Type"), "kubernetes.io/tls");
    assert_eq!(cell("", "Secret", &secret, "Data"), 2);
    assert_eq!(cell("", "ServiceAccount", &json!({"secrets": [{"name": "t"}]}), "Secrets"), 1);
    let terminating = json!({"status": {"phase": "Terminating"}});
    assert_eq!(cell("", "Namespace", &terminating, "Status"), "Terminating");
    assert_eq!(cell("", "Namespace", &json!({}), "Status"), "Active");
    assert_eq!(cell("", "Secret", &json!({}), "Type"), "Opaque");
}

#[test]
fn policy_rbac_and_autoscaling() {
    let budget = json!({"spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells("policy", "PodDisruptionBudget", &budget, now())[1..4],
        [json!("50%"), json!("N/A"), json!(1)]
    );
    let budget = json!({"spec": {"maxUnavailable": 1}});
    assert_eq!(cell("policy", "PodDisruptionBudget", &budget, "Max Unavailable"), "1");

    let binding = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"}, {"kind": "User", "name": "bob"}]});
    let group = "rbac.authorization.k8s.io";
    let printed = cells(group, "ClusterRoleBinding", &binding, now());
    assert_eq!(printed[1], "ClusterRole/view");
    assert_eq!(printed[3..], [json!("alice, bob"), json!("devs"), json!("ci/bot")]);

    let hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"averageValue": "10"}}}]},
        "status": {"currentReplicas": 3, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42}}}]}});
    assert_eq!(
        cells("autoscaling", "HorizontalPodAutoscaler", &hpa, now())[1..6],
        [
            json!("Deployment/web"),
            json!("cpu: 42%/80%, memory: <unknown>/1Gi + 1 more..."),
            json!("2"),
            json!(10),
            json!(3)
        ]
    );
    let v1 = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4,
        "targetCPUUtilizationPercentage": 50}});
    assert_eq!(
        cell("autoscaling", "HorizontalPodAutoscaler", &v1, "Targets"),
        "cpu: <unknown>/50%"
    );
    assert_eq!(cell("autoscaling", "HorizontalPodAutoscaler", &v1, "MinPods"), "1");
}

#[test]
fn networking_and_registration() {
    let ingress = json!({"spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", &ingress, now())[1..5],
        [
            json!("nginx"),
            json!("a.example.com,b.example.com,c.example.com + 2 more..."),
            json!("192.0.2.1"),
            json!("80, 443")
        ]
    );
    let bare = json!({"spec": {"rules": [{}]}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", &bare, now())[1..5],
        [json!("<none>"), json!("*"), json!(""), json!("80")]
    );

    let class = json!({"spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
    assert_eq!(
        cell("networking.k8s.io", "IngressClass", &class, "Parameters"),
        "IngressParameters.k8s.example.com/external-lb"
    );
    let policy = json!({"spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
    assert_eq!(cell("networking.k8s.io", "NetworkPolicy", &policy, "Pod-Selector"), "role=db");
    assert_eq!(
        cell("networking.k8s.io", "NetworkPolicy", &json!({"spec": {}}), "Pod-Selector"),
        "<none>"
    );

    let local = json!({"metadata": {"name": "v1.apps"}, "status": {"conditions": [{"type": "Available", "status": "True"}]}});
    assert_eq!(
        cells("apiregistration.k8s.io", "APIService", &local, now())[1..3],
        [json!("Local"), json!("True")]
    );
    let remote = json!({"spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
        "status": {"conditions": [{"type": "Available", "status": "False", "reason": "MissingEndpoints"}]}});
    assert_eq!(
        cells("apiregistration.k8s.io", "APIService", &remote, now())[1..3],
        [json!("kube-system/metrics-server"), json!("False (MissingEndpoints)")]
    );

    let lease = json!({"spec": {"holderIdentity": "n1_abc"}});
    assert_eq!(cell("coordination.k8s.io", "Lease", &lease, "Holder"), "n1_abc");
    assert_eq!(cell("coordination.k8s.io", "Lease", &json!({}), "Holder"), "");
}
