//! The real kubectl (the version the server reports, through the dispatcher) against a
//! 3-master `flotilla up`, as a user would drive it.

use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};
use std::time::Duration;

use flotilla_chaos_tests::{stdout_of, wait_until, Cluster};
use nix::sys::signal::Signal;

fn stderr_of(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        env:
        - {name: MODE, value: one}
      - name: side
        image: busybox:1.36
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_a_three_master_cluster() -> anyhow::Result<()> {
    eprintln!("--- start a 3-master cluster");
    let cluster = Cluster::start(3)?;
    let work = cluster.dir.join("work");
    std::fs::create_dir_all(&work)?;
    let file = |name: &str, text: &str| -> anyhow::Result<String> {
        let path = work.join(name);
        std::fs::write(&path, text)?;
        Ok(path.display().to_string())
    };

    eprintln!("--- version and discovery");
    let version = stdout_of(&cluster.kubectl(&["version"])?)?;
    assert!(version.contains("Server Version: v1.33.0"), "{version}");
    let resources = stdout_of(&cluster.kubectl(&["api-resources"])?)?;
    for expected in
        ["deployments", "customresourcedefinitions", "horizontalpodautoscalers", "leases"]
    {
        assert!(resources.contains(expected), "api-resources lacks {expected}: {resources}");
    }
    let namespaces = stdout_of(&cluster.kubectl(&["get", "namespaces", "-o", "name"])?)?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(&format!("namespace/{ns}")), "{namespaces}");
    }

    eprintln!("--- create -f, apply with strict validation, re-apply with a change");
    let deployment = file("deployment.yaml", DEPLOYMENT)?;
    assert_eq!(
        stdout_of(&cluster.kubectl(&["create", "-f", &deployment])?)?,
        "deployment.apps/web created\n"
    );
    let configmap = file(
        "configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, labels: {app: web}}\ndata: {color: blue}\n",
    )?;
    assert_eq!(
        stdout_of(&cluster.kubectl(&["apply", "-f", &configmap])?)?,
        "configmap/settings created\n"
    );
    std::fs::write(&configmap, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, labels: {app: web}}\ndata: {color: green}\n")?;
    assert_eq!(
        stdout_of(&cluster.kubectl(&["apply", "-f", &configmap])?)?,
        "configmap/settings configured\n"
    );
    assert_eq!(
        stdout_of(&cluster.kubectl(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.color}"
        ])?)?,
        "green"
    );
    std::fs::write(&deployment, DEPLOYMENT.replace("value: one", "value: two"))?;
    assert_eq!(
        stdout_of(&cluster.kubectl(&["apply", "-f", &deployment])?)?,
        "deployment.apps/web configured\n"
    );
    let env = stdout_of(&cluster.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name} {.spec.template.spec.containers[0].env[0].value} {.metadata.generation}",
    ])?)?;
    assert_eq!(env, "main side two 2");

    eprintln!("--- diff shows a pending change and exits 1");
    std::fs::write(
        &deployment,
        DEPLOYMENT.replace("replicas: 2", "replicas: 3").replace("value: one", "value: two"),
    )?;
    let diff = cluster.kubectl(&["diff", "-f", &deployment])?;
    assert_eq!(diff.status.code(), Some(1), "{}", String::from_utf8_lossy(&diff.stderr));
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff_text.contains("-  replicas: 2") && diff_text.contains("+  replicas: 3"),
        "{diff_text}"
    );

    eprintln!("--- apply --server-side: field ownership, conflicts, --force-conflicts");
    let owned = |size: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: owned}}\ndata: {{size: {size}}}\n"
        )
    };
    let ssa = file("ssa.yaml", &owned("small"))?;
    assert_eq!(
        stdout_of(&cluster.kubectl(&["apply", "--server-side", "-f", &ssa])?)?,
        "configmap/owned serverside-applied\n"
    );
    stdout_of(&cluster.kubectl(&[
        "patch",
        "configmap",
        "owned",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"size":"large"}}"#,
    ])?)?;
    std::fs::write(&ssa, owned("medium"))?;
    let conflict = stderr_of(&cluster.kubectl(&["apply", "--server-side", "-f", &ssa])?);
    assert!(
        conflict.starts_with(r#"error: Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.size"#),
        "{conflict}"
    );
    stdout_of(&cluster.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &ssa])?)?;
    let managers = stdout_of(&cluster.kubectl(&[
        "get",
        "configmap",
        "owned",
        "--show-managed-fields",
        "-o",
        "jsonpath={.data.size} {.metadata.managedFields[*].manager}",
    ])?)?;
    assert!(managers.starts_with("medium ") && managers.contains("kubectl"), "{managers}");

    eprintln!("--- create configmap, secret, namespace, deployment (protobuf bodies)");
    for args in [
        &["create", "configmap", "plain", "--from-literal=a=1"][..],
        &["create", "secret", "generic", "token", "--from-literal=password=s3cret"],
        &["create", "namespace", "team"],
        &["create", "deployment", "api", "--image=busybox:1.36", "--replicas=1", "-n", "team"],
    ] {
        stdout_of(&cluster.kubectl(args)?)?;
    }
    let secret = stdout_of(&cluster.kubectl(&[
        "get",
        "secret",
        "token",
        "-o",
        "jsonpath={.data.password}",
    ])?)?;
    assert_eq!(secret, "czNjcmV0");

    eprintln!("--- get: table, wide, yaml, json, labels, fields, all namespaces, chunks");
    let table = stdout_of(&cluster.kubectl(&["get", "deployments"])?)?;
    assert!(
        table.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    0/2"),
        "{table}"
    );
    let wide = stdout_of(&cluster.kubectl(&["get", "deployments", "-o", "wide"])?)?;
    assert!(
        wide.contains("CONTAINERS") && wide.contains("main,side") && wide.contains("app=web"),
        "{wide}"
    );
    let yaml = stdout_of(&cluster.kubectl(&["get", "configmap", "settings", "-o", "yaml"])?)?;
    assert!(yaml.contains("color: green") && yaml.contains("resourceVersion:"), "{yaml}");
    let json: serde_json::Value = serde_json::from_str(&stdout_of(&cluster.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "json",
    ])?)?)?;
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate");
    let labelled = stdout_of(&cluster.kubectl(&[
        "get",
        "configmaps,deployments",
        "-l",
        "app in (web),!missing",
        "-o",
        "name",
    ])?)?;
    assert_eq!(labelled, "configmap/settings\n");
    let by_field = stdout_of(&cluster.kubectl(&[
        "get",
        "configmaps",
        "--field-selector",
        "metadata.name!=settings",
        "-o",
        "name",
    ])?)?;
    assert!(by_field.contains("configmap/plain") && !by_field.contains("settings"), "{by_field}");
    let everywhere = stdout_of(&cluster.kubectl(&["get", "deployments", "-A"])?)?;
    assert!(
        everywhere.contains("team        api") && everywhere.contains("default     web"),
        "{everywhere}"
    );
    for i in 0..5 {
        stdout_of(&cluster.kubectl(&[
            "create",
            "configmap",
            &format!("chunk-{i}"),
            "-n",
            "team",
        ])?)?;
    }
    let chunked = stdout_of(&cluster.kubectl(&[
        "get",
        "configmaps",
        "-n",
        "team",
        "--chunk-size=2",
        "-o",
        "name",
    ])?)?;
    assert_eq!(
        chunked.lines().filter(|l| l.starts_with("configmap/chunk-")).count(),
        5,
        "{chunked}"
    );

    eprintln!("--- get -w sees a change made by another command");
    let mut watch = cluster
        .kubectl_command(&["get", "deployment", "web", "-w", "--no-headers"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let first = receiver.recv_timeout(Duration::from_secs(20))?;
    assert!(first.starts_with("web") && first.contains("0/2"), "{first}");
    assert_eq!(
        stdout_of(&cluster.kubectl(&["scale", "deployment", "web", "--replicas=4"])?)?,
        "deployment.apps/web scaled\n"
    );
    let changed = receiver.recv_timeout(Duration::from_secs(20))?;
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(changed.contains("0/4"), "{changed}");

    eprintln!("--- label, annotate, patch (strategic, merge, json), edit");
    stdout_of(&cluster.kubectl(&["label", "deployment", "web", "env=prod"])?)?;
    stdout_of(&cluster.kubectl(&["annotate", "deployment", "web", "owner=team-a"])?)?;
    stdout_of(&cluster.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1.37"}]}}}}"#,
    ])?)?;
    stdout_of(&cluster.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ])?)?;
    stdout_of(&cluster.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/revisionHistoryLimit","value":3}]"#,
    ])?)?;
    let edited = cluster
        .kubectl_command(&["edit", "deployment", "web"])
        .env("EDITOR", "sed -i -e 's/replicas: 4/replicas: 5/'")
        .output()?;
    assert_eq!(stdout_of(&edited)?, "deployment.apps/web edited\n");
    let state = stdout_of(&cluster.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.labels.env} {.metadata.annotations.owner} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[1].image} {.metadata.labels.merged} {.spec.revisionHistoryLimit} {.spec.replicas}",
    ])?)?;
    assert_eq!(state, "prod team-a busybox:1.36 busybox:1.37 yes 3 5");

    eprintln!("--- describe shows stored events");
    let uid = stdout_of(&cluster.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.uid}",
    ])?)?;
    let event = file(
        "event.yaml",
        &format!(
            "apiVersion: v1\nkind: Event\nmetadata: {{name: web.1}}\ninvolvedObject: {{kind: Deployment, name: web, namespace: default, uid: {uid}, apiVersion: apps/v1}}\nreason: ScalingReplicaSet\nmessage: Scaled up replica set web-1 to 5\ntype: Normal\nsource: {{component: deployment-controller}}\ncount: 1\n"
        ),
    )?;
    stdout_of(&cluster.kubectl(&["create", "-f", &event])?)?;
    let described = stdout_of(&cluster.kubectl(&["describe", "deployment", "web"])?)?;
    assert!(described.contains("Replicas:               5 desired"), "{described}");
    assert!(
        described.contains("ScalingReplicaSet")
            && described.contains("Scaled up replica set web-1 to 5"),
        "{described}"
    );

    eprintln!("--- explain, auth whoami, auth can-i");
    let explained = stdout_of(&cluster.kubectl(&["explain", "deployment.spec.replicas"])?)?;
    assert!(explained.contains("FIELD: replicas <integer>"), "{explained}");
    let whoami = stdout_of(&cluster.kubectl(&["auth", "whoami"])?)?;
    assert!(whoami.contains("admin") && whoami.contains("system:masters"), "{whoami}");
    assert_eq!(stdout_of(&cluster.kubectl(&["auth", "can-i", "delete", "deployments"])?)?, "yes\n");

    eprintln!("--- invalid input gets Kubernetes' errors and changes nothing");
    let unknown = file(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndta: {a: b}\n",
    )?;
    assert_eq!(
        stderr_of(&cluster.kubectl(&["apply", "-f", &unknown])?),
        format!("Error from server (BadRequest): error when creating \"{unknown}\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dta\"")
    );
    let bad_name =
        file("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n")?;
    assert!(stderr_of(&cluster.kubectl(&["create", "-f", &bad_name])?).starts_with(
        "The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters"
    ));
    let stale = stdout_of(&cluster.kubectl(&["get", "configmap", "settings", "-o", "yaml"])?)?;
    let stale = file("stale.yaml", &stale)?;
    stdout_of(&cluster.kubectl(&["label", "configmap", "settings", "touched=yes"])?)?;
    assert_eq!(
        stderr_of(&cluster.kubectl(&["replace", "-f", &stale])?),
        format!("Error from server (Conflict): error when replacing \"{stale}\": Operation cannot be fulfilled on configmaps \"settings\": the object has been modified; please apply your changes to the latest version and try again")
    );
    let gone = cluster.kubectl(&["get", "configmaps", "typo", "Bad_Name"])?;
    assert!(!gone.status.success());

    eprintln!("--- delete waits until gone; deleting a namespace deletes what is in it");
    assert_eq!(
        stdout_of(&cluster.kubectl(&["delete", "configmap", "plain"])?)?,
        "configmap \"plain\" deleted\n"
    );
    assert!(!cluster.kubectl(&["get", "configmap", "plain"])?.status.success());
    assert_eq!(
        stdout_of(&cluster.kubectl(&["delete", "namespace", "team", "--timeout=30s"])?)?,
        "namespace \"team\" deleted\n"
    );
    let left = stdout_of(&cluster.kubectl(&[
        "get",
        "deployments,configmaps",
        "-n",
        "team",
        "-o",
        "name",
    ])?)?;
    assert_eq!(left, "");
    assert!(!cluster.kubectl(&["get", "namespace", "team"])?.status.success());

    eprintln!("--- kill -9 the master kubectl talks to; another master serves the same objects");
    cluster.signal(0, Signal::SIGKILL)?;
    let second = cluster.members[1].api_url()?;
    let server = format!("--server={second}");
    wait_until(Duration::from_secs(20), "a write through the second master", || async {
        cluster
            .kubectl(&[&server, "create", "configmap", "after-failover"])
            .is_ok_and(|o| o.status.success())
    })
    .await?;
    let names = stdout_of(&cluster.kubectl(&[&server, "get", "configmaps", "-o", "name"])?)?;
    for expected in ["configmap/settings", "configmap/after-failover"] {
        assert!(names.contains(expected), "{names}");
    }
    let replicas = stdout_of(&cluster.kubectl(&[
        &server,
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ])?)?;
    assert_eq!(replicas, "5");
    Ok(())
}
