//! End-to-end tests of `dml train`: a shortened default run learns, an interrupted run (Ctrl-C or
//! killed outright) resumes to exactly the result of an uninterrupted one, and bad input gives one
//! `error:` line with exit code 2.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dml_engine::npy;
use serde_json::Value;

mod common;

use common::{assert_error, scratch};

fn dml() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dml"));
    command.env("RAYON_NUM_THREADS", "2");
    command
}

fn run(args: &[&str]) -> Output {
    dml().args(args).output().expect("dml runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn metrics(run_dir: &Path) -> Vec<Value> {
    fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("metrics lines are JSON"))
        .collect()
}

fn evals(run_dir: &Path) -> Vec<Value> {
    metrics(run_dir).into_iter().filter(|v| v.get("split").is_some()).collect()
}

fn last_train_iteration(run_dir: &Path) -> u64 {
    fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .filter_map(|v| v["iteration"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Runs `args` as a shortened training run, returning its folder.
fn train(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let run_dir = dir.join(name);
    let mut all = vec!["train", "--run-dir", run_dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(out.status.success(), "dml train failed: {}", text(&out.stderr));
    run_dir
}

#[test]
fn shortened_default_run_improves_recall_and_writes_the_run_folder() {
    let dir = scratch("default");
    let run_dir = train(&dir, "run", &["--iterations", "30", "--eval-interval", "15", "--checkpoint-interval", "10"]);
    let lines = metrics(&run_dir);
    let evals = evals(&run_dir);
    assert_eq!(evals.iter().map(|e| e["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 15, 30]);
    let train_lines: Vec<&Value> = lines.iter().filter(|v| v.get("loss").is_some()).collect();
    assert_eq!(train_lines.len(), 30);
    for (i, line) in train_lines.iter().enumerate() {
        assert_eq!(line["iteration"].as_u64(), Some(i as u64 + 1));
        assert!(line["loss"].as_f64().unwrap().is_finite());
        assert_eq!(line["lr"].as_f64(), Some(1e-3));
    }
    let r1 = |e: &Value| e["recall_at_k"]["1"].as_f64().unwrap();
    let (before, after) = (&evals[0], &evals[2]);
    assert!(r1(after) > r1(before) + 0.03, "Recall@1 {} → {}", r1(before), r1(after));
    assert!(after["map_at_r"].as_f64().unwrap() > before["map_at_r"].as_f64().unwrap());
    for k in ["1", "2", "4", "8"] {
        assert!(after["recall_at_k"][k].is_f64());
    }
    for file in ["config.toml", "checkpoint.dml", "model.bpk", "embeddings.npy", "labels.npy"] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    // The saved test embeddings are the ones that were scored.
    let out = run(&[
        "metrics",
        "--embeddings",
        run_dir.join("embeddings.npy").to_str().unwrap(),
        "--labels",
        run_dir.join("labels.npy").to_str().unwrap(),
        "--json",
        "--backend",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scored: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(scored["queries"].as_u64(), Some(5000));
    assert_eq!(scored["recall_at_k"]["1"], after["recall_at_k"]["1"]);
    assert!((scored["map_at_r"].as_f64().unwrap() - after["map_at_r"].as_f64().unwrap()).abs() < 1e-9);
    // The config written is the one that ran.
    let config = fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("iterations = 30"), "{config}");

    // `dml eval` reloads model.bpk and recomputes the same table.
    let out = run(&["eval", "--run", run_dir.to_str().unwrap(), "--json", "--backend", "cpu"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(again["recall_at_k"], after["recall_at_k"]);
    assert!((again["map_at_r"].as_f64().unwrap() - after["map_at_r"].as_f64().unwrap()).abs() < 1e-9);

    // `dml export --projector` writes the four projector files, consistent with each other.
    let projector = dir.join("projector");
    let out = run(&["export", "--run", run_dir.to_str().unwrap(), "--projector", projector.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let vectors = fs::read_to_string(projector.join("vectors.tsv")).unwrap();
    assert_eq!(vectors.lines().count(), 5000);
    assert!(vectors.lines().all(|l| l.split('\t').count() == 64 && l.split('\t').all(|v| v.parse::<f32>().is_ok())));
    let first: Vec<f32> = vectors.lines().next().unwrap().split('\t').map(|v| v.parse().unwrap()).collect();
    let norm: f32 = first.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "exported vectors are the L2-normalised embeddings");
    let metadata = fs::read_to_string(projector.join("metadata.tsv")).unwrap();
    let mut rows = metadata.lines();
    assert_eq!(rows.next(), Some("label\tclass"));
    let rows: Vec<&str> = rows.collect();
    assert_eq!(rows.len(), 5000);
    assert!(rows.iter().all(|r| ["5\tSandal", "6\tShirt", "7\tSneaker", "8\tBag", "9\tAnkle boot"].contains(r)));
    let sprite = fs::read(projector.join("sprite.png")).unwrap();
    assert_eq!(&sprite[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(sprite[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(sprite[20..24].try_into().unwrap());
    assert_eq!((width, height), (71 * 28, 71 * 28), "5000 thumbnails of 28×28 on a 71×71 grid");
    let pbtxt = fs::read_to_string(projector.join("projector_config.pbtxt")).unwrap();
    for needle in ["tensor_path: \"vectors.tsv\"", "metadata_path: \"metadata.tsv\"", "image_path: \"sprite.png\"", "single_image_dim: 28"]
    {
        assert!(pbtxt.contains(needle), "{pbtxt}");
    }

    // `dml export --web`: a gallery spread over the test split, with the run's own embeddings,
    // labels, a t-SNE map, the model, and images that embed back to their rows.
    let web = dir.join("web");
    let out = run(&["export", "--run", run_dir.to_str().unwrap(), "--web", web.to_str().unwrap(), "--gallery", "700", "--backend", "cpu"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifest: Value = serde_json::from_str(&fs::read_to_string(web.join("manifest.json")).unwrap()).unwrap();
    let rows: Vec<usize> = manifest["test_rows"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap() as usize).collect();
    assert_eq!(rows.len(), 700);
    assert!(rows.windows(2).all(|w| w[1] - w[0] >= 7 && w[1] - w[0] <= 8), "evenly spaced over 5,000");
    assert_eq!((manifest["dim"].as_u64(), manifest["map"].as_str()), (Some(64), Some("t-SNE")));
    assert_eq!(manifest["classes"]["9"], "Ankle boot");
    let all = npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap();
    let all_labels = npy::read_labels(&run_dir.join("labels.npy")).unwrap();
    let gallery = npy::read_matrix(&web.join("gallery.npy")).unwrap();
    assert_eq!((gallery.rows, gallery.cols), (700, 64));
    for (g, &r) in rows.iter().enumerate() {
        assert_eq!(gallery.data[g * 64..(g + 1) * 64], all.data[r * 64..(r + 1) * 64]);
    }
    let labels = npy::read_labels(&web.join("labels.npy")).unwrap();
    assert_eq!(labels, rows.iter().map(|&r| all_labels[r]).collect::<Vec<_>>());
    let map = npy::read_matrix(&web.join("map.npy")).unwrap();
    assert_eq!((map.rows, map.cols), (700, 2));
    assert_eq!(fs::read(web.join("model.bpk")).unwrap(), fs::read(run_dir.join("model.bpk")).unwrap());
    let images: Vec<PathBuf> = manifest["images"].as_array().unwrap().iter().map(|p| web.join(p.as_str().unwrap())).collect();
    let again = dir.join("again.npy");
    let out = run(&[
        "embed",
        "--run",
        run_dir.to_str().unwrap(),
        "--images",
        images[0].to_str().unwrap(),
        images[699].to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = npy::read_matrix(&again).unwrap();
    for (a, g) in [(0, 0), (1, 699)] {
        let diff = (0..64).map(|j| (again.data[a * 64 + j] - gallery.data[g * 64 + j]).abs()).fold(0.0, f64::max);
        assert!(diff < 1e-5, "gallery image {g} embeds back to its row (max diff {diff})");
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// How a test cuts a training short.
#[derive(Clone, Copy, PartialEq)]
enum Interrupt {
    /// What Ctrl-C sends: SIGINT on Unix; on Windows Ctrl-Break to the child's console process
    /// group (a child in its own group has Ctrl-C itself disabled), which dml's handler takes alike.
    CtrlC,
    /// Killed outright (SIGKILL, TerminateProcess): no chance to checkpoint.
    Kill,
}

/// Starts `dml`, in a process group of its own on Windows so that a console event can reach it
/// alone.
fn spawn_interruptible(command: &mut Command) -> std::process::Child {
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x200;
        command.creation_flags(CREATE_NEW_PROCESS_GROUP);
    }
    command.spawn().unwrap()
}

fn ctrl_c(child: &std::process::Child) {
    #[cfg(unix)]
    {
        let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, GenerateConsoleCtrlEvent};
        // SAFETY: plain Win32 call with a process-group id (the child's pid, as it leads its group).
        let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, child.id()) };
        assert_ne!(sent, 0, "GenerateConsoleCtrlEvent: {}", std::io::Error::last_os_error());
    }
}

/// The schedule of the interrupted runs and their uninterrupted references.
const SCHEDULE: [&str; 6] = ["--iterations", "16", "--eval-interval", "8", "--checkpoint-interval", "4"];

fn interrupt_then_resume(dir: &Path, name: &str, interrupt: Interrupt, reference: &Path, extra: &[&str]) {
    let run_dir = dir.join(name);
    let args = [&SCHEDULE[..], extra].concat();
    let mut child = spawn_interruptible(
        dml().args(["train", "--run-dir", run_dir.to_str().unwrap()]).args(args).stdout(Stdio::null()).stderr(Stdio::piped()),
    );
    let started = Instant::now();
    while last_train_iteration(&run_dir) < 6 {
        assert!(started.elapsed() < Duration::from_secs(300), "training never reached iteration 6");
        assert!(child.try_wait().unwrap().is_none(), "training ended before it was interrupted");
        std::thread::sleep(Duration::from_millis(20));
    }
    match interrupt {
        Interrupt::CtrlC => ctrl_c(&child),
        Interrupt::Kill => child.kill().unwrap(),
    }
    let out = child.wait_with_output().unwrap();
    if interrupt == Interrupt::CtrlC {
        assert!(out.status.success(), "Ctrl-C should stop cleanly: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("dml train --resume"), "{}", text(&out.stderr));
    } else {
        assert!(!out.status.success());
    }
    assert!(!run_dir.join("embeddings.npy").exists(), "the run was meant to be cut short");

    let out = run(&["train", "--resume", run_dir.to_str().unwrap()]);
    assert!(out.status.success(), "resume failed: {}", text(&out.stderr));
    assert_same_run(&run_dir, reference, name);
}

/// `run_dir` ended with the test embeddings and evaluations of the 16-iteration `reference`,
/// every iteration logged exactly once.
fn assert_same_run(run_dir: &Path, reference: &Path, name: &str) {
    assert_eq!(
        fs::read(run_dir.join("embeddings.npy")).unwrap(),
        fs::read(reference.join("embeddings.npy")).unwrap(),
        "{name}: the resumed run's test embeddings differ from the uninterrupted run's"
    );
    assert_eq!(evals(run_dir), evals(reference), "{name}: evaluation lines");
    let iterations: Vec<u64> =
        metrics(run_dir).iter().filter(|v| v.get("loss").is_some()).map(|v| v["iteration"].as_u64().unwrap()).collect();
    assert_eq!(iterations, (1..=16).collect::<Vec<_>>(), "{name}: every iteration logged exactly once");
}

#[test]
fn interrupted_runs_resume_to_the_uninterrupted_result() {
    let dir = scratch("resume");
    let reference = train(&dir, "straight", &SCHEDULE);
    interrupt_then_resume(&dir, "ctrl-c", Interrupt::CtrlC, &reference, &[]);
    interrupt_then_resume(&dir, "killed", Interrupt::Kill, &reference, &[]);
    resume_with_more_iterations(&dir, &reference);
    fs::remove_dir_all(&dir).unwrap();
}

/// The state beyond the model: a proxy loss's trained proxies (and their optimiser moments), and
/// the cross-batch memory, which holds several batches when the run is killed.
#[test]
fn killed_runs_with_proxies_or_cross_batch_memory_resume_to_the_uninterrupted_result() {
    let dir = scratch("resume-state");
    for (name, extra) in [
        ("proxy-anchor", &["--loss", "proxy_anchor"][..]),
        ("xbm", &["--set", "xbm.memory_size=300", "--set", "xbm.start_iteration=2"][..]),
    ] {
        let reference = train(&dir, &format!("{name}-straight"), &[&SCHEDULE[..], extra].concat());
        interrupt_then_resume(&dir, name, Interrupt::Kill, &reference, extra);
        if name == "xbm" {
            let terms: Vec<u64> =
                metrics(&reference).iter().filter(|v| v.get("xbm_loss").is_some()).map(|v| v["iteration"].as_u64().unwrap()).collect();
            assert_eq!(terms, (4..=16).collect::<Vec<_>>(), "the memory term is logged once the memory holds a batch");
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_proxy_loss_trains_the_default_job_and_improves_recall() {
    let dir = scratch("proxy-default");
    let run_dir = train(&dir, "run", &["--loss", "proxy_anchor", "--iterations", "60", "--eval-interval", "0"]);
    let evals = evals(&run_dir);
    let r1 = |e: &Value| e["recall_at_k"]["1"].as_f64().unwrap();
    assert!(r1(&evals[1]) > r1(&evals[0]) + 0.03, "Recall@1 {} → {}", r1(&evals[0]), r1(&evals[1]));
    // The sizes came from the data and are not written into the run's config: a resumed run
    // takes them from the same data again (and the checkpoint's summary guards that).
    let config = fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("name = \"proxy_anchor\"") && !config.contains("num_classes"), "{config}");
    // A size that disagrees with the data is one error line naming both.
    let out = run(&["train", "--loss", "proxy_anchor", "--set", "loss.num_classes=10", "--run-dir", dir.join("bad").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("loss.num_classes = 10 but the training split has 5"), "{}", text(&out.stderr));
    fs::remove_dir_all(&dir).unwrap();
}

/// A finished 8-iteration run resumed with `--iterations 16` ends where a 16-iteration run ends.
fn resume_with_more_iterations(dir: &Path, reference: &Path) {
    let run_dir = train(dir, "extended", &["--iterations", "8", "--eval-interval", "8", "--checkpoint-interval", "4"]);
    let path = run_dir.to_str().unwrap();
    let out = run(&["train", "--resume", path, "--iterations", "4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--iterations 4: the run has already trained 8 iterations"), "{}", text(&out.stderr));
    let out = run(&["train", "--resume", path, "--iterations", "16", "--lr", "0.1"]);
    assert_eq!(out.status.code(), Some(2), "only --backend and --iterations may change");

    // A preview of the extended config leaves the run as it is.
    let out = run(&["train", "--resume", path, "--iterations", "16", "--print-config"]);
    assert!(text(&out.stdout).contains("iterations = 16"), "{}", text(&out.stdout));
    let config = fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("iterations = 8"), "--print-config changed config.toml:\n{config}");

    let out = run(&["train", "--resume", path, "--iterations", "16"]);
    assert!(out.status.success(), "extending failed: {}", text(&out.stderr));
    assert_same_run(&run_dir, reference, "extended 8 → 16");
    let config = fs::read_to_string(run_dir.join("config.toml")).unwrap();
    assert!(config.contains("iterations = 16"), "config.toml keeps the new length:\n{config}");
}

#[test]
fn bad_input_gives_one_error_line() {
    let dir = scratch("bad");
    let missing = dir.join("no-such-dataset");
    let run_dir = dir.join("r");
    let rd = run_dir.to_str().unwrap();
    assert_error(&run(&["train", "--run-dir", rd, "--root", missing.to_str().unwrap()]), "no-such-dataset/t10k-images-idx3-ubyte", "");
    fs::remove_dir_all(&run_dir).unwrap();
    let bad_root = dir.join("not-idx");
    fs::create_dir_all(&bad_root).unwrap();
    fs::write(bad_root.join("t10k-images-idx3-ubyte"), b"this is not an IDX file").unwrap();
    fs::write(bad_root.join("t10k-labels-idx1-ubyte"), b"nor this").unwrap();
    assert_error(&run(&["train", "--run-dir", rd, "--root", bad_root.to_str().unwrap()]), "t10k-images-idx3-ubyte", "");
    fs::remove_dir_all(&run_dir).unwrap();

    assert_error(&run(&["train", "--run-dir", rd, "--loss", "hinge"]), "", "unknown variant `hinge`");
    assert_error(&run(&["train", "--run-dir", rd, "--lr=-1"]), "", "optimizer.lr");
    assert_error(&run(&["train", "--run-dir", rd, "--lr", "-1"]), "", "optimizer.lr = -1: must be positive");
    assert_error(&run(&["train", "--run-dir", rd, "--weight-decay", "-0.1"]), "", "optimizer.weight_decay = -0.1: must be ≥ 0");
    assert_error(&run(&["train", "--run-dir", rd, "--set", "sampler.q=3"]), "", "unknown field `q`");
    assert_error(&run(&["train", "--run-dir", rd, "--dataset", "imagenet"]), "", "unknown variant `imagenet`");
    assert!(!run_dir.exists(), "a rejected config must not leave a run folder");

    let not_a_run = dir.join("empty");
    fs::create_dir_all(&not_a_run).unwrap();
    assert_error(&run(&["train", "--resume", not_a_run.to_str().unwrap()]), "empty", "not a dml run folder");
    assert_error(&run(&["train", "--resume", dir.join("nowhere").to_str().unwrap()]), "nowhere", "no such run folder");

    // A run folder whose checkpoint is damaged.
    let broken = dir.join("broken");
    fs::create_dir_all(&broken).unwrap();
    fs::write(broken.join("config.toml"), "[run]\niterations = 4\n").unwrap();
    fs::write(broken.join("checkpoint.dml"), b"DMLCKPT1 truncated").unwrap();
    assert_error(&run(&["train", "--resume", broken.to_str().unwrap()]), "checkpoint.dml", "");
    let mut bytes = b"DMLCKPT1".to_vec();
    bytes.extend_from_slice(&2u64.to_le_bytes());
    bytes.extend_from_slice(&1000u64.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(b"{}");
    fs::write(broken.join("checkpoint.dml"), &bytes).unwrap();
    assert_error(&run(&["train", "--resume", broken.to_str().unwrap()]), "checkpoint.dml", "truncated");

    assert_error(&run(&["eval", "--run", broken.to_str().unwrap()]), "model.bpk", "no model saved yet");
    fs::write(broken.join("model.bpk"), b"not a burnpack").unwrap();
    assert_error(&run(&["eval", "--run", broken.to_str().unwrap()]), "model.bpk", "");
    assert_error(&run(&["export", "--run", dir.join("nowhere").to_str().unwrap(), "--projector", "/tmp/x"]), "nowhere", "");

    // An existing run is never overwritten.
    assert_error(&run(&["train", "--run-dir", broken.to_str().unwrap()]), "broken", "--resume");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_errors_are_one_line_naming_the_setting_or_its_place() {
    let dir = scratch("config-errors");
    let rd = dir.join("r");
    let rd = rd.to_str().unwrap();
    let file = dir.join("bad.toml");
    fs::write(&file, "[run]\niterations = \"many\"\n").unwrap();
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--set", "loss.beta=abc"], "", "`loss.beta=abc`: invalid type: string \"abc\", expected f64"),
        (&["--set", "run=5"], "", "`run=5`: invalid type: integer `5`, expected struct RunConfig"),
        (&["--config", file], "bad.toml", ": line 2, column 14: invalid type: string \"many\", expected u64"),
        (&["--loss", "hinge"], "", "--loss hinge: unknown variant `hinge`, expected one of `contrastive`"),
    ];
    for (args, path_part, message_part) in cases {
        let out = run(&[&["train", "--run-dir", rd][..], args].concat());
        assert_error(&out, path_part, message_part);
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("backend:")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(!lines[0].contains(" at line "), "no position in a text the user never wrote: {}", lines[0]);
    }
    assert!(!Path::new(rd).exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_stops_at_the_nan_and_keeps_its_last_checkpoint() {
    let dir = scratch("nan");
    let run_dir = dir.join("r");
    let out = run(&[
        "train",
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--optimizer",
        "sgd",
        "--lr",
        "1e38",
        "--iterations",
        "50",
        "--eval-interval",
        "0",
    ]);
    assert_error(&out, "r", "at iteration");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the last good checkpoint (iteration 0) is kept"), "{stderr}");
    let checkpoint = fs::read(run_dir.join("checkpoint.dml")).unwrap();
    assert!(checkpoint.starts_with(b"DMLCKPT2"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn print_config_round_trips() {
    let dir = scratch("config");
    let out = run(&["train", "--print-config", "--loss", "margin", "--set", "loss.beta=1.5", "--p", "8"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("name = \"margin\"") && printed.contains("beta = 1.5") && printed.contains("p = 8"));
    let file = dir.join("c.toml");
    fs::write(&file, &printed).unwrap();
    let again = run(&["train", "--print-config", "--config", file.to_str().unwrap()]);
    assert_eq!(text(&again.stdout), printed);
    fs::remove_dir_all(&dir).unwrap();
}

/// The full Fashion-MNIST set trains on its training file: with a copy of the bundled test files
/// in its place the run is exactly the default run; with other training images it is not.
#[test]
fn fashion_mnist_full_reads_its_training_file() {
    let dir = scratch("full");
    let args = ["--iterations", "3", "--eval-interval", "0", "--seed", "7"];
    let default = train(&dir, "default", &args);
    let root = dir.join("fashion-mnist-full");
    common::fashion_mnist_full_tree(&root, 100);
    let with_root = |name: &str| {
        let mut all = vec!["--dataset", "fashion-mnist-full", "--root", root.to_str().unwrap()];
        all.extend_from_slice(&args);
        train(&dir, name, &all)
    };
    let generated = with_root("generated");
    for (prefix, name) in [("images", "idx3"), ("labels", "idx1")] {
        let file = format!("{prefix}-{name}-ubyte");
        fs::remove_file(root.join(format!("train-{file}"))).unwrap();
        fs::copy(common::bundled_fashion_mnist().join(format!("t10k-{file}.gz")), root.join(format!("train-{file}.gz"))).unwrap();
    }
    let copied = with_root("copied");
    let losses = |run_dir: &Path| -> Vec<f64> { metrics(run_dir).iter().filter_map(|v| v.get("loss").and_then(Value::as_f64)).collect() };
    assert_eq!(losses(&copied), losses(&default));
    assert_eq!(evals(&copied), evals(&default));
    assert_ne!(losses(&generated), losses(&default));
    let labels = npy::read_labels(&generated.join("labels.npy")).unwrap();
    assert_eq!(labels.len(), 5000, "tested on classes 5–9 of the test file");
    assert!(labels.iter().all(|l| (5..10).contains(l)));
    let config = fs::read_to_string(generated.join("config.toml")).unwrap();
    assert!(config.contains("dataset = \"fashion-mnist-full\""), "{config}");
    fs::remove_dir_all(&dir).unwrap();
}

/// A machine without any GPU driver (a server, an emulated CPU) resumes a CPU run: Burn loads the
/// optimiser state onto its default device, which must then not be the GPU runtime. The drivers
/// are hidden from Vulkan's and EGL's loaders, so that wgpu finds no adapter at all.
#[cfg(target_os = "linux")]
#[test]
fn a_cpu_run_resumes_without_any_gpu_driver() {
    let dir = scratch("no-gpu");
    let run_dir = train(&dir, "run", &["--iterations", "4", "--eval-interval", "0", "--backend", "cpu"]);
    let out = dml()
        .args(["train", "--resume", run_dir.to_str().unwrap(), "--iterations", "6"])
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl.json")
        .output()
        .unwrap();
    assert!(out.status.success(), "resume without a GPU driver failed: {}", text(&out.stderr));
    let iterations: Vec<u64> =
        metrics(&run_dir).iter().filter(|v| v.get("loss").is_some()).map(|v| v["iteration"].as_u64().unwrap()).collect();
    assert_eq!(iterations, (1..=6).collect::<Vec<_>>());
    fs::remove_dir_all(&dir).unwrap();
}
