//! A seeded mutation fuzzer for dml's parsers, on stable Rust (no nightly, no cargo-fuzz here).
//!
//! `fuzz TARGET SECONDS [SEED] [OUT]` mutates a corpus of valid inputs (bit flips, interesting
//! integers over 1/2/4/8 bytes, inserted, deleted, repeated and spliced ranges) and feeds each
//! result to one parser, which must return `Ok` or `Err` and nothing else:
//! - a panic is caught, and the input saved as `OUT/TARGET-crash-N`;
//! - an allocation over 1 GiB aborts the process after writing the input to `OUT/TARGET-oom`;
//! - an input that runs past 10 s aborts after writing it to `OUT/TARGET-hang`.
//!
//! Targets: `npy`, `idx`, `mat5`, `checkpoint`, `list` (CUB, SOP, In-Shop, Cars-196 lists and
//! image folders, through a scratch folder), `config` (TOML and `--set` overrides). The last
//! line is `TARGET: N executions in S s (seed X), C crashes, corpus K`. Unix only (the abort paths write
//! through a raw file descriptor, which must not allocate).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dml_engine::data::{self, SamplerState};
use dml_engine::train::{Checkpoint, TrainConfig, TrainState};
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

/// Writes the current input to `fd` without allocating, then aborts.
fn dump_and_abort(fd: &AtomicI32, what: &[u8]) -> ! {
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
    let usage = "usage: fuzz npy|idx|mat5|checkpoint|list|config SECONDS [SEED] [OUT]";
    let target = args.get(1).expect(usage).clone();
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let out = PathBuf::from(args.get(4).cloned().unwrap_or_else(|| "target/fuzz".into()));
    std::fs::create_dir_all(&out).expect("output folder");
    let scratch = std::env::temp_dir().join(format!("dml-fuzz-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let run: Box<dyn Fn(&[u8])> = match target.as_str() {
        "npy" => Box::new(|b| {
            let _ = dml_engine::npy::parse_matrix(b);
            let _ = dml_engine::npy::parse_labels(b);
        }),
        "idx" => Box::new(|b| {
            // The first byte picks plain or gzip-compressed input.
            let (&first, rest) = b.split_first().unwrap_or((&0, &[]));
            let _ = if first & 1 == 0 { data::idx::parse(rest) } else { data::idx::parse_gz(rest) };
        }),
        "mat5" => Box::new(|b| {
            let _ = data::mat5::read(b);
        }),
        "checkpoint" => Box::new(|b| {
            let _ = Checkpoint::from_bytes(b);
        }),
        "list" => {
            let scratch = scratch.clone();
            Box::new(move |b| list_target(&scratch, b))
        }
        "config" => Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            let _ = TrainConfig::from_toml(&text);
            let overrides: Vec<String> = text.lines().map(str::to_string).collect();
            let _ = TrainConfig::default().with_overrides(&overrides);
        }),
        other => panic!("unknown target `{other}`; {usage}"),
    };
    let mut corpus = seeds(&target);
    let open = |name: &str| std::fs::File::create(out.join(format!("{target}-{name}"))).expect("dump file");
    let (oom, hang) = (open("oom"), open("hang"));
    OOM_FD.store(oom.as_raw_fd(), Ordering::SeqCst);
    HANG_FD.store(hang.as_raw_fd(), Ordering::SeqCst);
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
        let base = &corpus[rng.random_range(0..corpus.len())];
        let input = mutate(base, &corpus, &mut rng);
        CURRENT.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
        CURRENT_LEN.store(input.len(), Ordering::SeqCst);
        STARTED.fetch_add(1, Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&input)));
        CURRENT.store(std::ptr::null_mut(), Ordering::SeqCst);
        executions += 1;
        if outcome.is_err() {
            crashes += 1;
            let path = out.join(format!("{target}-crash-{crashes}"));
            std::fs::write(&path, &input).expect("crash file");
            eprintln!("fuzz: {target} panicked; input saved to {}", path.display());
        } else if corpus.len() < 256 && rng.random_bool(0.002) {
            // Keep a few mutants as bases: deeper mutations without coverage feedback.
            corpus.push(input);
        }
    }
    drop((oom, hang));
    for name in ["oom", "hang"] {
        let _ = std::fs::remove_file(out.join(format!("{target}-{name}")));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{target}: {executions} executions in {:.0} s (seed {seed}), {crashes} crashes, corpus {}", start.elapsed().as_secs_f64(), corpus.len());
    if crashes > 0 {
        std::process::exit(1);
    }
}

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

/// The list formats read from a scratch folder: the first byte picks the format, the rest is
/// its list file. The image-folder format takes the rest as class folder names, one a line.
fn list_target(scratch: &Path, bytes: &[u8]) {
    let (&first, rest) = bytes.split_first().unwrap_or((&0, &[]));
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).expect("scratch");
    let write = |name: &str, content: &[u8]| {
        let path = scratch.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("list folder");
        std::fs::write(path, content).expect("list file");
    };
    match first % 6 {
        0 | 1 => {
            // CUB: the two lists, split at the first 0 byte.
            let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            write("images.txt", &rest[..split]);
            write("image_class_labels.txt", rest.get(split + 1..).unwrap_or(&[]));
            let _ = data::cub::load(scratch);
        }
        2 => {
            write("Ebay_train.txt", rest);
            write("Ebay_test.txt", rest);
            let _ = data::sop::load(scratch);
        }
        3 => {
            write("list_eval_partition.txt", rest);
            let _ = data::inshop::load(scratch);
        }
        4 => {
            write("cars_annos.mat", rest);
            let _ = data::cars::load(scratch);
        }
        _ => {
            // Class folders with one (undecoded) image each, under fuzzed names.
            for name in String::from_utf8_lossy(rest).split('\n').take(64) {
                if let Some(name) = dml_engine::io::plain_name(name) {
                    let _ = std::fs::create_dir_all(scratch.join(name)).and_then(|()| std::fs::write(scratch.join(name).join("a.png"), b""));
                }
            }
            let _ = data::folder::load(scratch);
        }
    }
}

/// Valid inputs of each target, written by dml itself or taken from the test fixtures.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures");
    let fixture = |name: &str| std::fs::read(fixtures.join(name)).expect("fixture");
    match target {
        "npy" => {
            let dir = std::env::temp_dir().join(format!("dml-fuzz-seed-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("seed folder");
            dml_engine::npy::write_matrix_f32(&dir.join("m.npy"), 3, 2, &[1.0, -2.0, 0.5, 4.0, 5.0, 6.0]).expect("seed");
            dml_engine::npy::write_labels(&dir.join("l.npy"), &[0, 1, 1, 2]).expect("seed");
            let seeds = vec![std::fs::read(dir.join("m.npy")).expect("seed"), std::fs::read(dir.join("l.npy")).expect("seed")];
            let _ = std::fs::remove_dir_all(&dir);
            let mut all = seeds;
            all.push(fixture("tsne_clusters_1000x10.npy")[..600].to_vec());
            all
        }
        "idx" => {
            let mut plain = vec![0u8, 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2];
            plain.extend((0..12u8).collect::<Vec<_>>());
            let labels = vec![0u8, 0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4];
            let gz = |b: &[u8]| {
                let mut e = flate2::write::GzEncoder::new(vec![1u8], flate2::Compression::fast());
                e.write_all(b).expect("gzip");
                e.finish().expect("gzip")
            };
            vec![plain.clone(), labels.clone(), gz(&plain[1..]), gz(&labels[1..])]
        }
        "mat5" => vec![fixture("cars_annos_scipy_plain.mat"), fixture("cars_annos_scipy_compressed.mat")],
        "checkpoint" => {
            let train_set = Some(dml_engine::train::TrainSetSummary::of(&[0, 0, 1, 1], None));
            let state = TrainState { iteration: 12, sampler: SamplerState { epoch: 1, cursor: 40, batches: 12 }, loss_calls: 3, train_set };
            vec![Checkpoint { state, model: vec![1, 2, 3, 4], optimizer: vec![5, 6] }.to_bytes()]
        }
        "list" => vec![
            b"\x001 001.Bird/a.jpg\n2 001.Bird/b.jpg\n3 102.Gull/c.jpg\n\x001 1\n2 1\n3 102\n".to_vec(),
            b"\x02image_id class_id super_class_id path\n1 1 1 bike/a.JPG\n2 1 1 bike/b.JPG\n".to_vec(),
            b"\x035\nimage_name item_id evaluation_status\nimg/a/1.jpg id_00000001 train\nimg/a/2.jpg id_00000001 train\nimg/b/1.jpg id_00000002 query\nimg/b/2.jpg id_00000002 gallery\nimg/c/1.jpg id_00000003 gallery\n".to_vec(),
            [vec![4u8], fixture("cars_annos_scipy_plain.mat")].concat(),
            b"\x05cats\ndogs\nbirds".to_vec(),
        ],
        "config" => {
            let default = TrainConfig::default().to_toml().into_bytes();
            let set = b"sampler.p=8\nsampler.k=4\nloss.name=margin\nloss.beta=1.2\naugment.crop=64\naugment.resize=72\n".to_vec();
            vec![default, set, b"[run]\niterations = 3\n[augment]\ncrop_scale = [0.2, 1.0]\n".to_vec()]
        }
        other => panic!("no seeds for `{other}`"),
    }
}
