//! The system tools node networking drives (`ip`, `nft`): found where root's tools live, run as
//! one short process with a deadline, their output or their complaint returned.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Where programs are looked for after `PATH` (root's tools live in sbin).
const SYSTEM_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin"];
/// One run, which the kernel answers in milliseconds.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("running {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{command}` did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// The first executable `name` in `PATH`, then in the system directories.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `command` (a program and its first arguments, e.g. `ip netns exec NS nft`) with
/// `args`, feeding it `input`; its standard output on success.
pub async fn run(
    command: &[OsString],
    args: &[&str],
    input: Option<&str>,
) -> Result<Vec<u8>, CommandError> {
    let program = PathBuf::from(command.first().cloned().unwrap_or_default());
    let line = || {
        let words = command.iter().map(|w| w.to_string_lossy().into_owned());
        words.chain(args.iter().map(|a| a.to_string())).collect::<Vec<_>>().join(" ")
    };
    let spawn_error =
        |source| CommandError::Spawn { program: program.display().to_string(), source };
    let mut child = Command::new(&program)
        .args(command.iter().skip(1))
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let finished = async {
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(TIMEOUT, finished)
        .await
        .map_err(|_| CommandError::Timeout { command: line(), timeout: TIMEOUT })?
        .map_err(spawn_error)?;
    if !output.status.success() {
        return Err(CommandError::Failed {
            command: line(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_input_and_failures_come_back() {
        let sh = vec![OsString::from("sh"), OsString::from("-c")];
        let echoed = run(&sh, &["cat; echo done"], Some("in ")).await.unwrap();
        assert_eq!(echoed, b"in done\n");
        let failed = run(&sh, &["echo oops >&2; exit 3"], None).await.unwrap_err();
        assert_eq!(
            failed.to_string(),
            "`sh -c echo oops >&2; exit 3` failed (exit status: 3): oops"
        );
        let missing = run(&[OsString::from("/nonexistent/tool")], &[], None).await.unwrap_err();
        assert!(matches!(missing, CommandError::Spawn { .. }), "{missing}");
        assert!(find("sh").is_some() && find("no-such-tool-here").is_none());
    }
}
