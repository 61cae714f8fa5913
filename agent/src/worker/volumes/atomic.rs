//! Kubelet's `AtomicWriter`: the files of a configMap, secret, downwardAPI or projected volume
//! are replaced so that a reader sees either the previous set or the new one, never a mix.
//!
//! Layout of a volume directory:
//! - `..<timestamp>/` holds one complete version of the files;
//! - `..data` is a symlink to the current version's directory, swapped by a rename (atomic);
//! - every top-level name of the payload is a symlink `name -> ..data/name`, so containers see
//!   plain paths whose contents all switch version at the same instant.
//!
//! Invariants:
//! - Nothing is written when the current version already holds the payload (same paths,
//!   contents and modes), so an unchanged object costs a few reads per sync.
//! - A version's directory is removed only once `..data` points away from it.
//! - Names starting with `..` belong to the writer; a payload may not use them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// The symlink to the current version's directory.
const DATA_LINK: &str = "..data";
/// Where the next `..data` link is made before it is renamed over the current one.
const DATA_LINK_TEMPORARY: &str = "..data_tmp";
/// Where a user-visible link is made before it replaces what is at its name.
const USER_LINK_TEMPORARY: &str = "..link_tmp";
/// Linux's limits, which kubelet checks payload paths against.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload: its contents and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

impl FileProjection {
    /// A file with `data` and the API's `mode` (an `int32` holding permission bits).
    pub(crate) fn new(data: impl Into<Vec<u8>>, mode: i32) -> FileProjection {
        FileProjection { data: data.into(), mode: mode as u32 & 0o777 }
    }
}

/// A volume's files: relative path → file.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AtomicWriteError {
    /// A path kubelet's `validatePath` rejects.
    #[error("invalid path: {reason}: {path}")]
    InvalidPath { path: String, reason: &'static str },
    /// One path is a file and the directory of another.
    #[error("invalid path: {path} is both a file and a directory in the payload")]
    FileAndDirectory { path: String },
    /// A filesystem operation failed.
    #[error("{action} {path}: {message}", path = path.display())]
    Io { action: &'static str, path: PathBuf, message: String },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AtomicWriteError {
    let path = path.to_path_buf();
    move |error| AtomicWriteError::Io { action, path, message: error.to_string() }
}

/// Writes payloads into one volume directory.
#[derive(Debug, Clone)]
pub(crate) struct AtomicWriter {
    dir: PathBuf,
}

impl AtomicWriter {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> AtomicWriter {
        AtomicWriter { dir: dir.into() }
    }

    /// Makes the directory show exactly `payload`; `now` names the new version's directory.
    /// Returns whether a new version was written.
    pub(crate) fn write(
        &self,
        payload: &Payload,
        now: Timestamp,
    ) -> Result<bool, AtomicWriteError> {
        let payload = clean_payload(payload)?;
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let current = self.current_version();
        let unchanged = match &current {
            Some(version) => holds(&self.dir.join(version), &payload)?,
            None => false,
        };
        let version = match (unchanged, current) {
            (true, Some(version)) => version,
            _ => {
                let version = self.write_version(&payload, now)?;
                self.point_data_link_at(&version)?;
                version
            }
        };
        let visible: BTreeSet<&str> = payload.keys().map(|path| top_level(path)).collect();
        for name in &visible {
            self.link_user_visible(name)?;
        }
        self.remove_stale(&visible, &version)?;
        Ok(!unchanged)
    }

    /// The name of the version directory `..data` points at, if it is one of ours.
    fn current_version(&self) -> Option<String> {
        let target = std::fs::read_link(self.dir.join(DATA_LINK)).ok()?;
        let name = target.to_str()?;
        let ours = name.starts_with("..") && !name.contains('/') && name != DATA_LINK;
        (ours && self.dir.join(name).is_dir()).then(|| name.to_owned())
    }

    /// Writes every file into a new version directory and returns its name.
    fn write_version(&self, payload: &Payload, now: Timestamp) -> Result<String, AtomicWriteError> {
        let base = version_name(now);
        let mut name = base.clone();
        let mut attempt = 0;
        loop {
            let path = self.dir.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => break,
                Err(error)
                    if error.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 =>
                {
                    attempt += 1;
                    name = format!("{base}{attempt}");
                }
                Err(error) => return Err(io("creating", &path)(error)),
            }
        }
        let version_dir = self.dir.join(&name);
        set_mode(&version_dir, 0o755)?;
        for (path, file) in payload {
            let target = version_dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
            }
            std::fs::write(&target, &file.data).map_err(io("writing", &target))?;
            set_mode(&target, file.mode)?;
        }
        Ok(name)
    }

    /// Swaps `..data` to `version` with a rename, the one atomic step of an update.
    fn point_data_link_at(&self, version: &str) -> Result<(), AtomicWriteError> {
        let temporary = self.dir.join(DATA_LINK_TEMPORARY);
        remove_any(&temporary)?;
        std::os::unix::fs::symlink(version, &temporary).map_err(io("linking", &temporary))?;
        let link = self.dir.join(DATA_LINK);
        std::fs::rename(&temporary, &link).map_err(io("renaming", &link))
    }

    /// Makes `name` the symlink `..data/name`, replacing whatever else is there (a file of a
    /// volume written before the agent wrote atomically).
    fn link_user_visible(&self, name: &str) -> Result<(), AtomicWriteError> {
        let link = self.dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        if std::fs::read_link(&link).is_ok_and(|current| current == target) {
            return Ok(());
        }
        if link.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&link).map_err(io("removing", &link))?;
        }
        let temporary = self.dir.join(USER_LINK_TEMPORARY);
        remove_any(&temporary)?;
        std::os::unix::fs::symlink(&target, &temporary).map_err(io("linking", &temporary))?;
        std::fs::rename(&temporary, &link).map_err(io("renaming", &link))
    }

    /// Removes user-visible names no longer in the payload and every version directory but
    /// the current one.
    fn remove_stale(
        &self,
        visible: &BTreeSet<&str>,
        version: &str,
    ) -> Result<(), AtomicWriteError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io("reading", &self.dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = if name.starts_with("..") {
                name == DATA_LINK || name == version
            } else {
                visible.contains(name.as_str())
            };
            if !keep {
                remove_any(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// The name of a version directory: kubelet's `..2006_01_02_15_04_05.` prefix, then the
/// nanoseconds where kubelet puts a random suffix.
pub(crate) fn version_name(now: Timestamp) -> String {
    let time = now.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.subsec_nanosecond()
    )
}

/// Kubelet's `validatePayload`: every path cleaned (`a//b/./c` is `a/b/c`) and checked by
/// `validatePath`; and no path may be both a file and another's directory.
pub(crate) fn clean_payload(payload: &Payload) -> Result<Payload, AtomicWriteError> {
    let mut out = Payload::new();
    for (path, file) in payload {
        out.insert(clean_path(path)?, file.clone());
    }
    for path in out.keys() {
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() && out.contains_key(&prefix) {
                return Err(AtomicWriteError::FileAndDirectory { path: prefix });
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
        }
    }
    Ok(out)
}

fn clean_path(path: &str) -> Result<String, AtomicWriteError> {
    let invalid = |reason| AtomicWriteError::InvalidPath { path: path.to_owned(), reason };
    if path.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if path.starts_with('/') {
        return Err(invalid("must be relative path"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(invalid("must be less than or equal to 4096 characters"));
    }
    let parts: Vec<&str> =
        path.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    if parts.is_empty() {
        return Err(invalid("must not be empty"));
    }
    for part in &parts {
        if *part == ".." {
            return Err(invalid("must not contain '..'"));
        }
        if part.len() > MAX_FILE_NAME_LENGTH {
            return Err(invalid("filenames must be less than or equal to 255 characters"));
        }
    }
    if parts[0].starts_with("..") {
        return Err(invalid("must not start with '..'"));
    }
    Ok(parts.join("/"))
}

/// The first component of a cleaned path: the name users see at the volume's top.
fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Whether `version_dir` holds exactly the payload's files, contents and modes.
fn holds(version_dir: &Path, payload: &Payload) -> Result<bool, AtomicWriteError> {
    let mut found = BTreeSet::new();
    list_files(version_dir, "", &mut found)?;
    if !found.iter().eq(payload.keys()) {
        return Ok(false);
    }
    for (path, file) in payload {
        let target = version_dir.join(path);
        let Ok(metadata) = target.symlink_metadata() else { return Ok(false) };
        if metadata.permissions().mode() & 0o777 != file.mode {
            return Ok(false);
        }
        let current = std::fs::read(&target).map_err(io("reading", &target))?;
        if current != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds the relative paths of the regular files under `dir` to `out`.
fn list_files(
    dir: &Path,
    prefix: &str,
    out: &mut BTreeSet<String>,
) -> Result<(), AtomicWriteError> {
    let entries = std::fs::read_dir(dir).map_err(io("reading", dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let file_type = entry.file_type().map_err(io("reading", &entry.path()))?;
        if file_type.is_dir() {
            list_files(&entry.path(), &relative, out)?;
        } else {
            out.insert(relative);
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), AtomicWriteError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode of", path))
}

/// Removes a file, symlink or directory tree; absence is fine.
fn remove_any(path: &Path) -> Result<(), AtomicWriteError> {
    let removed = match path.symlink_metadata() {
        Err(_) => return Ok(()),
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
    };
    removed.map_err(io("removing", path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn payload(files: &[(&str, &str, i32)]) -> Payload {
        files
            .iter()
            .map(|(path, data, mode)| (path.to_string(), FileProjection::new(*data, *mode)))
            .collect()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    /// The names at the top of `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn paths_are_cleaned_and_checked_as_kubelet_does() {
        let cases: [(&str, Result<&str, &str>); 9] = [
            ("key", Ok("key")),
            ("a//b/./c", Ok("a/b/c")),
            ("./a/", Ok("a")),
            ("", Err("must not be empty")),
            ("/etc/passwd", Err("must be relative path")),
            ("a/../../b", Err("must not contain '..'")),
            ("..data", Err("must not start with '..'")),
            ("..2020/x", Err("must not start with '..'")),
            (".hidden", Ok(".hidden")),
        ];
        for (path, expected) in cases {
            let got = clean_path(path).map_err(|e| e.to_string());
            match expected {
                Ok(clean) => assert_eq!(got.as_deref(), Ok(clean), "{path:?}"),
                Err(reason) => assert!(got.unwrap_err().contains(reason), "{path:?}"),
            }
        }
        let long = "x".repeat(256);
        assert!(clean_path(&long).unwrap_err().to_string().contains("255"));
    }

    #[test]
    fn a_path_cannot_be_a_file_and_a_directory() {
        let cases = [
            (payload(&[("a", "1", 0o644), ("a/b", "2", 0o644)]), Some("a")),
            (payload(&[("x/y", "1", 0o644), ("x/y/z", "2", 0o644)]), Some("x/y")),
            (payload(&[("a", "1", 0o644), ("ab/c", "2", 0o644)]), None),
            (payload(&[("d/a", "1", 0o644), ("d/b", "2", 0o644)]), None),
        ];
        for (files, conflict) in cases {
            match (clean_payload(&files), conflict) {
                (Ok(_), None) => {}
                (Err(AtomicWriteError::FileAndDirectory { path }), Some(expected)) => {
                    assert_eq!(path, expected)
                }
                (other, _) => panic!("{files:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn version_names_follow_kubelets_timestamp_format() {
        let now: Timestamp = "2024-03-05T07:08:09.000000012Z".parse().unwrap();
        assert_eq!(version_name(now), "..2024_03_05_07_08_09.000000012");
    }

    #[test]
    fn files_are_links_into_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        let files = payload(&[("greeting", "hello", 0o644), ("sub/secret", "s", 0o600)]);
        assert!(writer.write(&files, at(1)).unwrap());

        let version = version_name(at(1));
        assert_eq!(names(dir.path()), [version.as_str(), "..data", "greeting", "sub"]);
        assert_eq!(std::fs::read_link(dir.path().join("..data")).unwrap(), Path::new(&version));
        assert_eq!(
            std::fs::read_link(dir.path().join("greeting")).unwrap(),
            Path::new("..data/greeting")
        );
        assert_eq!(std::fs::read_link(dir.path().join("sub")).unwrap(), Path::new("..data/sub"));
        assert_eq!(std::fs::read_to_string(dir.path().join("greeting")).unwrap(), "hello");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/secret")).unwrap(), "s");
        let mode = |path: &str| {
            std::fs::metadata(dir.path().join(path)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!((mode("greeting"), mode("sub/secret")), (0o644, 0o600));
    }

    #[test]
    fn unchanged_payloads_are_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        let files = payload(&[("a", "1", 0o644)]);
        assert!(writer.write(&files, at(1)).unwrap());
        assert!(!writer.write(&files, at(2)).unwrap(), "same contents: nothing written");
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            Path::new(&version_name(at(1)))
        );
        // --- a changed mode is a change
        assert!(writer.write(&payload(&[("a", "1", 0o600)]), at(3)).unwrap());
    }

    #[test]
    fn updates_swap_the_version_and_drop_stale_keys() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&payload(&[("a", "1", 0o644), ("gone", "x", 0o644)]), at(1)).unwrap();
        // A reader holding the old version open keeps reading it whole.
        let old = std::fs::canonicalize(dir.path().join("a")).unwrap();

        assert!(writer.write(&payload(&[("a", "2", 0o644), ("new", "n", 0o644)]), at(2)).unwrap());
        let version = version_name(at(2));
        assert_eq!(names(dir.path()), [version.as_str(), "..data", "a", "new"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "2");
        assert!(!old.exists(), "the previous version is removed after the swap");

        // --- an empty payload leaves only the writer's names
        assert!(writer.write(&Payload::new(), at(3)).unwrap());
        let version = version_name(at(3));
        assert_eq!(names(dir.path()), [version.as_str(), "..data"]);
    }

    #[test]
    fn a_volume_written_in_place_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "old").unwrap();
        std::fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
        std::fs::write(dir.path().join("stale"), "x").unwrap();
        std::fs::write(dir.path().join("a.flotilla-tmp"), "x").unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&payload(&[("a", "new", 0o644), ("nested/b", "b", 0o644)]), at(1)).unwrap();
        assert_eq!(names(dir.path()), [version_name(at(1)).as_str(), "..data", "a", "nested"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(dir.path().join("nested/b")).unwrap(), "b");
        assert!(!dir.path().join("nested/deeper").exists());
    }

    #[test]
    fn versions_written_in_the_same_instant_get_distinct_directories() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&payload(&[("a", "1", 0o644)]), at(1)).unwrap();
        writer.write(&payload(&[("a", "2", 0o644)]), at(1)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "2");
        assert_eq!(names(dir.path()).len(), 3, "{:?}", names(dir.path()));
    }
}
