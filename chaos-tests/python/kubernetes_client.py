"""The official Python `kubernetes` client against a Flotilla cluster.

Usage: kubernetes_client.py KUBECONFIG ETCD_ENV

Creates, lists, watches from a resourceVersion, patches and deletes objects, then compacts the
store with etcdctl and checks that a watch from before the compaction fails with 410 Gone.
"""

import os
import subprocess
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NAMESPACE = "python-client"


def etcd_environment(path):
    env = dict(os.environ)
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = value
    return env


def config_map(name, data=None):
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "py"}), data=data or {}
    )


def main(kubeconfig, etcd_env):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    print("--- create")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    created = core.create_namespaced_config_map(NAMESPACE, config_map("first", {"k": "v"}))
    assert created.metadata.uid and created.metadata.resource_version, created.metadata
    deployment = apps.create_namespaced_deployment(
        NAMESPACE,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
                },
            },
        },
    )
    assert deployment.metadata.generation == 1

    print("--- list with a label selector")
    listed = core.list_namespaced_config_map(NAMESPACE, label_selector="app=py")
    assert [item.metadata.name for item in listed.items] == ["first"], listed.items
    since = listed.metadata.resource_version

    print("--- patch, create, delete, then watch from the list's resourceVersion")
    patched = core.patch_namespaced_config_map("first", NAMESPACE, {"data": {"k": "changed"}})
    assert patched.data == {"k": "changed"}, patched.data
    scaled = apps.patch_namespaced_deployment_scale("web", NAMESPACE, {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3
    core.create_namespaced_config_map(NAMESPACE, config_map("second"))
    core.delete_namespaced_config_map("first", NAMESPACE)
    events = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map, NAMESPACE, resource_version=since, timeout_seconds=20
    ):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            stream.stop()
    assert events == [("MODIFIED", "first"), ("ADDED", "second"), ("DELETED", "first")], events

    print("--- delete")
    try:
        core.read_namespaced_config_map("first", NAMESPACE)
        raise AssertionError("deleted config map still readable")
    except ApiException as error:
        assert error.status == 404, error

    print("--- a watch from a compacted resourceVersion fails with 410")
    core.patch_namespaced_config_map("second", NAMESPACE, {"data": {"x": "1"}})
    now = core.list_namespaced_config_map(NAMESPACE).metadata.resource_version
    subprocess.run(["etcdctl", "compact", now], env=etcd_environment(etcd_env), check=True)
    try:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, NAMESPACE, resource_version=since, timeout_seconds=10
        ):
            pass
        raise AssertionError("watch from a compacted resourceVersion did not fail")
    except ApiException as error:
        assert error.status == 410, error

    core.delete_namespace(NAMESPACE)
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
