use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};

use super::*;

fn now() -> Timestamp {
    "2025-01-01T12:00:00Z".parse().unwrap()
}

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

fn storage(size: &str) -> Option<BTreeMap<String, Quantity>> {
    Some(BTreeMap::from([("storage".to_owned(), Quantity(size.to_owned()))]))
}

fn modes(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|mode| (*mode).to_owned()).collect())
}

/// An Available, unclaimed, Retain volume offering ReadWriteOnce, without a class.
fn pv(name: &str, size: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("{name}-uid")),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: storage(size),
            access_modes: modes(&["ReadWriteOnce"]),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..PersistentVolumeStatus::default()
        }),
    }
}

/// A Pending claim in "default" for ReadWriteOnce storage with an explicit empty class.
fn pvc(name: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-uid")),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: modes(&["ReadWriteOnce"]),
            resources: Some(VolumeResourceRequirements { requests: storage(size), limits: None }),
            storage_class_name: Some(String::new()),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..PersistentVolumeClaimStatus::default()
        }),
    }
}

fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        ..StorageClass::default()
    }
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(&[("kubernetes.io/hostname", name)]),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn on_node(node: &'static str) -> impl FnOnce(&mut PersistentVolume) {
    move |volume: &mut PersistentVolume| {
        volume.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec![node.into()]),
                    }]),
                    match_fields: None,
                }],
            }),
        });
    }
}

fn with<T>(mut object: T, change: impl FnOnce(&mut T)) -> T {
    change(&mut object);
    object
}

fn class_name(name: &'static str) -> impl FnOnce(&mut PersistentVolume) {
    move |volume: &mut PersistentVolume| {
        volume.spec.as_mut().unwrap().storage_class_name = Some(name.into())
    }
}

fn claim_class(name: &'static str) -> impl FnOnce(&mut PersistentVolumeClaim) {
    move |claim: &mut PersistentVolumeClaim| {
        claim.spec.as_mut().unwrap().storage_class_name = Some(name.into())
    }
}

/// The objects the API server holds.
#[derive(Debug, Clone, Default)]
struct World {
    volumes: Vec<PersistentVolume>,
    claims: Vec<PersistentVolumeClaim>,
    classes: Vec<StorageClass>,
    nodes: Vec<Node>,
}

impl World {
    fn plan(&self) -> Plan {
        plan(&self.volumes, &self.claims, &self.classes, &self.nodes, now())
    }

    fn volume(&self, name: &str) -> &PersistentVolume {
        self.volumes.iter().find(|v| v.metadata.name.as_deref() == Some(name)).unwrap()
    }

    fn claim(&self, name: &str) -> &PersistentVolumeClaim {
        self.claims.iter().find(|c| c.metadata.name.as_deref() == Some(name)).unwrap()
    }

    /// Executes a plan as the caller must: each operation's writes in order, each conditional
    /// on the planned resourceVersion, a second write to an object using the version the first
    /// returned.
    fn apply(mut self, plan: &Plan) -> World {
        for operation in &plan.operations {
            let mut planned_versions: BTreeMap<String, Option<String>> = BTreeMap::new();
            for write in &operation.writes {
                match write {
                    Write::UpdateVolume(new) | Write::UpdateVolumeStatus(new) => {
                        let key = format!("pv/{}", new.metadata.name.clone().unwrap());
                        let current = self
                            .volumes
                            .iter_mut()
                            .find(|v| v.metadata.name == new.metadata.name)
                            .unwrap();
                        let version = checked_version(
                            &mut planned_versions,
                            key,
                            &new.metadata,
                            &current.metadata,
                        );
                        if matches!(write, Write::UpdateVolume(_)) {
                            current.metadata = new.metadata.clone();
                            current.spec = new.spec.clone();
                        } else {
                            current.status = new.status.clone();
                        }
                        current.metadata.resource_version = version;
                    }
                    Write::UpdateClaim(new) | Write::UpdateClaimStatus(new) => {
                        let key = format!("pvc/{}", new.metadata.name.clone().unwrap());
                        let current = self
                            .claims
                            .iter_mut()
                            .find(|c| c.metadata.name == new.metadata.name)
                            .unwrap();
                        let version = checked_version(
                            &mut planned_versions,
                            key,
                            &new.metadata,
                            &current.metadata,
                        );
                        if matches!(write, Write::UpdateClaim(_)) {
                            current.metadata = new.metadata.clone();
                            current.spec = new.spec.clone();
                        } else {
                            current.status = new.status.clone();
                        }
                        current.metadata.resource_version = version;
                    }
                    Write::DeleteVolume { name, uid } => {
                        self.volumes.retain(|v| {
                            v.metadata.name.as_ref() != Some(name) || v.metadata.uid != *uid
                        });
                    }
                }
            }
        }
        self
    }
}

/// Checks that a write is conditional on the version planned for it (the stored one, or the
/// one an earlier write of the same operation wrote) and returns the version it stores.
fn checked_version(
    planned: &mut BTreeMap<String, Option<String>>,
    key: String,
    written: &ObjectMeta,
    current: &ObjectMeta,
) -> Option<String> {
    let expected = planned.get(&key).cloned().unwrap_or_else(|| current.resource_version.clone());
    assert_eq!(written.resource_version, expected, "precondition of {key}");
    planned.insert(key, written.resource_version.clone());
    bump(&current.resource_version)
}

fn bump(version: &Option<String>) -> Option<String> {
    Some((version.as_deref().unwrap().parse::<u32>().unwrap() + 1).to_string())
}

/// Returns the writes of a plan, flattened, as "kind name" strings.
fn write_kinds(plan: &Plan) -> Vec<String> {
    plan.operations
        .iter()
        .flat_map(|operation| &operation.writes)
        .map(|write| match write {
            Write::UpdateVolume(v) => format!("pv {}", v.metadata.name.clone().unwrap()),
            Write::UpdateVolumeStatus(v) => format!(
                "pv-status {} {}",
                v.metadata.name.clone().unwrap(),
                v.status.as_ref().unwrap().phase.clone().unwrap()
            ),
            Write::UpdateClaim(c) => format!("pvc {}", c.metadata.name.clone().unwrap()),
            Write::UpdateClaimStatus(c) => format!(
                "pvc-status {} {}",
                c.metadata.name.clone().unwrap(),
                c.status.as_ref().unwrap().phase.clone().unwrap()
            ),
            Write::DeleteVolume { name, .. } => format!("delete {name}"),
        })
        .collect()
}

/// Returns the events of a plan as (object name, type, reason, message).
fn events(plan: &Plan) -> Vec<(String, EventType, &'static str, String)> {
    plan.operations
        .iter()
        .flat_map(|operation| &operation.events)
        .map(|e| (e.involved.name.clone().unwrap(), e.type_, e.reason, e.message.clone()))
        .collect()
}

fn bound_volume_of(world: &World, claim: &str) -> Option<String> {
    world.claim(claim).spec.as_ref().unwrap().volume_name.clone()
}

fn annotations(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    map(pairs)
}

#[test]
fn a_claim_binds_to_the_smallest_volume_that_fits_in_four_ordered_writes() {
    let world = World {
        volumes: vec![
            pv("pv-1g", "1Gi"),
            pv("pv-20g", "20Gi"),
            pv("pv-5g", "5Gi"),
            pv("pv-10g", "10Gi"),
        ],
        claims: vec![pvc("data", "4Gi")],
        ..World::default()
    };
    let plan = world.plan();
    assert_eq!(plan.operations.len(), 1, "{plan:?}");
    assert_eq!(
        write_kinds(&plan),
        vec!["pv pv-5g", "pv-status pv-5g Bound", "pvc data", "pvc-status data Bound"]
    );
    let writes = &plan.operations[0].writes;
    let Write::UpdateVolume(volume) = &writes[0] else { panic!() };
    assert_eq!(
        volume.spec.as_ref().unwrap().claim_ref,
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some("default".into()),
            name: Some("data".into()),
            uid: Some("data-uid".into()),
            resource_version: Some("1".into()),
            field_path: None,
        })
    );
    assert_eq!(
        volume.metadata.annotations,
        annotations(&[(BOUND_BY_CONTROLLER_ANNOTATION, "yes")])
    );
    let Write::UpdateVolumeStatus(volume) = &writes[1] else { panic!() };
    assert_eq!(volume.status.as_ref().unwrap().last_phase_transition_time, Some(Time(now())));
    let Write::UpdateClaim(claim) = &writes[2] else { panic!() };
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("pv-5g"));
    assert_eq!(
        claim.metadata.annotations,
        annotations(&[(BIND_COMPLETED_ANNOTATION, "yes"), (BOUND_BY_CONTROLLER_ANNOTATION, "yes")])
    );
    let Write::UpdateClaimStatus(claim) = &writes[3] else { panic!() };
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.capacity, storage("5Gi"));
    assert_eq!(status.access_modes, modes(&["ReadWriteOnce"]));
    assert!(plan.operations[0].events.is_empty());

    // --- once written, nothing more to do
    let world = world.apply(&plan);
    assert_eq!(world.plan(), Plan::default());
}

#[test]
fn matching_table() {
    let rwx = |volume: &mut PersistentVolume| {
        volume.spec.as_mut().unwrap().access_modes = modes(&["ReadWriteOnce", "ReadWriteMany"])
    };
    let block = |volume: &mut PersistentVolume| {
        volume.spec.as_mut().unwrap().volume_mode = Some("Block".into())
    };
    let labelled = |value: &'static str| {
        move |volume: &mut PersistentVolume| volume.metadata.labels = map(&[("tier", value)])
    };
    let phase = |phase: &'static str| {
        move |volume: &mut PersistentVolume| {
            volume.status.as_mut().unwrap().phase = Some(phase.into())
        }
    };
    let selector = |selector: LabelSelector| {
        move |claim: &mut PersistentVolumeClaim| {
            claim.spec.as_mut().unwrap().selector = Some(selector)
        }
    };
    let claimed_by_other = |volume: &mut PersistentVolume| {
        volume.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some("other".into()),
            uid: Some("other-uid".into()),
            ..ObjectReference::default()
        })
    };
    // Each row: case, volumes, claim, the volume it gets.
    let cases: Vec<(&str, Vec<PersistentVolume>, PersistentVolumeClaim, Option<&str>)> = vec![
        ("too small", vec![pv("a", "1Gi")], pvc("c", "2Gi"), None),
        ("exact size fits", vec![pv("a", "2Gi")], pvc("c", "2Gi"), Some("a")),
        (
            "units compare by value",
            vec![pv("a", "2G"), pv("b", "1900Mi")],
            pvc("c", "1.8Gi"),
            Some("b"),
        ),
        (
            "class must match",
            vec![with(pv("a", "1Gi"), class_name("fast")), pv("b", "5Gi")],
            with(pvc("c", "1Gi"), claim_class("fast")),
            Some("a"),
        ),
        (
            "empty class matches only classless volumes",
            vec![with(pv("a", "1Gi"), class_name("fast"))],
            pvc("c", "1Gi"),
            None,
        ),
        (
            "access modes must be offered",
            vec![pv("a", "1Gi")],
            with(pvc("c", "1Gi"), |c| {
                c.spec.as_mut().unwrap().access_modes = modes(&["ReadWriteMany"])
            }),
            None,
        ),
        (
            "a superset of access modes serves",
            vec![with(pv("a", "1Gi"), rwx)],
            with(pvc("c", "1Gi"), |c| {
                c.spec.as_mut().unwrap().access_modes = modes(&["ReadWriteMany"])
            }),
            Some("a"),
        ),
        (
            "fewest extra access modes beat a smaller size",
            vec![with(pv("a", "1Gi"), rwx), pv("b", "10Gi")],
            pvc("c", "1Gi"),
            Some("b"),
        ),
        ("volume mode must match", vec![with(pv("a", "1Gi"), block)], pvc("c", "1Gi"), None),
        (
            "block claims get block volumes",
            vec![pv("a", "1Gi"), with(pv("b", "5Gi"), block)],
            with(pvc("c", "1Gi"), |c| c.spec.as_mut().unwrap().volume_mode = Some("Block".into())),
            Some("b"),
        ),
        (
            "selector by labels",
            vec![with(pv("a", "1Gi"), labelled("cold")), with(pv("b", "5Gi"), labelled("hot"))],
            with(
                pvc("c", "1Gi"),
                selector(LabelSelector {
                    match_labels: map(&[("tier", "hot")]),
                    ..LabelSelector::default()
                }),
            ),
            Some("b"),
        ),
        (
            "selector by expression",
            vec![with(pv("a", "1Gi"), labelled("cold")), with(pv("b", "5Gi"), labelled("hot"))],
            with(
                pvc("c", "1Gi"),
                selector(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "tier".into(),
                        operator: "NotIn".into(),
                        values: Some(vec!["cold".into()]),
                    }]),
                    ..LabelSelector::default()
                }),
            ),
            Some("b"),
        ),
        (
            "only Available volumes",
            vec![with(pv("a", "1Gi"), phase("Released"))],
            pvc("c", "1Gi"),
            None,
        ),
        ("not yet Available", vec![with(pv("a", "1Gi"), phase("Pending"))], pvc("c", "1Gi"), None),
        (
            "volumes being deleted are skipped",
            vec![with(pv("a", "1Gi"), |v| v.metadata.deletion_timestamp = Some(Time(now())))],
            pvc("c", "1Gi"),
            None,
        ),
        (
            "volumes of other claims are skipped",
            vec![with(pv("a", "1Gi"), claimed_by_other)],
            pvc("c", "1Gi"),
            None,
        ),
    ];
    for (case, volumes, claim, expected) in cases {
        let world = World { volumes, claims: vec![claim], ..World::default() }.apply_plan();
        assert_eq!(bound_volume_of(&world, "c").as_deref(), expected, "{case}");
    }
}

impl World {
    fn apply_plan(self) -> World {
        let plan = self.plan();
        self.apply(&plan)
    }
}

#[test]
fn claims_compete_for_a_volume_oldest_first() {
    let created = |seconds: i64| {
        move |claim: &mut PersistentVolumeClaim| {
            claim.metadata.creation_timestamp =
                Some(Time(now() - jiff::SignedDuration::from_secs(seconds)))
        }
    };
    let world = World {
        volumes: vec![pv("only", "10Gi")],
        claims: vec![with(pvc("young", "1Gi"), created(10)), with(pvc("old", "1Gi"), created(60))],
        ..World::default()
    };
    let plan = world.plan();
    assert_eq!(
        events(&plan),
        vec![(
            "young".into(),
            EventType::Normal,
            reason::FAILED_BINDING,
            "no persistent volumes available for this claim and no storage class is set".into()
        )]
    );
    let world = world.apply(&plan);
    assert_eq!(bound_volume_of(&world, "old").as_deref(), Some("only"));
    assert_eq!(bound_volume_of(&world, "young"), None);
}

#[test]
fn a_volume_pre_bound_to_a_claim_wins_and_stays_marked_as_the_users() {
    let reserved = with(pv("reserved", "50Gi"), |volume| {
        let spec = volume.spec.as_mut().unwrap();
        spec.storage_class_name = Some("other".into());
        spec.claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some("data".into()),
            ..ObjectReference::default()
        });
    });
    let world = World {
        volumes: vec![pv("small", "1Gi"), reserved],
        claims: vec![pvc("data", "1Gi")],
        ..World::default()
    }
    .apply_plan();
    assert_eq!(bound_volume_of(&world, "data").as_deref(), Some("reserved"));
    let volume = world.volume("reserved");
    assert_eq!(
        volume.spec.as_ref().unwrap().claim_ref.as_ref().unwrap().uid.as_deref(),
        Some("data-uid")
    );
    assert_eq!(volume.metadata.annotations, None, "a user's binding is not the controller's");
    assert_eq!(volume_phase(volume), "Bound");
    assert_eq!(volume_phase(world.volume("small")), "Available");
}

/// Volumes, and the (reason, message) the claim naming "big" gets, if any.
type NamedVolumeRow = (Vec<PersistentVolume>, Option<(&'static str, &'static str)>);

#[test]
fn a_claim_naming_its_volume_gets_it_or_is_told_why_not() {
    let named = |volume: &'static str| {
        move |claim: &mut PersistentVolumeClaim| {
            claim.spec.as_mut().unwrap().volume_name = Some(volume.into())
        }
    };
    // --- the named volume, not the smallest
    let world = World {
        volumes: vec![pv("small", "1Gi"), pv("big", "10Gi")],
        claims: vec![with(pvc("data", "1Gi"), named("big"))],
        ..World::default()
    }
    .apply_plan();
    let claim = world.claim("data");
    assert_eq!(claim_phase(claim), "Bound");
    assert_eq!(claim.metadata.annotations, annotations(&[(BIND_COMPLETED_ANNOTATION, "yes")]));
    assert_eq!(
        world.volume("big").metadata.annotations,
        annotations(&[(BOUND_BY_CONTROLLER_ANNOTATION, "yes")])
    );

    // Each row: volumes, the event the claim gets (none when it just waits).
    let bound_elsewhere = with(pv("big", "10Gi"), |volume| {
        volume.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some("other".into()),
            uid: Some("other-uid".into()),
            ..ObjectReference::default()
        });
    });
    let cases: Vec<NamedVolumeRow> = vec![
        (vec![], None),
        (
            vec![pv("big", "512Mi")],
            Some((
                reason::VOLUME_MISMATCH,
                "Cannot bind to requested volume \"big\": requested PV is too small",
            )),
        ),
        (
            vec![with(pv("big", "10Gi"), class_name("fast"))],
            Some((
                reason::VOLUME_MISMATCH,
                "Cannot bind to requested volume \"big\": storageClassName does not match",
            )),
        ),
        (
            vec![bound_elsewhere],
            Some((reason::FAILED_BINDING, "volume \"big\" already bound to a different claim.")),
        ),
    ];
    for (volumes, expected) in cases {
        let world = World {
            volumes,
            claims: vec![with(pvc("data", "1Gi"), named("big"))],
            ..World::default()
        };
        let plan = world.plan();
        let claim_events: Vec<(&str, String)> = events(&plan)
            .into_iter()
            .filter(|(name, ..)| name == "data")
            .map(|(_, kind, why, message)| {
                assert_eq!(kind, EventType::Warning);
                (why, message)
            })
            .collect();
        let expected: Vec<(&str, String)> =
            expected.into_iter().map(|(why, message)| (why, message.to_owned())).collect();
        assert_eq!(claim_events, expected);
        assert_eq!(claim_phase(world.apply(&plan).claim("data")), "Pending");
    }
}

#[test]
fn wait_for_first_consumer_binds_only_on_the_selected_node() {
    let local = class("local", "kubernetes.io/no-provisioner", "WaitForFirstConsumer");
    let world = World {
        volumes: vec![
            with(with(pv("on-n1", "10Gi"), on_node("n1")), class_name("local")),
            with(with(pv("on-n2", "5Gi"), on_node("n2")), class_name("local")),
        ],
        claims: vec![with(pvc("data", "1Gi"), claim_class("local"))],
        classes: vec![local],
        nodes: vec![node("n1"), node("n2"), node("n3")],
    };

    // --- no node selected yet: wait
    let plan = world.plan();
    assert!(write_kinds(&plan).is_empty(), "{plan:?}");
    assert_eq!(
        events(&plan),
        vec![(
            "data".into(),
            EventType::Normal,
            reason::WAIT_FOR_FIRST_CONSUMER,
            "waiting for first consumer to be created before binding".into()
        )]
    );

    // --- selected n1: the volume n1 reaches, though another is smaller
    let select = |node: &'static str| {
        move |claim: &mut PersistentVolumeClaim| {
            claim.metadata.annotations = map(&[(SELECTED_NODE_ANNOTATION, node)])
        }
    };
    let mut on_n1 = world.clone();
    on_n1.claims = vec![with(world.claims[0].clone(), select("n1"))];
    assert_eq!(bound_volume_of(&on_n1.apply_plan(), "data").as_deref(), Some("on-n1"));

    // --- selected n3: nothing reaches it, and a no-provisioner class cannot make one
    let mut on_n3 = world.clone();
    on_n3.claims = vec![with(world.claims[0].clone(), select("n3"))];
    let plan = on_n3.plan();
    assert!(write_kinds(&plan).is_empty());
    assert_eq!(
        events(&plan),
        vec![(
            "data".into(),
            EventType::Warning,
            reason::PROVISIONING_FAILED,
            "no volume plugin matched name: kubernetes.io/no-provisioner".into()
        )]
    );
}

#[test]
fn immediate_classes_without_a_volume_report_like_upstream() {
    let fast = with(pvc("data", "1Gi"), claim_class("fast"));
    // --- missing class
    let world = World { claims: vec![fast.clone()], ..World::default() };
    assert_eq!(
        events(&world.plan()),
        vec![(
            "data".into(),
            EventType::Warning,
            reason::PROVISIONING_FAILED,
            "storageclass.storage.k8s.io \"fast\" not found".into()
        )]
    );

    // --- an external provisioner is asked, by annotation, to make the volume
    let world = World {
        claims: vec![fast],
        classes: vec![class("fast", "ebs.csi.aws.com", "Immediate")],
        ..World::default()
    };
    let plan = world.plan();
    assert_eq!(write_kinds(&plan), vec!["pvc data"]);
    let message = "Waiting for a volume to be created either by the external provisioner \
                   'ebs.csi.aws.com' or manually by the system administrator. If volume creation \
                   is delayed, please verify that the provisioner is running and correctly \
                   registered.";
    assert_eq!(
        events(&plan),
        vec![("data".into(), EventType::Normal, reason::EXTERNAL_PROVISIONING, message.into())]
    );
    let world = world.apply(&plan);
    let claim = world.claim("data");
    assert_eq!(
        annotation(&claim.metadata, STORAGE_PROVISIONER_ANNOTATION),
        Some("ebs.csi.aws.com")
    );
    assert_eq!(
        annotation(&claim.metadata, BETA_STORAGE_PROVISIONER_ANNOTATION),
        Some("ebs.csi.aws.com")
    );
    assert!(write_kinds(&world.plan()).is_empty(), "annotated once");
}

#[test]
fn claims_without_any_class_get_the_default_class_when_nothing_matches() {
    let default = |name: &'static str, age: i64| {
        with(class(name, "kubernetes.io/no-provisioner", "Immediate"), |class| {
            class.metadata.annotations = map(&[(DEFAULT_CLASS_ANNOTATION, "true")]);
            class.metadata.creation_timestamp =
                Some(Time(now() - jiff::SignedDuration::from_secs(age)));
        })
    };
    let unset =
        with(pvc("data", "1Gi"), |claim| claim.spec.as_mut().unwrap().storage_class_name = None);
    let world = World {
        claims: vec![unset.clone()],
        classes: vec![
            default("old-default", 600),
            default("new-default", 60),
            class("other", "x", "Immediate"),
        ],
        ..World::default()
    };
    let world = world.apply_plan();
    let claim = world.claim("data");
    assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("new-default"));

    // A classless volume still serves a claim without a class, default or not.
    let world = World {
        volumes: vec![pv("plain", "1Gi")],
        claims: vec![unset],
        classes: vec![default("standard", 60)],
        ..World::default()
    }
    .apply_plan();
    assert_eq!(bound_volume_of(&world, "data").as_deref(), Some("plain"));

    // An explicit "" never gets the default.
    let world = World {
        claims: vec![pvc("data", "1Gi")],
        classes: vec![default("standard", 60)],
        ..World::default()
    };
    let plan = world.plan();
    assert!(write_kinds(&plan).is_empty());
    assert_eq!(events(&plan)[0].2, reason::FAILED_BINDING);
}

/// A world where claim "data" is bound to volume "vol" with the given reclaim policy.
fn bound_world(policy: &str) -> World {
    let volume = with(pv("vol", "1Gi"), |volume| {
        volume.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some(policy.into())
    });
    World { volumes: vec![volume], claims: vec![pvc("data", "1Gi")], ..World::default() }
        .apply_plan()
}

/// A reclaim policy, the writes once the claim is gone, and the (reason, message) events.
type ReclaimRow = (&'static str, Vec<&'static str>, Vec<(&'static str, &'static str)>);

#[test]
fn volumes_of_deleted_claims_are_released_then_reclaimed_by_policy() {
    // Each row: policy, writes once the claim is gone, events.
    let cases: Vec<ReclaimRow> = vec![
        ("Retain", vec!["pv-status vol Released"], vec![]),
        ("Delete", vec!["pv-status vol Released", "delete vol"], vec![]),
        (
            "Recycle",
            vec!["pv-status vol Failed"],
            vec![(reason::VOLUME_FAILED_RECYCLE, "No recycler plugin found for the volume!")],
        ),
        (
            "Scrub",
            vec!["pv-status vol Failed"],
            vec![(
                reason::VOLUME_UNKNOWN_RECLAIM_POLICY,
                "Volume has unrecognized PersistentVolumeReclaimPolicy",
            )],
        ),
    ];
    for (policy, expected_writes, expected_events) in cases {
        let mut world = bound_world(policy);
        assert_eq!(volume_phase(world.volume("vol")), "Bound", "{policy}");
        world.claims.clear();
        let plan = world.plan();
        assert_eq!(plan.operations.len(), 1, "{policy}");
        assert_eq!(write_kinds(&plan), expected_writes, "{policy}");
        let got: Vec<(&str, String)> =
            events(&plan).into_iter().map(|(_, _, why, m)| (why, m)).collect();
        let expected: Vec<(&str, String)> =
            expected_events.into_iter().map(|(why, m)| (why, m.to_owned())).collect();
        assert_eq!(got, expected, "{policy}");
        let Some(Write::UpdateVolumeStatus(status)) = plan.operations[0].writes.first() else {
            panic!()
        };
        assert_eq!(status.status.as_ref().unwrap().last_phase_transition_time, Some(Time(now())));

        // After the writes the volume stays as it is (or is gone), with no event repeated.
        let world = world.apply(&plan);
        let again = world.plan();
        if policy == "Delete" {
            assert!(world.volumes.is_empty());
        } else {
            assert_eq!(again, Plan::default(), "{policy}");
        }
    }
}

#[test]
fn volumes_deleted_by_someone_else_are_only_released() {
    let mut world = bound_world("Delete");
    world.volumes[0].spec.as_mut().unwrap().csi = Some(CSIPersistentVolumeSource {
        driver: "ebs.csi.aws.com".into(),
        volume_handle: "vol-1".into(),
        ..CSIPersistentVolumeSource::default()
    });
    world.claims.clear();
    assert_eq!(write_kinds(&world.plan()), vec!["pv-status vol Released"]);

    // A new claim of the same name is not the bound one: the volume is released all the same.
    let mut world = bound_world("Retain");
    world.claims =
        vec![with(pvc("data", "1Gi"), |claim| claim.metadata.uid = Some("new-uid".into()))];
    let plan = world.plan();
    assert!(write_kinds(&plan).contains(&"pv-status vol Released".to_owned()), "{plan:?}");
}

#[test]
fn claims_whose_volume_is_gone_or_taken_are_lost() {
    // --- the volume vanished
    let mut world = bound_world("Retain");
    world.volumes.clear();
    let plan = world.plan();
    assert_eq!(write_kinds(&plan), vec!["pvc-status data Lost"]);
    assert_eq!(
        events(&plan),
        vec![(
            "data".into(),
            EventType::Warning,
            reason::CLAIM_LOST,
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into()
        )]
    );
    let world = world.apply(&plan);
    let status = world.claim("data").status.clone().unwrap();
    assert_eq!((status.capacity, status.access_modes), (None, None));
    assert_eq!(world.plan(), Plan::default(), "Lost is reported once");

    // --- the claim lost its volumeName
    let mut world = bound_world("Retain");
    world.claims[0].spec.as_mut().unwrap().volume_name = None;
    world.volumes.clear();
    assert_eq!(
        events(&world.plan())[0].3,
        "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
    );

    // --- the volume points at another claim
    let mut world = bound_world("Retain");
    world.volumes[0].spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid =
        Some("someone-else".into());
    let plan = world.plan();
    let claim_events: Vec<_> = events(&plan).into_iter().filter(|e| e.0 == "data").collect();
    assert_eq!(claim_events[0].2, reason::CLAIM_MISBOUND);
    assert!(write_kinds(&plan).contains(&"pvc-status data Lost".to_owned()));
}

#[test]
fn volume_phases_follow_their_claim_ref() {
    let new_volume = with(pv("new", "1Gi"), |volume| volume.status = None);
    let pre_bound = with(pv("reserved", "1Gi"), |volume| {
        volume.status.as_mut().unwrap().phase = Some("Pending".into());
        volume.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some("later".into()),
            ..ObjectReference::default()
        });
    });
    let world = World { volumes: vec![new_volume, pre_bound], ..World::default() };
    assert_eq!(
        write_kinds(&world.plan()),
        vec!["pv-status new Available", "pv-status reserved Available"]
    );
}

#[test]
fn bindings_the_claim_does_not_share_are_rolled_back() {
    // The controller bound "vol" to "data", but "data" ended up with "other".
    let mut world = bound_world("Retain");
    world.volumes.push(with(pv("other", "1Gi"), |volume| {
        volume.status.as_mut().unwrap().phase = Some("Bound".into())
    }));
    world.claims[0].spec.as_mut().unwrap().volume_name = Some("other".into());
    world.volumes[1].spec.as_mut().unwrap().claim_ref =
        world.volumes[0].spec.as_ref().unwrap().claim_ref.clone();
    let world = world.apply_plan();
    let volume = world.volume("vol");
    assert_eq!(volume.spec.as_ref().unwrap().claim_ref, None);
    assert_eq!(volume.metadata.annotations, None);
    assert_eq!(volume_phase(volume), "Available");

    // A user's pre-binding only loses the uid and waits for its claim.
    let mut world = bound_world("Retain");
    world.volumes[0].metadata.annotations = None;
    world.volumes.push(with(pv("other", "1Gi"), |volume| {
        volume.status.as_mut().unwrap().phase = Some("Bound".into())
    }));
    world.claims[0].spec.as_mut().unwrap().volume_name = Some("other".into());
    world.volumes[1].spec.as_mut().unwrap().claim_ref =
        world.volumes[0].spec.as_ref().unwrap().claim_ref.clone();
    let world = world.apply_plan();
    let reference = world.volume("vol").spec.as_ref().unwrap().claim_ref.clone().unwrap();
    assert_eq!((reference.name.as_deref(), reference.uid), (Some("data"), None));
    assert_eq!(volume_phase(world.volume("vol")), "Available");
}

#[test]
fn a_half_done_binding_is_finished() {
    // The volume's claimRef was written, the claim writes failed.
    let world = World {
        volumes: vec![pv("vol", "1Gi")],
        claims: vec![pvc("data", "1Gi")],
        ..World::default()
    };
    let plan = world.plan();
    let mut first = plan.clone();
    first.operations[0].writes.truncate(1);
    let world = world.apply(&first);
    let plan = world.plan();
    assert_eq!(
        write_kinds(&plan),
        vec!["pv-status vol Bound", "pvc data", "pvc-status data Bound"]
    );
    assert_eq!(world.apply(&plan).plan(), Plan::default());
}

#[test]
fn volume_mode_mismatch_of_a_pre_bound_pair_is_reported_on_both() {
    let volume = with(pv("vol", "1Gi"), |volume| {
        let spec = volume.spec.as_mut().unwrap();
        spec.volume_mode = Some("Block".into());
        spec.claim_ref = Some(ObjectReference {
            namespace: Some("default".into()),
            name: Some("data".into()),
            uid: Some("data-uid".into()),
            ..ObjectReference::default()
        });
        volume.status.as_mut().unwrap().phase = Some("Bound".into());
    });
    let world =
        World { volumes: vec![volume], claims: vec![pvc("data", "1Gi")], ..World::default() };
    let plan = world.plan();
    assert!(write_kinds(&plan).is_empty(), "{plan:?}");
    let reasons: Vec<(String, &str)> = events(&plan)
        .into_iter()
        .filter(|e| e.2 == reason::VOLUME_MISMATCH)
        .map(|e| (e.0, e.2))
        .collect();
    assert_eq!(
        reasons,
        vec![("vol".into(), reason::VOLUME_MISMATCH), ("data".into(), reason::VOLUME_MISMATCH)]
    );
}
