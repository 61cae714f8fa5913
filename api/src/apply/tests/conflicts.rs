//! Applies that conflict or fail, and how ownership moves between managers.

use serde_json::{json, Value};

use super::*;

#[test]
fn changing_a_field_an_updater_owns_conflicts_unless_forced() {
    let meta = deployment_meta();
    let mut created = deployment(Some(2), &[("nginx", "nginx:1.25")]);
    record_update(None, &mut created, "kubectl-client-side-apply", "apps/v1", None, &meta, T1);

    // --- the same value is no conflict: both own it
    let shared =
        apply(Some(&created), &deployment(Some(2), &[]), "deployer", false, &meta, T2).unwrap();
    assert!(owned(&shared, "kubectl-client-side-apply", "Update").has(&path(".spec.replicas")));
    assert!(owned(&shared, "deployer", "Apply").has(&path(".spec.replicas")));

    // --- another value conflicts
    let error =
        apply(Some(&created), &deployment(Some(3), &[]), "deployer", false, &meta, T2).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: \
         .spec.replicas"
    );
    assert_eq!((error.status().code(), error.status().reason()), (409, "Conflict"));
    let ApplyError::Conflicts(conflicts) = &error else { panic!("{error:?}") };
    assert_eq!(conflicts[0].field, ".spec.replicas");
    assert_eq!(
        conflicts[0].cause_message(),
        "conflict with \"kubectl-client-side-apply\" using apps/v1"
    );

    // --- forced, the applier takes the field over
    let forced =
        apply(Some(&created), &deployment(Some(3), &[]), "deployer", true, &meta, T2).unwrap();
    assert_eq!(forced["spec"]["replicas"], json!(3));
    assert!(owned(&forced, "deployer", "Apply").has(&path(".spec.replicas")));
    let csa = owned(&forced, "kubectl-client-side-apply", "Update");
    assert!(!csa.has(&path(".spec.replicas")));
    assert!(csa.has(&path(".spec.template.spec.containers[name=\"nginx\"].image")));
}

#[test]
fn conflicts_with_several_managers_are_listed_by_manager() {
    let meta = deployment_meta();
    let mut object = deployment(Some(2), &[("a", "a:1")]);
    record_update(None, &mut object, "zeta", "apps/v1", None, &meta, T1);
    let live = apply(Some(&object), &deployment(None, &[("b", "b:1")]), "alpha", false, &meta, T2)
        .unwrap();
    let error = apply(
        Some(&live),
        &deployment(Some(5), &[("a", "a:2"), ("b", "b:2")]),
        "third",
        false,
        &meta,
        T3,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"alpha\":\n\
         - .spec.template.spec.containers[name=\"b\"].image\n\
         conflicts with \"zeta\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"a\"].image"
    );
}

#[test]
fn scaling_moves_replicas_to_the_updater() {
    let meta = deployment_meta();
    let live =
        apply(None, &deployment(Some(2), &[("nginx", "nginx:1")]), "deployer", false, &meta, T1)
            .unwrap();

    // --- `kubectl scale` writes through the scale subresource with manager kubectl
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(Some(&live), &mut scaled, "kubectl", "apps/v1", Some("scale"), &meta, T2);

    assert!(!owned(&scaled, "deployer", "Apply").has(&path(".spec.replicas")));
    let scaler = entry(&scaled, "kubectl", "Update").unwrap();
    assert_eq!(scaler["subresource"], json!("scale"));
    assert_eq!(scaler["time"], json!(T2));
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));

    // --- the deployer re-applying its old count now conflicts with the scaler
    let error = apply(
        Some(&scaled),
        &deployment(Some(2), &[("nginx", "nginx:1")]),
        "deployer",
        false,
        &meta,
        T3,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using \
         apps/v1: .spec.replicas"
    );
    // --- leaving replicas out leaves the scaled count alone
    let reapplied = apply(
        Some(&scaled),
        &deployment(None, &[("nginx", "nginx:1")]),
        "deployer",
        false,
        &meta,
        T3,
    )
    .unwrap();
    assert_eq!(reapplied["spec"]["replicas"], json!(5));
}

#[test]
fn kubectl_takes_over_fields_its_client_side_apply_set() {
    let meta = deployment_meta();
    let mut config = deployment(Some(2), &[("nginx", "nginx:1")]);
    let mut live = config.clone();
    live["metadata"]["annotations"] =
        json!({LAST_APPLIED_ANNOTATION: format!("{}\n", path::go_json(&config))});
    record_update(None, &mut live, "kubectl-client-side-apply", "apps/v1", None, &meta, T1);

    config["spec"]["replicas"] = json!(3);
    // Another manager would conflict; kubectl may upgrade from client-side apply.
    assert!(apply(Some(&live), &config, "other", false, &meta, T2).is_err());
    let upgraded = apply(Some(&live), &config, "kubectl", false, &meta, T2).unwrap();
    assert_eq!(upgraded["spec"]["replicas"], json!(3));
    let annotation = &upgraded["metadata"]["annotations"][LAST_APPLIED_ANNOTATION];
    assert_eq!(annotation, &json!(format!("{}\n", path::go_json(&config))));
}

#[test]
fn first_apply_to_an_untracked_object_credits_its_fields_to_before_first_apply() {
    let meta = deployment_meta();
    let live = deployment(Some(2), &[("nginx", "nginx:1")]);
    let error =
        apply(Some(&live), &deployment(Some(3), &[]), "deployer", false, &meta, T1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn malformed_applies_fail_like_kubernetes() {
    let meta = deployment_meta();
    let live = apply(None, &deployment(Some(1), &[("a", "a:1")]), "m", false, &meta, T1).unwrap();
    let renamed = {
        let mut config = deployment(None, &[]);
        config["metadata"]["name"] = json!("other");
        config
    };
    let moved = {
        let mut config = deployment(None, &[]);
        config["metadata"]["namespace"] = json!("elsewhere");
        config
    };
    let with_managed_fields = {
        let mut config = deployment(None, &[]);
        config["metadata"]["managedFields"] = json!([]);
        config
    };
    let cases: [(&str, Value, &str, u16); 6] = [
        (
            "not an object",
            json!(["a"]),
            "error decoding YAML: error unmarshaling JSON: while decoding JSON: json: cannot \
             unmarshal array into Go value of type map[string]interface {}",
            400,
        ),
        (
            "another kind",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
            "invalid object type: /v1, Kind=Pod",
            400,
        ),
        ("managed fields", with_managed_fields, "metadata.managedFields must be nil", 400),
        (
            "renamed",
            renamed,
            "the name of the object (other) does not match the name on the URL (web)",
            400,
        ),
        (
            "moved",
            moved,
            "the namespace of the provided object does not match the namespace sent on the request",
            400,
        ),
        (
            "duplicate keys",
            deployment(None, &[("a", "a:1"), ("a", "a:2")]),
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): \
             .spec.template.spec.containers: duplicate entries for key [name=\"a\"]",
            500,
        ),
    ];
    for (name, config, message, code) in cases {
        let error = apply(Some(&live), &config, "m", false, &meta, T2).unwrap_err();
        assert_eq!((error.to_string().as_str(), error.status().code()), (message, code), "{name}");
    }
    let missing_key = deployment(None, &[]);
    let mut missing_key = missing_key;
    missing_key["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
    let error = apply(None, &missing_key, "m", false, &meta, T2).unwrap_err();
    assert_eq!(
        error.to_string(),
        "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): \
         .spec.template.spec.containers: element 0: associative list with keys has an element \
         that omits all key fields [\"name\"] (and doesn't have default values for any key fields)"
    );
    let with_uid = {
        let mut config = deployment(None, &[]);
        config["metadata"]["uid"] = json!("1234");
        config
    };
    let error = apply(None, &with_uid, "m", false, &meta, T2).unwrap_err();
    assert_eq!(error.status().code(), 409);
}

#[test]
fn a_field_a_controller_took_over_survives_the_appliers_removal() {
    let meta = deployment_meta();
    let mut config = deployment(None, &[("a", "a:1")]);
    config["metadata"]["labels"] = json!({"x": "1"});
    let live = apply(None, &config, "deployer", false, &meta, T1).unwrap();

    // --- a controller rewrites the label with an update
    let mut changed = live.clone();
    changed["metadata"]["labels"]["x"] = json!("2");
    record_update(Some(&live), &mut changed, "controller", "apps/v1", None, &meta, T2);
    assert!(!owned(&changed, "deployer", "Apply").has(&path(".metadata.labels.x")));

    // --- the deployer stops applying the label: it is no longer the deployer's to remove
    let reapplied =
        apply(Some(&changed), &deployment(None, &[("a", "a:1")]), "deployer", false, &meta, T3)
            .unwrap();
    assert_eq!(reapplied["metadata"]["labels"], json!({"x": "2"}));
    assert!(owned(&reapplied, "controller", "Update").has(&path(".metadata.labels.x")));
}

#[test]
fn field_managers_are_validated_like_patch_options() {
    let meta = deployment_meta();
    let config = deployment(None, &[]);
    let long = "m".repeat(129);
    let cases: [(&str, &str); 3] = [
        ("", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"),
        (&long, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"),
        (
            "a\tb",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Invalid value: \"a\\tb\": invalid \
             character U+0009 (at position 1)",
        ),
    ];
    for (manager, message) in cases {
        let error = apply(None, &config, manager, false, &meta, T1).unwrap_err();
        assert_eq!(
            (error.to_string().as_str(), error.status().code()),
            (message, 422),
            "{manager}"
        );
    }
}
