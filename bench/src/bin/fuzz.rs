//! A seeded mutation fuzzer for dml's parsers, on stable Rust (no nightly, no cargo-fuzz here).
//!
//! `fuzz TARGET SECONDS [SEED] [OUT]` mutates a corpus of valid inputs (bit flips, interesting
//! integers over 1/2/4/8 bytes, inserted, deleted, repeated and spliced ranges) and feeds each
//! result to one parser, which must return `Ok` or `Err` and nothing else:
//! - a panic is caught, and the input saved as `OUT/TARGET-crash-N`;
//! - an allocation over 1 GiB aborts the process after writing the input to `OUT/TARGET-oom`;
//! - an input that runs past 10 s aborts after writing it to `OUT/TARGET-hang`.
//!
//! `fuzz TARGET --replay FILE` runs one saved input, its panic not caught.
//!
//! Targets: `npy`, `idx`, `mat5`, `checkpoint`, `model` (a `model.bpk` into the default job's
//! network), `list` (CUB, SOP, In-Shop, Cars-196 lists and image folders, through a scratch
//! folder), `config` (TOML and `--set` overrides). The last
//! line is `TARGET: N executions in S s (seed X), C crashes, corpus K`. The abort paths save the
//! input through a raw file descriptor (they must not allocate): on Unix; elsewhere they only say
//! what happened.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
#[cfg(unix)]
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// Largest single allocation a parser may make on fuzzed input.
const MAX_ALLOCATION: usize = 1 << 30;
/// Longest one input may take.
const MAX_EXECUTION: Duration = Duration::from_secs(10);

/// The input being run, for the abort paths: pointer and length, set before each execution.
static CURRENT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CURRENT_LEN: AtomicUsize = AtomicUsize::new(0);
/// Files opened at start for the abort paths to write the input into.
static OOM_FD: AtomicI32 = AtomicI32::new(-1);
static HANG_FD: AtomicI32 = AtomicI32::new(-1);
/// Executions started; the watchdog looks for one that does not move on.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Writes the current input to `fd` without allocating (on Unix), then aborts.
#[cfg_attr(not(unix), allow(unused_variables))]
fn dump_and_abort(fd: &AtomicI32, what: &[u8]) -> ! {
    #[cfg(unix)]
    {
        let fd = fd.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the descriptor was opened by `main` and stays open; ManuallyDrop keeps it so.
            let mut file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let (ptr, len) = (CURRENT.load(Ordering::SeqCst), CURRENT_LEN.load(Ordering::SeqCst));
            if !ptr.is_null() {
                // SAFETY: the main loop keeps the input alive while it runs.
                let _ = file.write_all(unsafe { std::slice::from_raw_parts(ptr, len) });
            }
            let _ = file.sync_all();
        }
    }
    let _ = std::io::stderr().write_all(what);
    std::process::abort()
}

struct Guarded;

// SAFETY: forwards to the system allocator; only refuses (by aborting) oversize requests.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            dump_and_abort(&OOM_FD, b"\nfuzz: an allocation over 1 GiB\n");
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            dump_and_abort(&OOM_FD, b"\nfuzz: an allocation over 1 GiB\n");
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Guarded = Guarded;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: fuzz npy|idx|mat5|checkpoint|model|list|config SECONDS [SEED] [OUT]";
    let target = args.get(1).expect(usage).clone();
    if args.get(2).map(String::as_str) == Some("--replay") {
        // One input, no panic caught: the panic's message and place, for fixing it.
        let scratch = std::env::temp_dir().join(format!("dml-fuzz-replay-{}", std::process::id()));
        let run = dml_bench::fuzz_targets::target(&target, &scratch).unwrap_or_else(|| panic!("unknown target `{target}`"));
        let input = std::fs::read(args.get(3).expect("fuzz TARGET --replay FILE")).expect("the input file");
        println!("{}", run(&input));
        return;
    }
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let out = PathBuf::from(args.get(4).cloned().unwrap_or_else(|| "target/fuzz".into()));
    std::fs::create_dir_all(&out).expect("output folder");
    let scratch = std::env::temp_dir().join(format!("dml-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let run = dml_bench::fuzz_targets::target(&target, &scratch).unwrap_or_else(|| panic!("unknown target `{target}`; {usage}"));
    let seeds = dml_bench::fuzz_targets::seeds(&target);
    let mut corpus = seeds.clone();
    // Outcomes seen so far (see `outcome`): an input with a new one reached code the others did
    // not, and becomes a base for more mutations. Crude coverage without instrumentation.
    let mut seen = std::collections::HashSet::new();
    let open = |name: &str| std::fs::File::create(out.join(format!("{target}-{name}"))).expect("dump file");
    let (oom, hang) = (open("oom"), open("hang"));
    #[cfg(unix)]
    {
        OOM_FD.store(oom.as_raw_fd(), Ordering::SeqCst);
        HANG_FD.store(hang.as_raw_fd(), Ordering::SeqCst);
    }
    // Elsewhere the files stay empty; they are kept open as on Unix.
    #[cfg(not(unix))]
    let _ = (&oom, &hang);
    std::thread::spawn(|| {
        let mut last = (u64::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = STARTED.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > MAX_EXECUTION {
                dump_and_abort(&HANG_FD, b"\nfuzz: one input ran past 10 s\n");
            }
        }
    });
    // Panics are expected findings: counted and saved, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (start, mut executions, mut crashes) = (Instant::now(), 0u64, 0u64);
    while start.elapsed().as_secs_f64() < seconds {
        // Half the time from an original seed: mutants of mutants drift into noise that the
        // first check of every parser rejects.
        let base = if rng.random_bool(0.5) { &seeds[rng.random_range(0..seeds.len())] } else { &corpus[rng.random_range(0..corpus.len())] };
        let input = mutate(base, &corpus, &mut rng);
        CURRENT.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
        CURRENT_LEN.store(input.len(), Ordering::SeqCst);
        STARTED.fetch_add(1, Ordering::SeqCst);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&input)));
        CURRENT.store(std::ptr::null_mut(), Ordering::SeqCst);
        executions += 1;
        match result {
            Err(_) => {
                crashes += 1;
                let path = out.join(format!("{target}-crash-{crashes}"));
                std::fs::write(&path, &input).expect("crash file");
                eprintln!("fuzz: {target} panicked; input saved to {}", path.display());
            }
            Ok(signature) => {
                if seen.insert(signature) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
        }
    }
    drop((oom, hang));
    for name in ["oom", "hang"] {
        let _ = std::fs::remove_file(out.join(format!("{target}-{name}")));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "{target}: {executions} executions in {:.0} s (seed {seed}), {crashes} crashes, {} distinct outcomes, corpus {}",
        start.elapsed().as_secs_f64(),
        seen.len(),
        corpus.len()
    );
    if let Some(dir) = std::env::var_os("DML_FUZZ_CORPUS") {
        // The corpus grown here, for regression tests and later runs.
        let dir = PathBuf::from(dir).join(&target);
        std::fs::create_dir_all(&dir).expect("corpus folder");
        for (i, input) in corpus.iter().enumerate() {
            std::fs::write(dir.join(format!("{i:04}")), input).expect("corpus file");
        }
    }
    if crashes > 0 {
        std::process::exit(1);
    }
}

/// Largest corpus kept.
const MAX_CORPUS: usize = 4096;

/// Integers at the edges of every width: where size checks go wrong.
const INTERESTING: [u64; 12] = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, u64::MAX];

fn mutate(base: &[u8], corpus: &[Vec<u8>], rng: &mut Xoshiro256PlusPlus) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..8) {
            0 if len > 0 => out[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => out[at] = rng.random(),
            2 => {
                let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
                let value = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let bytes = if rng.random_bool(0.5) { value.to_le_bytes() } else { value.to_be_bytes() };
                let bytes = if bytes[0] == 0 && width < 8 && value != 0 { &bytes[8 - width..] } else { &bytes[..width] };
                for (i, b) in bytes.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                out.drain(at..end);
            }
            4 => {
                let extra: Vec<u8> = (0..rng.random_range(1..=16)).map(|_| rng.random()).collect();
                out.splice(at..at, extra);
            }
            5 if len > 0 => {
                // Repeat a range: lists and nested elements grow.
                let end = (at + rng.random_range(1..=256)).min(len);
                let piece = out[at..end].to_vec();
                for _ in 0..rng.random_range(1..=8) {
                    out.splice(end..end, piece.iter().copied());
                }
            }
            6 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let end = (from + rng.random_range(1..=128)).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
            }
            7 if len > 1 => out.truncate(rng.random_range(0..len)),
            _ => {}
        }
        if out.len() > 1 << 20 {
            out.truncate(1 << 20);
        }
    }
    out
}
