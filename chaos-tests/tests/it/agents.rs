//! Node agents on `flotilla up --masters 3 --agents 2`: each registers its Node with its own
//! credentials and the machine's capacity, the masters give it a pod CIDR, a node that cannot
//! run pods yet is NotReady and tainted so nothing is scheduled there, and an agent restarted
//! while a master is down reaches another master and takes its Node over without a duplicate.

use std::time::Duration;

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;

fn get(cluster: &Cluster, server: &str, args: &[&str]) -> String {
    let mut all = vec![server];
    all.extend_from_slice(args);
    cluster.kubectl_output(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_register_report_and_survive_a_master_loss() -> anyhow::Result<()> {
    eprintln!("--- start 3 masters and 2 agents");
    let cluster = Cluster::start_with_agents(3, 2)?;
    let first = format!("--server={}", cluster.members[0].api_url()?);
    let s = first.as_str();

    eprintln!("--- both nodes are registered by their agents with the machine's capacity");
    wait_until(Duration::from_secs(30), "two registered nodes", || async {
        get(&cluster, s, &["get", "nodes", "-o", "name"]).split_whitespace().count() == 2
    })
    .await?;
    let cpus = std::thread::available_parallelism()?.get().to_string();
    for node in ["agent-1", "agent-2"] {
        let capacity = get(&cluster, s, &["get", "node", node, "-o", "jsonpath={.status.capacity.cpu}/{.status.capacity.pods}/{.status.nodeInfo.kubeletVersion}"]);
        assert_eq!(capacity, format!("{cpus}/110/v1.33.0+flotilla.0.1.0"), "{node}");
        let managers = get(
            &cluster,
            s,
            &[
                "get",
                "node",
                node,
                "--show-managed-fields",
                "-o",
                "jsonpath={.metadata.managedFields[*].manager}",
            ],
        );
        assert!(managers.contains("flotilla-agent"), "written by the agent: {managers}");
    }
    let table = get(&cluster, s, &["get", "nodes"]);
    eprintln!("{table}");
    assert!(table.contains("agent-1") && table.contains("NotReady"), "{table}");
    let reason = get(
        &cluster,
        s,
        &[
            "get",
            "node",
            "agent-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ],
    );
    assert_eq!(reason, "KubeletNotReady");

    eprintln!("--- the masters give each node its own pod CIDR and the not-ready taint");
    wait_until(Duration::from_secs(30), "pod CIDRs and taints", || async {
        let cidrs = get(&cluster, s, &["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
        let taints =
            get(&cluster, s, &["get", "nodes", "-o", "jsonpath={.items[*].spec.taints[*].key}"]);
        let cidrs: Vec<&str> = cidrs.split_whitespace().collect();
        cidrs.len() == 2
            && cidrs[0] != cidrs[1]
            && taints.matches("node.kubernetes.io/not-ready").count() == 2
    })
    .await?;
    stdout_of(&cluster.kubectl(&[s, "run", "waiting", "--image=busybox:1.36"])?)?;
    wait_until(Duration::from_secs(30), "the pod refused by both tainted nodes", || async {
        get(
            &cluster,
            s,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=waiting,reason=FailedScheduling",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
        .contains("2 node(s) had untolerated taint {node.kubernetes.io/not-ready: }")
    })
    .await?;

    eprintln!("--- kill -9 master-1 and agent-1; the restarted agent reaches another master");
    let before = get(&cluster, s, &["get", "node", "agent-1", "-o", "jsonpath={.metadata.uid}"]);
    cluster.signal(0, Signal::SIGKILL)?;
    cluster.signal_agent(1, Signal::SIGKILL)?;
    cluster.restart_agent(1)?;
    let second = format!("--server={}", cluster.members[1].api_url()?);
    let log = cluster.agent_dir(1).join("log");
    wait_until(Duration::from_secs(30), "the agent taking its node over", || async {
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains("the node was registered before"))
    })
    .await?;
    let after =
        get(&cluster, &second, &["get", "node", "agent-1", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(before, after, "the same Node, not a new one");
    let names = get(&cluster, &second, &["get", "nodes", "-o", "name"]);
    assert_eq!(names.split_whitespace().count(), 2, "{names}");
    Ok(())
}
