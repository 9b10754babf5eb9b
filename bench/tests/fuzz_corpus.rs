//! Replays the inputs the fuzzer kept (`bench/fuzz/corpus/<target>/`: the seeds' mutants that
//! reached a new outcome, and any input that once crashed a parser) through every parser: each
//! must return an error or a value, never panic. The fuzzer itself runs for minutes
//! (`bench/fuzz.sh`); this keeps what it found.

use std::path::Path;

use dml_bench::fuzz_targets::{TARGETS, target};

#[test]
fn every_kept_fuzz_input_is_an_error_or_a_value() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let scratch = std::env::temp_dir().join(format!("dml-fuzz-replay-{}", std::process::id()));
    let mut replayed = 0;
    for name in TARGETS {
        let run = target(name, &scratch).expect("a known target");
        let dir = corpus.join(name);
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no inputs kept", dir.display());
        for file in files {
            let input = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&input)));
            assert!(outcome.is_ok(), "{} makes the {name} parser panic", file.display());
            replayed += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!("{replayed} kept fuzz inputs replayed");
}
