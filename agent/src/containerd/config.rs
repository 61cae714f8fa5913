//! The files that configure the node's containerd and its pod network, rendered without IO and
//! written atomically.
//!
//! Each setting that differs from containerd 1.6's defaults says why: most are what a node needs
//! to run pods at all on machines where root lacks `CAP_SYS_RESOURCE` and systemd is not PID 1,
//! and what lets several nodes' containerds share one machine.

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::json;

use super::{ContainerdError, Layout};

/// containerd's configuration (version 2, containerd 1.6) for `layout`.
pub fn render_config(
    layout: &Layout,
    pause_image: &str,
    runc: &Path,
    cni_bin_dir: &Path,
) -> String {
    let root = toml_string(&layout.root().display().to_string());
    let state = toml_string(&layout.state().display().to_string());
    let socket = toml_string(&layout.socket().display().to_string());
    let ttrpc = toml_string(&layout.ttrpc_socket().display().to_string());
    let opt = toml_string(&layout.root().join("opt").display().to_string());
    let pause_image = toml_string(pause_image);
    let runc = toml_string(&runc.display().to_string());
    let cni_bin_dir = toml_string(&cni_bin_dir.display().to_string());
    let cni_conf_dir = toml_string(&layout.cni_conf_dir().display().to_string());
    format!(
        r#"# Written by the flotilla agent at every start; edits are lost.
# `containerd --config <this file> config dump` shows it merged with the defaults.
version = 2
root = {root}
state = {state}
# Not kubelet's -999: root here may lack CAP_SYS_RESOURCE, and lowering a score needs it.
oom_score = 0

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  level = "info"

[plugins]
  # This containerd's own /opt for plugin binaries (the default /opt/containerd is shared).
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = {pause_image}
    # Port 0: the exec/attach/port-forward streaming server takes a free port, so several
    # nodes' containerds share one machine.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    # Sandbox network namespaces go under the state directory, not the shared /var/run/netns.
    netns_mounts_under_state_dir = true
    # cgroupfs driver: systemd need not be PID 1. runc's fs driver handles cgroup v1, v2 and
    # the hybrid layout (v1 controllers plus v2 at /sys/fs/cgroup/unified).
    systemd_cgroup = false
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    max_container_log_line_size = 16384
    # containerd gives sandboxes oom_score_adj -998; without CAP_SYS_RESOURCE runc fails every
    # sandbox start ("failed to update /proc/self/oom_score_adj: Permission denied"). This
    # clamps every container's score to at least containerd's own (0).
    restrict_oom_score_adj = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = {runc}
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = {cni_bin_dir}
      conf_dir = {cni_conf_dir}
      max_conf_num = 1
"#
    )
}

/// The node's CNI network: pods on the node's bridge with addresses from `pod_cidr` (host-local
/// leases in the layout's CNI data directory) and `hostPort`s through portmap. The bridge does
/// not masquerade: traffic to other nodes' pods keeps its address, and the node's egress table
/// ([`flotilla_net::pod_network`]) masquerades the rest. containerd 1.6 sets up `lo` itself, so loopback needs no entry.
pub fn render_cni(layout: &Layout, pod_cidr: &str) -> String {
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": layout.network(),
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge(),
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": layout.cni_data_dir().join("networks"),
                },
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    // Serializing a `Value` cannot fail: every key is a string.
    let mut text = serde_json::to_string_pretty(&conflist).unwrap_or_default();
    text.push('\n');
    text
}

/// Checks that `cidr` is an IPv4 network the bridge can hand addresses out of.
pub fn validate_pod_cidr(cidr: &str) -> Result<(), ContainerdError> {
    let invalid = |reason: &str| ContainerdError::InvalidPodCidr {
        cidr: cidr.to_string(),
        reason: reason.to_string(),
    };
    let (address, prefix) = cidr.split_once('/').ok_or_else(|| invalid("not address/prefix"))?;
    let address: Ipv4Addr =
        address.parse().map_err(|_| invalid("only IPv4 pod networks are supported"))?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid("the prefix is not a number"))?;
    if !(8..=30).contains(&prefix) {
        return Err(invalid("the prefix must be between /8 and /30"));
    }
    let host_bits = u32::MAX >> prefix;
    if u32::from(address) & host_bits != 0 {
        return Err(invalid("host bits are set"));
    }
    Ok(())
}

/// Writes `text` to `path` unless it already holds exactly that: first to a hidden temporary
/// file beside it, then renamed over it, so a reader (containerd's CNI directory watcher) sees
/// the old file or the new one, never half of one. Returns whether it wrote.
pub(crate) async fn write_if_changed(path: &Path, text: &str) -> Result<bool, ContainerdError> {
    match tokio::fs::read_to_string(path).await {
        Ok(current) if current == text => return Ok(false),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(ContainerdError::io("reading", path)(err)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(ContainerdError::io("creating", dir))?;
    // The name must not end in .conf/.conflist/.json, or containerd would load it half-written.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&temporary, text).await.map_err(ContainerdError::io("writing", &temporary))?;
    tokio::fs::rename(&temporary, path).await.map_err(ContainerdError::io("replacing", path))?;
    Ok(true)
}

/// A TOML basic string holding `value`.
fn toml_string(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn layout() -> Layout {
        Layout::new(Path::new("/var/lib/flotilla"), "node-1").unwrap()
    }

    fn config() -> String {
        render_config(
            &layout(),
            "flotilla.local/pause:1",
            Path::new("/usr/sbin/runc"),
            Path::new("/usr/lib/cni"),
        )
    }

    /// The config's settings as `key = value` lines, indentation and comments dropped.
    fn settings(config: &str) -> Vec<String> {
        config
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(String::from)
            .collect()
    }

    #[test]
    fn config_holds_every_setting_a_node_needs() {
        let config = config();
        let settings = settings(&config);
        let base = "/var/lib/flotilla/containerd";
        for expected in [
            "version = 2".to_string(),
            format!(r#"root = "{base}/root""#),
            format!(r#"state = "{base}/state""#),
            "oom_score = 0".to_string(),
            format!(r#"address = "{base}/state/containerd.sock""#),
            format!(r#"address = "{base}/state/containerd.sock.ttrpc""#),
            format!(r#"path = "{base}/root/opt""#),
            r#"sandbox_image = "flotilla.local/pause:1""#.to_string(),
            r#"stream_server_port = "0""#.to_string(),
            "netns_mounts_under_state_dir = true".to_string(),
            "systemd_cgroup = false".to_string(),
            "disable_hugetlb_controller = true".to_string(),
            "tolerate_missing_hugetlb_controller = true".to_string(),
            "restrict_oom_score_adj = true".to_string(),
            r#"snapshotter = "overlayfs""#.to_string(),
            r#"runtime_type = "io.containerd.runc.v2""#.to_string(),
            r#"BinaryName = "/usr/sbin/runc""#.to_string(),
            "SystemdCgroup = false".to_string(),
            r#"bin_dir = "/usr/lib/cni""#.to_string(),
            format!(r#"conf_dir = "{base}/net.d""#),
            "max_conf_num = 1".to_string(),
        ] {
            assert!(settings.contains(&expected), "missing {expected:?} in\n{config}");
        }
    }

    #[test]
    fn config_sections_are_where_containerd_reads_them() {
        let config = config();
        let order = [
            "[grpc]",
            "[ttrpc]",
            r#"[plugins."io.containerd.internal.v1.opt"]"#,
            r#"[plugins."io.containerd.grpc.v1.cri"]"#,
            r#"[plugins."io.containerd.grpc.v1.cri".containerd]"#,
            r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]"#,
            r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]"#,
            r#"[plugins."io.containerd.grpc.v1.cri".cni]"#,
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|section| {
                config.find(&format!("{section}\n")).unwrap_or_else(|| panic!("no {section}"))
            })
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{positions:?}");
        // The settings before the first table are top-level keys.
        let top: Vec<String> = settings(&config[..positions[0]]);
        assert_eq!(top.len(), 4, "{top:?}");
        // Each key appears once per table.
        let cri = &config[positions[3]..positions[4]];
        assert_eq!(cri.matches("sandbox_image").count(), 1);
    }

    #[test]
    fn config_quotes_paths_as_toml_strings() {
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        assert_eq!(toml_string("tab\there"), r#""tab\u0009here""#);
        let config = render_config(
            &Layout::new(Path::new("/data/with \"quote\""), "n").unwrap(),
            "p:1",
            Path::new("/r"),
            Path::new("/c"),
        );
        assert!(config.contains(r#"root = "/data/with \"quote\"/containerd/root""#), "{config}");
    }

    #[test]
    fn cni_network_uses_the_nodes_bridge_and_pod_cidr() {
        let layout = layout();
        let conflist: serde_json::Value =
            serde_json::from_str(&render_cni(&layout, "10.244.3.0/24")).unwrap();
        assert_eq!(conflist["cniVersion"], "1.0.0");
        assert_eq!(conflist["name"], layout.network());
        let plugins = conflist["plugins"].as_array().unwrap();
        let types: Vec<&str> = plugins.iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["bridge", "portmap"]);
        let bridge = &plugins[0];
        assert_eq!(bridge["bridge"], layout.bridge());
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert_eq!(bridge["hairpinMode"], true);
        let ipam = &bridge["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.244.3.0/24");
        assert_eq!(ipam["routes"][0]["dst"], "0.0.0.0/0");
        let data_dir = PathBuf::from(ipam["dataDir"].as_str().unwrap());
        assert_eq!(data_dir, layout.cni_data_dir().join("networks"));
        assert_eq!(plugins[1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn pod_cidrs_must_be_ipv4_networks() {
        for good in ["10.244.0.0/24", "10.88.0.0/16", "192.168.4.0/30", "10.0.0.0/8"] {
            validate_pod_cidr(good).unwrap();
        }
        for (bad, reason) in [
            ("10.244.0.0", "not address/prefix"),
            ("fd00::/64", "only IPv4"),
            ("10.244.0.0/x", "not a number"),
            ("10.244.0.0/31", "between /8 and /30"),
            ("10.0.0.0/7", "between /8 and /30"),
            ("10.244.0.5/24", "host bits"),
        ] {
            let error = validate_pod_cidr(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn writes_atomically_and_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.d/10-flotilla.conflist");
        assert!(write_if_changed(&path, "one").await.unwrap(), "a new file is written");
        assert!(!write_if_changed(&path, "one").await.unwrap(), "the same text is not");
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        assert!(write_if_changed(&path, "two").await.unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert!(std::fs::metadata(&path).unwrap().modified().unwrap() >= modified);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["10-flotilla.conflist"], "no temporary file is left");
    }
}
