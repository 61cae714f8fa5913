//! A namespace in memory that executes plans the way the caller would, so tests can walk a
//! StatefulSet through several reconciles.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::{ago, now};
use crate::statefulset::plan::{owner_reference, plan, Plan, StatefulSet, REVISION_LABEL};

pub(super) struct World {
    pub(super) set: StatefulSet,
    pub(super) pods: Vec<Pod>,
    pub(super) claims: Vec<PersistentVolumeClaim>,
    pub(super) revisions: Vec<ControllerRevision>,
}

/// An ownerReference naming pod `name` with `uid` as controller.
pub(super) fn pod_owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

impl World {
    pub(super) fn new(set: StatefulSet) -> Self {
        Self { set, pods: Vec::new(), claims: Vec::new(), revisions: Vec::new() }
    }

    /// A world where the set has run `count` ready pods at its template, with its status
    /// written; the set's own replica count is kept.
    pub(super) fn with_ready_pods(set: StatefulSet, count: i32) -> Self {
        let replicas = set.spec.as_ref().unwrap().replicas;
        let mut world = Self::new(set);
        world.set.spec.as_mut().unwrap().replicas = Some(count);
        for _ in 0..=count {
            let plan = world.step();
            for pod in plan.create_pods {
                world.ready(pod.metadata.name.as_deref().unwrap());
            }
        }
        world.step();
        assert_eq!(world.pods.len(), usize::try_from(count).unwrap());
        world.set.spec.as_mut().unwrap().replicas = replicas;
        world
    }

    /// Plans for the set and executes the plan.
    pub(super) fn step(&mut self) -> Plan {
        let plan = plan(&self.set, &self.pods, &self.claims, &self.revisions, now()).unwrap();
        self.apply(plan.clone());
        plan
    }

    fn apply(&mut self, plan: Plan) {
        if let Some(mut revision) = plan.create_revision {
            revision.metadata.creation_timestamp = Some(Time(now()));
            self.revisions.push(revision);
        }
        if let Some(renumber) = plan.renumber_revision {
            let revision = self
                .revisions
                .iter_mut()
                .find(|r| r.metadata.name.as_deref() == Some(&renumber.name))
                .unwrap();
            revision.revision = renumber.revision;
        }
        for mut claim in plan.create_claims {
            let name = claim.metadata.name.clone().unwrap();
            assert!(self.claim(&name).is_none(), "claim {name} created twice");
            claim.metadata.uid = Some(format!("uid-{name}"));
            claim.metadata.resource_version = Some(format!("rv-{name}"));
            self.claims.push(claim);
        }
        for patch in plan.patch_claims {
            let claim = self
                .claims
                .iter_mut()
                .find(|c| c.metadata.name.as_deref() == Some(&patch.name))
                .unwrap();
            assert_eq!(claim.metadata.resource_version, patch.resource_version);
            claim.metadata.owner_references = Some(patch.owner_references);
        }
        let owner = owner_reference(&self.set).unwrap();
        for adopt in plan.adopt_pods {
            let pod = self.pod_mut(&adopt.name);
            pod.metadata.owner_references.get_or_insert_with(Vec::new).push(owner.clone());
        }
        for release in plan.release_pods {
            let pod = self.pod_mut(&release.name);
            pod.metadata.owner_references.as_mut().unwrap().retain(|r| r.uid != owner.uid);
        }
        for patch in plan.patch_pods {
            let pod = self.pod_mut(&patch.name);
            assert_eq!(pod.metadata.resource_version, patch.resource_version);
            pod.metadata.labels.get_or_insert_with(Default::default).extend(patch.labels);
        }
        for mut pod in plan.create_pods {
            let name = pod.metadata.name.clone().unwrap();
            assert!(self.pods.iter().all(|p| p.metadata.name != pod.metadata.name));
            pod.metadata.uid = Some(format!("uid-{name}"));
            pod.metadata.resource_version = Some(format!("rv-{name}"));
            pod.status = Some(PodStatus { phase: Some("Pending".into()), ..PodStatus::default() });
            self.pods.push(pod);
        }
        for delete in plan.delete_pods {
            assert_eq!(self.pod(&delete.name).metadata.uid, delete.uid, "uid precondition");
            self.delete(&delete.name);
        }
        self.revisions
            .retain(|r| !plan.delete_revisions.contains(r.metadata.name.as_ref().unwrap()));
        if let Some(status) = plan.status {
            self.set.status = Some(status);
        }
    }

    pub(super) fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.metadata.name.as_deref() == Some(name)).unwrap()
    }

    pub(super) fn pod_mut(&mut self, name: &str) -> &mut Pod {
        self.pods.iter_mut().find(|p| p.metadata.name.as_deref() == Some(name)).unwrap()
    }

    fn claim(&self, name: &str) -> Option<&PersistentVolumeClaim> {
        self.claims.iter().find(|c| c.metadata.name.as_deref() == Some(name))
    }

    pub(super) fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        names.sort();
        names
    }

    pub(super) fn revision_of(&self, name: &str) -> String {
        self.pod(name).metadata.labels.as_ref().unwrap()[REVISION_LABEL].clone()
    }

    /// The pod is gone from the API (deleted and its grace period over).
    pub(super) fn delete(&mut self, name: &str) {
        self.pods.retain(|p| p.metadata.name.as_deref() != Some(name));
    }

    pub(super) fn terminating(&mut self, name: &str) {
        self.pod_mut(name).metadata.deletion_timestamp = Some(ago(1));
    }

    /// The pod runs but is not ready.
    pub(super) fn running(&mut self, name: &str) {
        self.set_state(name, "False", 10);
    }

    /// The pod runs and has been ready for an hour.
    pub(super) fn ready(&mut self, name: &str) {
        self.set_state(name, "True", 3600);
    }

    pub(super) fn ready_since(&mut self, name: &str, seconds: i64) {
        self.set_state(name, "True", seconds);
    }

    fn set_state(&mut self, name: &str, ready: &str, since: i64) {
        let status = self.pod_mut(name).status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: ready.into(),
            last_transition_time: Some(ago(since)),
            ..PodCondition::default()
        }]);
    }

    /// Adds a bound claim `name` owned by `owners`.
    pub(super) fn add_claim(&mut self, name: &str, owners: Vec<OwnerReference>) {
        self.claims.push(PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(format!("rv-{name}")),
                owner_references: (!owners.is_empty()).then_some(owners),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        });
    }
}
