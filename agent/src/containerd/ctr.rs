//! `ctr`, containerd's own command-line client, run against the node's containerd, and the
//! parsing of what it prints.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::ContainerdError;

/// The namespace the CRI plugin keeps pods and images in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// One `ctr` invocation against the containerd listening on `socket`.
pub(crate) struct Ctr<'a> {
    pub program: &'a Path,
    pub socket: &'a Path,
}

impl Ctr<'_> {
    /// Runs `ctr --address <socket> [--namespace <namespace>] <args>` and returns its stdout;
    /// a failure, or no answer within `timeout`, is an error carrying its stderr.
    pub async fn run<S: AsRef<OsStr>>(
        &self,
        namespace: Option<&str>,
        args: &[S],
        timeout: Duration,
    ) -> Result<String, ContainerdError> {
        let mut command = Command::new(self.program);
        command.arg("--address").arg(self.socket);
        if let Some(namespace) = namespace {
            command.args(["--namespace", namespace]);
        }
        command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
        let failed = |reason: String| {
            let args: Vec<_> = args.iter().map(|arg| arg.as_ref().to_string_lossy()).collect();
            ContainerdError::Ctr { args: args.join(" "), reason }
        };
        let output = match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(err)) => {
                return Err(failed(format!("running {}: {err}", self.program.display())))
            }
            Err(_) => return Err(failed(format!("no answer within {timeout:?}"))),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(failed(format!("{}: {}", output.status, stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The status (`ok`, `error`, `skip`) of the CRI plugin in `ctr plugins ls` output, if listed.
///
/// The output is a table: `TYPE ID PLATFORMS STATUS`, one plugin per line.
pub(crate) fn cri_plugin_status(plugins: &str) -> Option<&str> {
    plugins.lines().find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        match columns.as_slice() {
            ["io.containerd.grpc.v1", "cri", .., status] => Some(*status),
            _ => None,
        }
    })
}

/// The image names `ctr images import` reports, from lines such as
/// `unpacking flotilla.local/pause:1 (sha256:95ea…)...done`.
pub(crate) fn imported_images(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("unpacking "))
        .filter_map(|rest| rest.split_once(" (").map(|(name, _)| name.to_string()))
        .collect()
}

/// The non-empty lines of a `-q` listing (ids or names, one a line).
pub(crate) fn quiet_list(output: &str) -> Vec<String> {
    output.lines().map(str::trim).filter(|line| !line.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLUGINS: &str = "\
TYPE                            ID                       PLATFORMS      STATUS    
io.containerd.content.v1        content                  -              ok        
io.containerd.snapshotter.v1    devmapper                linux/amd64    error     
io.containerd.grpc.v1           containers               -              ok        
io.containerd.grpc.v1           cri                      linux/amd64    ok        
";

    #[test]
    fn finds_the_cri_plugins_status() {
        assert_eq!(cri_plugin_status(PLUGINS), Some("ok"));
        let failed = PLUGINS.replace("linux/amd64    ok", "linux/amd64    error");
        assert_eq!(cri_plugin_status(&failed), Some("error"));
        let without = PLUGINS.replace("           cri  ", "           foo  ");
        assert_eq!(cri_plugin_status(&without), None, "not loaded yet");
        assert_eq!(cri_plugin_status(""), None);
        // Another plugin with the id `cri` does not count.
        assert_eq!(cri_plugin_status("io.containerd.internal.v1  cri  -  error\n"), None);
    }

    #[test]
    fn reads_the_imported_image_names() {
        let output = "unpacking flotilla.local/pause:1 (sha256:95ea0f11f41e)...done\n\
                      unpacking docker.io/library/busybox:1.36 (sha256:9185579e)...done\n";
        assert_eq!(
            imported_images(output),
            ["flotilla.local/pause:1", "docker.io/library/busybox:1.36"]
        );
        assert!(imported_images("").is_empty());
        assert!(imported_images("ctr: unexpected EOF\n").is_empty());
    }

    #[test]
    fn quiet_listings_skip_blank_lines() {
        assert_eq!(quiet_list("a\n\n b \n"), ["a", "b"]);
        assert!(quiet_list("\n").is_empty());
    }
}
