//! How the agent keeps its resident memory small: freed heap goes back to the system at once,
//! and the pages of its own code that only starting up touched are unmapped once it started.
//!
//! One binary serves every role, so an agent maps code it never runs again after start (TLS
//! and certificate loading, the kernel BTF parse and eBPF load, containerd's start, the first
//! list of every watched kind): resident but idle, ≈18 MB of the ≈22 MB of code an idle
//! agent had mapped. The kernel keeps mapped code resident until memory is short.

use std::io;
use std::ops::Range;
use std::os::unix::fs::MetadataExt;

/// Makes the allocator hand freed memory back to the system at once instead of after its
/// default delay, which it only honours while the freeing thread keeps allocating: the agent
/// peaks once at start (parsing the kernel's BTF to load the eBPF programs, ≈19 MB) and then
/// idles, so without this the peak stayed resident for good. Must run before any other thread
/// starts (the allocator's options are not synchronised).
#[allow(unsafe_code)]
pub fn return_freed_memory_at_once() {
    // SAFETY: a plain option store in the allocator, made while the process has one thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// `mi_option_purge_delay` of mimalloc 3's `mimalloc.h`, which the Rust bindings leave out.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Unmaps the resident pages of the running executable's read-only mappings, which hold its
/// code and constants; the ones still in use fault back in from the page cache on their next
/// touch (a minor fault, no disk read while the page is cached). Returns the kilobytes that
/// were resident in them.
///
/// Safe for every mapping it touches: a mapping is released only when it is private, not
/// writable, and holds no private (copied-on-write) page, so each of its pages is exactly the
/// file's and refaulting it yields the same bytes. The relocated read-only data (RELRO) holds
/// private pages and is left alone.
#[allow(unsafe_code)]
pub fn release_start_only_code() -> io::Result<u64> {
    let exe = std::fs::metadata("/proc/self/exe")?;
    let file = FileId::of_device(exe.dev(), exe.ino());
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for mapping in parse_smaps(&smaps).into_iter().filter(|m| m.releasable(file)) {
        let Some(start) = std::ptr::NonNull::new(mapping.range.start as *mut std::ffi::c_void)
        else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process whose pages are all the
        // executable file's unmodified pages (see `releasable`); MADV_DONTNEED on a private
        // file mapping refills such pages from the file, so no content changes.
        unsafe {
            nix::sys::mman::madvise(
                start,
                mapping.range.len(),
                nix::sys::mman::MmapAdvise::MADV_DONTNEED,
            )
        }
        .map_err(io::Error::from)?;
        released += mapping.rss_kb;
    }
    Ok(released)
}

/// A file as `/proc/<pid>/maps` names it: device major and minor, and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    major: u64,
    minor: u64,
    inode: u64,
}

impl FileId {
    /// From `st_dev` and `st_ino`, splitting the device number as glibc's `major`/`minor` do.
    fn of_device(dev: u64, inode: u64) -> FileId {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        FileId { major, minor, inode }
    }
}

/// One mapping of `/proc/<pid>/smaps`, the parts deciding whether it may be released.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    range: Range<usize>,
    writable: bool,
    private: bool,
    file: Option<FileId>,
    rss_kb: u64,
    /// Private pages, in kB: unknown until its line was read.
    anonymous_kb: Option<u64>,
}

impl Mapping {
    /// Whether every page of the mapping is `file`'s own, unmodified and never to be written.
    fn releasable(&self, file: FileId) -> bool {
        self.file == Some(file) && self.private && !self.writable && self.anonymous_kb == Some(0)
    }
}

/// The mappings of an smaps text. A line is a mapping's field when the text before its first
/// colon has no space (`Rss:`, `VmFlags:`), else a mapping's header; a header it cannot read
/// ends the mapping above and starts none, so a format it does not know releases nothing.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in text.lines() {
        match line.split_once(':') {
            Some((name, value)) if !name.contains(char::is_whitespace) => {
                let Some(mapping) = current.as_mut() else { continue };
                let kb = || value.trim().strip_suffix(" kB")?.trim().parse().ok();
                match name {
                    "Rss" => mapping.rss_kb = kb().unwrap_or(0),
                    "Anonymous" => mapping.anonymous_kb = kb(),
                    _ => {}
                }
            }
            _ => {
                mappings.extend(current.take());
                current = parse_header(line);
            }
        }
    }
    mappings.extend(current);
    mappings
}

/// `start-end perms offset major:minor inode [path]`.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
    if perms.len() != 4 || range.is_empty() {
        return None;
    }
    let file = (inode != 0).then_some(FileId {
        major: u64::from_str_radix(major, 16).ok()?,
        minor: u64::from_str_radix(minor, 16).ok()?,
        inode,
    });
    Some(Mapping {
        range,
        writable: perms[1] == b'w',
        private: perms[3] == b'p',
        file,
        rss_kb: 0,
        anonymous_kb: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE: FileId = FileId { major: 0xfe, minor: 0, inode: 5671610 };

    /// Real smaps lines, shortened to the fields that matter plus a few that do not.
    const SMAPS: &str = "\
557726f58000-557727b98000 r--p 00000000 fe:00 5671610    /usr/bin/flotilla
Size:              12544 kB
Rss:                3424 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
557727b98000-55772a114000 r-xp 00c3f000 fe:00 5671610    /usr/bin/flotilla
Rss:               22108 kB
Anonymous:             0 kB
THPeligible:    0
55772a114000-55772a254000 r--p 031ba000 fe:00 5671610    /usr/bin/flotilla
Rss:                1280 kB
Anonymous:          1280 kB
55772a254000-55772a2a0000 rw-p 032fa000 fe:00 5671610    /usr/bin/flotilla
Rss:                 300 kB
Anonymous:           120 kB
20000000000-20040000000 rw-p 00000000 00:00 0
Rss:                2632 kB
Anonymous:          2632 kB
7f066a1df000-7f066a335000 r-xp 00026000 fe:00 326279     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1028 kB
Anonymous:             0 kB
7f066a400000-7f066a410000 r--s 00000000 fe:00 5671610    /usr/bin/flotilla
Rss:                  64 kB
Anonymous:             0 kB
";

    #[test]
    fn only_the_executables_unmodified_read_only_private_mappings_are_released() {
        let mappings = parse_smaps(SMAPS);
        assert_eq!(mappings.len(), 7);
        let released: Vec<_> = mappings
            .iter()
            .filter(|m| m.releasable(EXE))
            .map(|m| (m.range.start, m.rss_kb))
            .collect();
        // The rodata and the code; not the RELRO (private copies), the data, the heap,
        // libc, or a shared mapping of the same file.
        assert_eq!(released, [(0x557726f58000, 3424), (0x557727b98000, 22108)]);
    }

    #[test]
    fn headers_are_read_field_by_field() {
        let cases = [
            (
                "7f0-7f8 r-xp 00000000 08:01 42 /bin/x",
                Some((0x7f0..0x7f8, false, true, Some((8, 1, 42)))),
            ),
            (
                "7f0-7f8 rw-s 00000000 00:05 7 /dev/zero (deleted)",
                Some((0x7f0..0x7f8, true, false, Some((0, 5, 7)))),
            ),
            ("7f0-7f8 ---p 00000000 00:00 0", Some((0x7f0..0x7f8, false, true, None))),
            ("7f8-7f0 r-xp 00000000 08:01 42 /bin/x", None),
            ("7f0-7f8 r-x 00000000 08:01 42 /bin/x", None),
            ("not a mapping at all", None),
            ("", None),
        ];
        for (line, expected) in cases {
            let parsed = parse_header(line).map(|m| {
                (m.range, m.writable, m.private, m.file.map(|f| (f.major, f.minor, f.inode)))
            });
            assert_eq!(parsed, expected, "{line}");
        }
    }

    #[test]
    fn an_unreadable_line_releases_nothing() {
        // A header it cannot read: its fields belong to no mapping.
        let text = "garbage line\nRss: 100 kB\nAnonymous: 0 kB\n";
        assert!(parse_smaps(text).is_empty());
        // A private size it cannot read, or none at all, counts as unknown: the mapping stays.
        for fields in ["Rss: 8 kB\nAnonymous: 0 MB\n", "Rss: 8 kB\n"] {
            let text = format!("7f0-7f8 r-xp 00000000 fe:00 5671610 /x\n{fields}");
            assert!(!parse_smaps(&text)[0].releasable(EXE), "{fields}");
        }
    }

    #[test]
    fn device_numbers_split_as_glibc_does() {
        // makedev(0xfe, 0) and makedev(259, 70000): small and large numbers.
        assert_eq!(FileId::of_device(0xfe00, 1), FileId { major: 0xfe, minor: 0, inode: 1 });
        let dev = (259 & 0xfff) << 8 | (70000 & 0xff) | ((70000 & !0xff) << 12);
        assert_eq!(FileId::of_device(dev, 2), FileId { major: 259, minor: 70000, inode: 2 });
    }

    #[test]
    fn releasing_keeps_the_program_running() {
        let released = release_start_only_code().expect("releasing the code");
        assert!(released > 0, "the test binary's own code was resident");
        // Code and constants fault back in: this runs code, formats and compares strings.
        assert_eq!(format!("{:?}", parse_header("")), "None");
    }

    #[test]
    fn the_purge_delay_option_is_the_one_the_allocator_knows() {
        // SAFETY: reads one option of the linked allocator.
        #[allow(unsafe_code)]
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        // mimalloc 3's default purge delay in milliseconds; another option would hold another
        // default, so this pins the number to the option.
        assert_eq!(delay, 1000);
    }
}
