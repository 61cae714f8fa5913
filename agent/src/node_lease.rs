//! The node's Lease in `kube-node-lease`, which `kubectl describe node` shows and tools read
//! as the kubelet's heartbeat. Kubelet renews it every 10 s; Flotilla's heartbeat is the
//! gossip (see the node-lifecycle controller), so the agent writes the Lease only when it
//! starts: it says which agent holds the node and since when, and an idle cluster writes
//! nothing for it.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

/// The namespace of node Leases.
const NAMESPACE: &str = "kube-node-lease";
/// The duration kubelet gives its Lease.
const DURATION_SECONDS: i32 = 40;

/// The node's Lease, owned by its Node so that deleting the Node deletes it.
fn lease(node: &Node, now: Timestamp) -> Lease {
    let name = node.metadata.name.clone().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.clone(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        ..OwnerReference::default()
    };
    Lease {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(NAMESPACE.into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name),
            lease_duration_seconds: Some(DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Creates the Lease of `node`, or takes over the one an earlier agent of the node left.
///
/// The existing Lease is replaced (an update conditional on its resourceVersion, as kubelet
/// writes it) rather than patched: the `system:node` role allows nodes to get, create and
/// update leases. A conflict fails the call; the caller tries again.
pub(crate) async fn ensure(client: kube::Client, node: &Node, manager: &str) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let wanted = lease(node, Timestamp::now());
    let post = PostParams { field_manager: Some(manager.into()), ..PostParams::default() };
    match leases.create(&post, &wanted).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let name = wanted.metadata.name.clone().unwrap_or_default();
            let existing = leases.get(&name).await?;
            leases.replace(&name, &post, &taken_over(existing, wanted)).await.map(|_| ())
        }
        Err(err) => Err(err),
    }
}

/// `existing` with the owner and spec of `wanted`, keeping its resourceVersion (the update's
/// precondition) and whatever else others set.
fn taken_over(mut existing: Lease, wanted: Lease) -> Lease {
    existing.metadata.owner_references = wanted.metadata.owner_references;
    existing.spec = wanted.spec;
    existing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_held_by_the_node_and_owned_by_it() {
        let node = Node {
            metadata: ObjectMeta {
                name: Some("agent-1".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let lease = lease(&node, now);
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "agent-1", "u1")
        );
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("agent-1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn a_lease_taken_over_keeps_its_version_and_gets_the_new_holder() {
        let node = |uid: &str| Node {
            metadata: ObjectMeta {
                name: Some("agent-1".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let mut existing = lease(&node("old"), Timestamp::UNIX_EPOCH);
        existing.metadata.resource_version = Some("42".into());
        existing.metadata.labels = Some([("kept".to_string(), "yes".to_string())].into());
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let next = taken_over(existing, lease(&node("new"), now));
        assert_eq!(next.metadata.resource_version.as_deref(), Some("42"));
        assert!(next.metadata.labels.unwrap().contains_key("kept"));
        assert_eq!(next.metadata.owner_references.unwrap()[0].uid, "new");
        assert_eq!(next.spec.unwrap().renew_time, Some(MicroTime(now)));
    }
}
