//! Files written so that a crash, a kill or a program reading them at the same moment never sees
//! half of one, with the same behaviour on Unix and Windows; and the rule for names that come
//! from archives and dataset lists.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// Writes `bytes` to `path` through a temporary file beside it (`.<name>.tmp<pid>`), flushed to
/// disk and then renamed over `path`: readers see the old file or the new one, never a mix, and
/// a crash leaves the old one. A failed write removes its temporary file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(temporary_name(&file_name, std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let result = written.and_then(|()| replace(&tmp, path));
    if result.is_err() {
        // A full disk or a vanished folder must not leave a half-written file behind.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_folder_of(path)
}

/// Flushes the folder entry of `path` to disk: after a rename, the new name is durable only once
/// its folder is (POSIX; a power cut could otherwise bring back the old file, or none). Windows
/// cannot open a folder as a file, and NTFS journals renames itself.
fn sync_folder_of(path: &Path) -> io::Result<()> {
    if cfg!(unix) {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The temporary file name [`write_atomically`] uses for `name` in process `pid`.
fn temporary_name(name: &str, pid: u32) -> String {
    format!(".{name}.tmp{pid}")
}

/// The process id in the name of one of [`write_atomically`]'s temporary files
/// (`.<name>.tmp<pid>`); `None` for any other name.
fn temporary_pid(name: &str) -> Option<u32> {
    let (target, pid) = name.strip_prefix('.')?.rsplit_once(".tmp")?;
    if target.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is known to have ended: on Linux, where `/proc` lists the live ones.
/// Elsewhere nothing is known (and only the age of a file tells).
fn process_is_gone(pid: u32) -> bool {
    cfg!(target_os = "linux") && Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// How long a temporary file must have been left untouched before [`sweep_temporaries`] takes
/// it for the leftover of a killed process: writes take seconds, even of a ResNet-50 checkpoint.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(10 * 60);

/// Removes the temporary files of atomic writes in `dir` that a process killed mid-write left
/// behind (`kill -9`, a power cut: up to a whole checkpoint each time): those whose process has
/// ended (known on Linux) and those untouched for at least `older_than`. Returns the files
/// removed; files it cannot read or remove are left alone.
pub fn sweep_temporaries(dir: &Path, older_than: Duration) -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else { continue };
        let stale = (pid != std::process::id() && process_is_gone(pid))
            || entry
                .metadata()
                .ok()
                .filter(fs::Metadata::is_file)
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= older_than);
        if stale && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Renames `from` over `to`, replacing a file that is there.
///
/// On Unix a rename replaces the target whoever has it open. On Windows it fails while another
/// program holds the target (or the new file) open without sharing deletion: a viewer, the
/// search indexer or a virus scanner that opens every new file, usually for milliseconds. Those
/// failures are retried for about two seconds before the error is returned.
pub fn replace(from: &Path, to: &Path) -> io::Result<()> {
    retry_while(|| fs::rename(from, to), is_held_open, &RETRY_DELAYS)
}

/// Waits between tries of a rename that another program blocks: 1 ms doubling to 1,024 ms, about
/// two seconds in all.
const RETRY_DELAYS: [Duration; 11] = {
    let mut delays = [Duration::ZERO; 11];
    let mut i = 0;
    while i < delays.len() {
        delays[i] = Duration::from_millis(1 << i);
        i += 1;
    }
    delays
};

/// Runs `op` until it succeeds, fails with an error `transient` does not accept, or `delays`
/// (the waits before the second, third, … try) run out; then returns its last result.
fn retry_while<T>(mut op: impl FnMut() -> io::Result<T>, transient: impl Fn(&io::Error) -> bool, delays: &[Duration]) -> io::Result<T> {
    let mut delays = delays.iter();
    loop {
        match op() {
            Err(e) if transient(&e) => match delays.next() {
                Some(delay) => std::thread::sleep(*delay),
                None => return Err(e),
            },
            result => return result,
        }
    }
}

/// Whether an error of a file operation means that another program has the file open, which it
/// will close again.
fn is_held_open(error: &io::Error) -> bool {
    cfg!(windows) && error.raw_os_error().is_some_and(is_windows_sharing_error)
}

/// Windows' codes for a file held by someone else: ERROR_ACCESS_DENIED (5, also what renaming
/// over a file open without FILE_SHARE_DELETE gives), ERROR_SHARING_VIOLATION (32) and
/// ERROR_LOCK_VIOLATION (33).
fn is_windows_sharing_error(code: i32) -> bool {
    matches!(code, 5 | 32 | 33)
}

/// `name` if it is one plain file name that means the same on every operating system, else
/// `None`: not empty, not `.` or `..`, no path separator of any system (`/`, `\`), no drive or
/// stream colon (`C:`, `name:stream`), none of the other characters Windows refuses
/// (`<>"|?*`, control characters), no trailing dot or space (Windows drops them, so `a.png.`
/// would be written as `a.png`), and not a Windows device name (`CON`, `NUL.png`, `COM1`, …),
/// which on Windows opens the device instead of a file.
///
/// Archive entries are written only under such a name, and dataset lists are read as such names
/// joined by `/`: an entry named `..\..\x` or `C:x` is the same refusal on Linux as on Windows.
pub fn plain_name(name: &str) -> Option<&str> {
    let forbidden = |c: char| c.is_control() || matches!(c, '/' | '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*');
    if name.is_empty() || name == "." || name == ".." || name.contains(forbidden) || name.ends_with(['.', ' ']) {
        return None;
    }
    // Device names are ASCII; checking that first also keeps `split_at` on a character boundary.
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let device = stem.is_ascii()
        && match stem.len() {
            3 => ["CON", "PRN", "AUX", "NUL"].iter().any(|d| stem.eq_ignore_ascii_case(d)),
            4 => {
                let (kind, digit) = stem.split_at(3);
                (kind.eq_ignore_ascii_case("COM") || kind.eq_ignore_ascii_case("LPT")) && digit.as_bytes()[0].is_ascii_digit()
            }
            _ => false,
        };
    (!device).then_some(name)
}

/// `path` as text with `/` between its components, whatever the system: how dml writes file
/// names into its own files (a run's `embeddings.txt`, a checkpoint's training-set digest), so
/// that they read the same on every system. A component that is not UTF-8 is written lossily.
pub fn slash_path(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// `text` on one line, its runs of white space (line breaks included) made single spaces: the
/// messages of decoders and readers can span lines, and dml's errors are one line each.
pub fn one_line(text: String) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The most bytes a DEFLATE stream (zlib, gzip) can inflate to per compressed byte: its
/// longest match (258 bytes) coded in its shortest code (about 2 bits). A stream that claims
/// more is malformed or hostile.
pub const MAX_INFLATE_RATIO: u64 = 1032;

/// Reads `reader` to its end, refusing to hold more than `limit` bytes: a decompressor fed a
/// bomb, or a size that a header merely claims, stops at the limit with an `InvalidData` error
/// naming `what` instead of allocating without end.
pub fn read_to_end_at_most(reader: impl Read, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what} is larger than {limit} bytes")));
    }
    Ok(out)
}

/// The most a DEFLATE stream of `compressed` bytes can inflate to, capped at `cap`.
pub fn inflate_limit(compressed: usize, cap: u64) -> u64 {
    (compressed as u64).saturating_mul(MAX_INFLATE_RATIO).saturating_add(64).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn plain_names_pass_and_every_system_s_path_tricks_do_not() {
        for good in [
            "a.png",
            "1f600.png",
            "Black_Footed_Albatross_0001_796111.jpg",
            "..a",
            "a..b",
            "CONSOLE.txt",
            "com10",
            "nul_.png",
            "émoji ☺.png",
        ] {
            assert_eq!(plain_name(good), Some(good), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b.png",
            "../x",
            "..\\..\\x.png",
            "a\\b",
            "C:x.png",
            "C:",
            "c:\\windows\\x",
            "\\\\server\\share",
            "x.png:stream",
            "a<b",
            "a>b",
            "a\"b",
            "a|b",
            "a?b",
            "a*b",
            "a\0b",
            "a\nb",
            "a.png.",
            "a.png ",
            "CON",
            "con.png",
            "Nul",
            "aux.tar.gz",
            "COM1",
            "lpt9.txt",
            "PRN ",
        ] {
            assert_eq!(plain_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bounded_read_stops_at_its_limit() {
        use flate2::{Compression, write::GzEncoder};
        // 64 MiB of zeros compress to about 64 KiB: a small bomb.
        let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
        for _ in 0..64 {
            bomb.write_all(&vec![0u8; 1 << 20]).unwrap();
        }
        let bomb = bomb.finish().unwrap();
        let inflate = || flate2::read::GzDecoder::new(&bomb[..]);
        let error = read_to_end_at_most(inflate(), 1 << 20, "the test stream").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("the test stream is larger than 1048576 bytes"), "{error}");
        assert_eq!(read_to_end_at_most(inflate(), 64 << 20, "").unwrap().len(), 64 << 20);
        // The ratio bound admits the real stream.
        assert!(inflate_limit(bomb.len(), u64::MAX) >= 64 << 20);
        assert_eq!(inflate_limit(usize::MAX, 1000), 1000);
    }

    #[test]
    fn stale_temporaries_are_swept_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("dml-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let make = |name: &str, old: bool| {
            let file = fs::File::create(dir.join(name)).unwrap();
            if old {
                file.set_modified(hour_ago).unwrap();
            }
        };
        make(".checkpoint.dml.tmp4242", true); // a killed run's: removed
        make(".model.bpk.tmp17", true); // removed
        // Being written right now, by this process: kept.
        make(&format!(".embeddings.npy.tmp{}", std::process::id()), false);
        // Young, but its process has ended: removed where that is known (Linux).
        let dead_pid = {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .arg("--list")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        make(&format!(".labels.npy.tmp{dead_pid}"), false);
        make("checkpoint.dml", true); // not a temporary file
        make(".hidden", true);
        make(".config.toml.tmpx1", true); // not a process id
        make("x.tmp12", true); // no leading dot
        write_atomically(&dir.join("model.bpk"), b"new").unwrap();
        let mut removed: Vec<String> =
            sweep_temporaries(&dir, STALE_TEMPORARY).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        removed.sort();
        let mut expected = vec![".checkpoint.dml.tmp4242".to_string(), ".model.bpk.tmp17".to_string()];
        let dead = format!(".labels.npy.tmp{dead_pid}");
        if cfg!(target_os = "linux") {
            expected.insert(1, dead.clone());
        }
        expected.sort();
        assert_eq!(removed, expected);
        let mut left: Vec<String> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want: Vec<String> = [".config.toml.tmpx1", ".hidden", "checkpoint.dml", "model.bpk", "x.tmp12"].map(String::from).to_vec();
        want.push(format!(".embeddings.npy.tmp{}", std::process::id()));
        if !cfg!(target_os = "linux") {
            want.push(dead);
        }
        want.sort();
        assert_eq!(left, want);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sharing_errors_are_windows_codes_and_retried_only_there() {
        assert!(is_windows_sharing_error(5) && is_windows_sharing_error(32) && is_windows_sharing_error(33));
        assert!(!is_windows_sharing_error(2) && !is_windows_sharing_error(183));
        // On Unix, error 5 is EIO and 32 EPIPE: never a file someone holds open.
        assert_eq!(is_held_open(&io::Error::from_raw_os_error(32)), cfg!(windows));
    }

    #[test]
    fn a_rename_blocked_for_a_while_is_retried_until_it_goes_through() {
        let tries = Cell::new(0);
        let busy = |e: &io::Error| e.raw_os_error() == Some(32);
        let blocked_twice = || {
            tries.set(tries.get() + 1);
            if tries.get() <= 2 { Err(io::Error::from_raw_os_error(32)) } else { Ok(tries.get()) }
        };
        assert_eq!(retry_while(blocked_twice, busy, &RETRY_DELAYS).unwrap(), 3);

        // Held for good: as many tries as delays plus one, then the error.
        tries.set(0);
        let always = || -> io::Result<()> {
            tries.set(tries.get() + 1);
            Err(io::Error::from_raw_os_error(32))
        };
        let delays = [Duration::ZERO; 4];
        assert_eq!(retry_while(always, busy, &delays).unwrap_err().raw_os_error(), Some(32));
        assert_eq!(tries.get(), 5);

        // Any other failure is returned at once.
        tries.set(0);
        let missing = || -> io::Result<()> {
            tries.set(tries.get() + 1);
            Err(io::Error::from(io::ErrorKind::NotFound))
        };
        assert!(retry_while(missing, busy, &RETRY_DELAYS).is_err());
        assert_eq!(tries.get(), 1);
    }

    #[test]
    fn retry_waits_add_up_to_about_two_seconds() {
        let total: Duration = RETRY_DELAYS.iter().sum();
        assert_eq!(RETRY_DELAYS[0], Duration::from_millis(1));
        assert_eq!(RETRY_DELAYS[10], Duration::from_millis(1024));
        assert!(total > Duration::from_secs(1) && total < Duration::from_secs(3), "{total:?}");
    }

    #[test]
    fn an_atomic_write_replaces_a_file_that_a_reader_holds_open() {
        let dir = std::env::temp_dir().join(format!("dml-io-open-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("metrics.jsonl");
        fs::write(&target, b"old").unwrap();
        // As the GUI reads a run's files: std opens them sharing read, write and deletion.
        let mut reader = fs::File::open(&target).unwrap();
        write_atomically(&target, b"new").unwrap();
        let mut held = String::new();
        io::Read::read_to_string(&mut reader, &mut held).unwrap();
        assert_eq!(held, "old", "the open handle keeps the file it opened");
        assert_eq!(fs::read(&target).unwrap(), b"new");
        drop(reader);
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("metrics.jsonl")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_atomic_write_leaves_neither_a_temp_file_nor_a_changed_target() {
        let dir = std::env::temp_dir().join(format!("dml-io-atomic-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // A file cannot be renamed over a folder that holds something.
        let target = dir.join("busy");
        fs::create_dir_all(target.join("inside")).unwrap();
        assert!(write_atomically(&target, b"data").is_err());
        let mut names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("busy")]);
        assert!(target.join("inside").is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }
}
