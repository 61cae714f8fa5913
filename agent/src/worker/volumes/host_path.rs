//! Kubelet's hostPath type checks (`checkType`), shared by `hostPath` volumes and by
//! PersistentVolumes of type hostPath: the `...OrCreate` types create what is missing, the
//! others require the path to exist as that kind of file.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// Why a host path does not pass its type check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostPathError {
    /// The path exists as something else than its type, or not at all.
    #[error("hostPath type check failed: {path} is not {expected}")]
    WrongType { path: String, expected: &'static str },
    /// A type the API does not define.
    #[error("invalid hostPath type {kind:?}")]
    InvalidType { kind: String },
    /// Creating the path for a `...OrCreate` type failed.
    #[error("creating {path}: {message}")]
    Create { path: String, message: String },
}

/// Checks (and for `DirectoryOrCreate` and `FileOrCreate`, creates) `path` as `kind` says.
pub(crate) fn check_host_path(path: &Path, kind: &str) -> Result<(), HostPathError> {
    let shown = path.display().to_string();
    let wrong = |expected| HostPathError::WrongType { path: shown.clone(), expected };
    let create = |error: std::io::Error| HostPathError::Create {
        path: shown.clone(),
        message: error.to_string(),
    };
    let file_type = std::fs::metadata(path).map(|m| m.file_type()).ok();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match file_type {
            None => std::fs::create_dir_all(path).map_err(create),
            Some(t) if t.is_dir() => Ok(()),
            Some(_) => Err(wrong("a directory")),
        },
        "Directory" if file_type.is_some_and(|t| t.is_dir()) => Ok(()),
        "Directory" => Err(wrong("a directory")),
        "FileOrCreate" => match file_type {
            None => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(create)?;
                }
                std::fs::write(path, b"").map_err(create)
            }
            Some(t) if t.is_file() => Ok(()),
            Some(_) => Err(wrong("a file")),
        },
        "File" if file_type.is_some_and(|t| t.is_file()) => Ok(()),
        "File" => Err(wrong("a file")),
        "Socket" if file_type.is_some_and(|t| t.is_socket()) => Ok(()),
        "Socket" => Err(wrong("a socket file")),
        "CharDevice" if file_type.is_some_and(|t| t.is_char_device()) => Ok(()),
        "CharDevice" => Err(wrong("a character device")),
        "BlockDevice" if file_type.is_some_and(|t| t.is_block_device()) => Ok(()),
        "BlockDevice" => Err(wrong("a block device")),
        other => Err(HostPathError::InvalidType { kind: other.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn types_are_checked_and_created_as_kubelet_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let absent = dir.path().join("absent");
        let cases: [(&Path, &str, Result<(), &str>); 11] = [
            (dir.path(), "", Ok(())),
            (&absent, "", Ok(())),
            (dir.path(), "Directory", Ok(())),
            (&file, "Directory", Err("is not a directory")),
            (&absent, "Directory", Err("is not a directory")),
            (&file, "File", Ok(())),
            (dir.path(), "File", Err("is not a file")),
            (&file, "DirectoryOrCreate", Err("is not a directory")),
            (dir.path(), "FileOrCreate", Err("is not a file")),
            (&file, "Socket", Err("is not a socket file")),
            (&file, "Sideways", Err("invalid hostPath type")),
        ];
        for (path, kind, expected) in cases {
            let got = check_host_path(path, kind).map_err(|e| e.to_string());
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{} {kind}", path.display()),
                Err(text) => assert!(got.unwrap_err().contains(text), "{} {kind}", path.display()),
            }
        }
        check_host_path(&dir.path().join("made/dir"), "DirectoryOrCreate").unwrap();
        assert!(dir.path().join("made/dir").is_dir());
        check_host_path(&dir.path().join("made/file"), "FileOrCreate").unwrap();
        assert!(dir.path().join("made/file").is_file());
    }
}
