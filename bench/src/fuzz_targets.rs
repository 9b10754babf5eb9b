//! The parsers the fuzzer (`src/bin/fuzz.rs`) drives, with their seed inputs; shared with the
//! regression test that replays the corpus it grew (`tests/fuzz_corpus.rs`).

use std::io::Write;
use std::path::Path;

use dml_engine::burn::tensor::Device;
use dml_engine::data::{self, SamplerState};
use dml_engine::train::{Checkpoint, TrainConfig, TrainState, Trainer};

/// Every target's name.
pub const TARGETS: [&str; 7] = ["npy", "idx", "mat5", "checkpoint", "model", "list", "config"];

/// One target's parser: input bytes to the signature of what it did ([`outcome`]).
pub type Parser = Box<dyn Fn(&[u8]) -> String>;

/// The parser of `name` as a function of the input bytes, returning [`outcome`]'s signature;
/// `scratch` is a folder the `list` target may fill and empty. `None` for an unknown name.
pub fn target(name: &str, scratch: &Path) -> Option<Parser> {
    Some(match name {
        "npy" => Box::new(|b| {
            let matrix = dml_engine::npy::parse_matrix(b).map(|m| m.rows);
            let labels = dml_engine::npy::parse_labels(b).map(|l| l.len());
            format!("{} {}", outcome(&matrix), outcome(&labels))
        }),
        "idx" => Box::new(|b| {
            // The first byte picks plain or gzip-compressed input.
            let (&first, rest) = b.split_first().unwrap_or((&0, &[]));
            outcome(&if first & 1 == 0 { data::idx::parse(rest) } else { data::idx::parse_gz(rest) }.map(|a| a.dims.len()))
        }),
        "mat5" => Box::new(|b| outcome(&data::mat5::read(b).map(|v| v.len()))),
        "checkpoint" => Box::new(|b| outcome(&Checkpoint::from_bytes(b).map(|c| c.state.iteration))),
        // model.bpk (and a checkpoint's model part): Burn's burnpack reader, then the record
        // loaded into the default job's network.
        "model" => Box::new(|b| {
            let config = TrainConfig::default();
            outcome(&dml_engine::train::model_from_bytes(&config, b.to_vec(), &Device::flex()).map(|_| ()))
        }),
        "list" => {
            let scratch = scratch.to_path_buf();
            Box::new(move |b| list_target(&scratch, b))
        }
        "config" => Box::new(|b| {
            let text = String::from_utf8_lossy(b);
            let file = TrainConfig::from_toml(&text).map(|_| ());
            let overrides: Vec<String> = text.lines().map(str::to_string).collect();
            let set = TrainConfig::default().with_overrides(&overrides).map(|_| ());
            format!("{} {}", outcome(&file), outcome(&set))
        }),
        _ => return None,
    })
}

/// What a parser did with an input, as a short signature: `ok`, or its error message up to the
/// first quote with the numbers taken out, so that "truncated at byte 17" and "truncated at byte
/// 90" are one outcome and "declares 5 items in 3 bytes" another.
pub fn outcome<T: std::fmt::Debug, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    let text = match result {
        Ok(value) => format!("ok {value:?}"),
        Err(e) => e.to_string(),
    };
    // Everything from the first quote on (`...`, "...", '...') may be the fuzzer's own input
    // echoed back: noise, not a path through the parser. Numbers likewise.
    let mut signature: String =
        text.chars().take_while(|c| !matches!(c, '`' | '"' | '\'')).filter(|c| !c.is_ascii_digit()).take(120).collect();
    if result.is_ok() {
        // Which values parse is not a path of its own.
        signature.truncate(2);
    }
    signature
}

/// The list formats read from a scratch folder: the first byte picks the format, the rest is
/// its list file. The image-folder format takes the rest as class folder names, one a line.
fn list_target(scratch: &Path, bytes: &[u8]) -> String {
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
            outcome(&data::cub::load(scratch).map(|d| d.train.len()))
        }
        2 => {
            write("Ebay_train.txt", rest);
            write("Ebay_test.txt", rest);
            outcome(&data::sop::load(scratch).map(|d| d.train.len()))
        }
        3 => {
            write("list_eval_partition.txt", rest);
            outcome(&data::inshop::load(scratch).map(|d| d.train.len()))
        }
        4 => {
            write("cars_annos.mat", rest);
            outcome(&data::cars::load(scratch).map(|d| d.train.len()))
        }
        _ => {
            // Class folders with one (undecoded) image each, under fuzzed names.
            for name in String::from_utf8_lossy(rest).split('\n').take(64) {
                if let Some(name) = dml_engine::io::plain_name(name) {
                    let _ =
                        std::fs::create_dir_all(scratch.join(name)).and_then(|()| std::fs::write(scratch.join(name).join("a.png"), b""));
                }
            }
            outcome(&data::folder::load(scratch).map(|d| d.train.len()))
        }
    }
}

/// Valid inputs of each target, written by dml itself or taken from the test fixtures.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
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
            vec![Checkpoint { state, model: vec![1, 2, 3, 4], optimizer: vec![5, 6], loss: vec![7], memory: vec![8, 9] }.to_bytes()]
        }
        "model" => {
            let trainer = Trainer::new(&TrainConfig::default(), &Device::flex()).expect("the default job starts");
            vec![trainer.checkpoint().expect("a checkpoint").model]
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
