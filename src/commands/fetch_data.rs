//! `dml data fetch`: datasets that package registries carry, unpacked into dml's layout.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::fetch::{npm_pack, write_atomically};
use super::progress::Progress;
use crate::error::CliError;

/// The npm packages of the emoji dataset, one drawing style each.
const EMOJI_PACKAGES: [(&str, &str); 2] = [("google", "emoji-datasource-google@16.0.0"), ("twitter", "emoji-datasource-twitter@16.0.0")];
/// 64 × 64 PNGs per style in version 16.0.0.
const EMOJI_IMAGES: u64 = 3_786;

pub fn run(name: &str, dir: Option<PathBuf>) -> Result<(), CliError> {
    let dir = dir.unwrap_or_else(|| dml_engine::data::cache_dir().join(name));
    match name {
        "emoji" => emoji(&dir),
        "fashion-mnist-full" => fashion_mnist_full(&dir),
        other => Err(CliError::plain(format!("no dataset named `{other}` can be fetched (known: emoji, fashion-mnist-full)"))),
    }
}

fn emoji(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::at(dir, e))?;
    for (style, package) in EMOJI_PACKAGES {
        let done = dir.join("img").join(style).join(".complete");
        if done.exists() {
            println!("{style}: already there");
            continue;
        }
        eprintln!("downloading {package} from npm");
        let tgz = npm_pack(package, dir)?;
        let file = std::fs::File::open(&tgz).map_err(|e| CliError::at(&tgz, e))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut progress = Progress::new(style, 0, EMOJI_IMAGES).with_unit("img");
        let (mut count, mut last) = (0u64, Instant::now());
        let images = format!("package/img/{style}/64/");
        for entry in archive.entries().map_err(|e| CliError::at(&tgz, e))? {
            let mut entry = entry.map_err(|e| CliError::at(&tgz, e))?;
            let path = entry.path().map_err(|e| CliError::at(&tgz, e))?.to_string_lossy().into_owned();
            let target = if let Some(name) = path.strip_prefix(&images).filter(|n| n.ends_with(".png") && !n.contains('/')) {
                dir.join("img").join(style).join("64").join(name)
            } else if matches!(path.as_str(), "package/emoji.json" | "package/LICENSE" | "package/README.md") && style == "google" {
                dir.join(path.trim_start_matches("package/"))
            } else {
                continue;
            };
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(|e| CliError::at(&tgz, format!("{path}: {e}")))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| CliError::at(parent, e))?;
            }
            write_atomically(&target, &bytes)?;
            if target.extension().is_some_and(|e| e == "png") {
                count += 1;
                progress.update(count.min(EMOJI_IMAGES), None, 1, Some(last.elapsed()));
                last = Instant::now();
            }
        }
        progress.interrupt();
        let _ = std::fs::remove_file(&tgz);
        if count == 0 {
            return Err(CliError::at(&tgz, format!("no img/{style}/64 images in the package")));
        }
        std::fs::write(&done, count.to_string()).map_err(|e| CliError::at(&done, e))?;
        println!("{style}: {count} images");
    }
    let dataset = dml_engine::data::FileDataset::Emoji.load(dir).map_err(|e| CliError::at(&e.path, e.message))?;
    if let Some(missing) = dataset.train.first_missing(dir) {
        return Err(CliError::at(&missing, "listed in emoji.json but not unpacked"));
    }
    println!(
        "{}: {} train images, {} classes; train with `dml train --dataset emoji --root {}`",
        dir.display(),
        dataset.train.len(),
        dataset.train.classes(),
        dir.display()
    );
    println!("images: Noto Emoji (Apache-2.0) and Twemoji (CC-BY 4.0); emoji.json: emoji-datasource (MIT)");
    Ok(())
}

fn fashion_mnist_full(dir: &Path) -> Result<(), CliError> {
    let files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];
    std::fs::create_dir_all(dir).map_err(|e| CliError::at(dir, e))?;
    if files.iter().all(|f| dir.join(f).exists()) {
        println!("{}: already there", dir.display());
        return Ok(());
    }
    eprintln!("downloading Debian's dataset-fashion-mnist with apt-get");
    let scratch = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| CliError::at(&scratch, e))?;
    let status = std::process::Command::new("apt-get")
        .args(["download", "dataset-fashion-mnist"])
        .current_dir(&scratch)
        .status()
        .map_err(|e| CliError::plain(format!("fetching fashion-mnist-full needs Debian's apt-get ({e})")))?;
    if !status.success() {
        return Err(CliError::plain(format!("`apt-get download dataset-fashion-mnist` failed ({status})")));
    }
    let deb = std::fs::read_dir(&scratch)
        .map_err(|e| CliError::at(&scratch, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| CliError::at(&scratch, "apt-get left no .deb"))?;
    // dpkg-deb unpacks whichever compression the package's data member uses.
    let out = std::process::Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .output()
        .map_err(|e| CliError::plain(format!("unpacking a .deb needs dpkg-deb ({e})")))?;
    if !out.status.success() {
        return Err(CliError::at(&deb, String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut archive = tar::Archive::new(std::io::Cursor::new(out.stdout));
    let mut progress = Progress::new("fashion-mnist", 0, files.len() as u64).with_unit("file");
    let (mut found, mut last) = (0u64, Instant::now());
    for entry in archive.entries().map_err(|e| CliError::at(&deb, e))? {
        let mut entry = entry.map_err(|e| CliError::at(&deb, e))?;
        let path = entry.path().map_err(|e| CliError::at(&deb, e))?.to_string_lossy().into_owned();
        let Some(name) = path.rsplit('/').next().filter(|n| files.contains(n) || *n == "copyright") else {
            continue;
        };
        let name = name.to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| CliError::at(&deb, format!("{path}: {e}")))?;
        write_atomically(&dir.join(&name), &bytes)?;
        if name != "copyright" {
            found += 1;
            progress.update(found, None, 1, Some(last.elapsed()));
            last = Instant::now();
        }
    }
    progress.interrupt();
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(missing) = files.iter().find(|f| !dir.join(f).exists()) {
        return Err(CliError::at(&deb, format!("{missing} is not in the package")));
    }
    // Where `dml train --dataset fashion-mnist-full` looks without --root.
    let default_dir =
        dml_engine::data::DataConfig { dataset: dml_engine::data::DatasetKind::FashionMnistFull, ..Default::default() }.resolved_root();
    let root_flag = if dir == default_dir { String::new() } else { format!(" --root {}", dir.display()) };
    let (train, test) = dml_engine::data::fashion_mnist::full_split(dir).map_err(|e| CliError::at(&e.path, e.source))?;
    println!(
        "{}: the 60,000 training and 10,000 test images (licence: copyright, Expat); classes 0–4 of the training set ({} images) train, classes 5–9 of the test set ({}) test: `dml train --dataset fashion-mnist-full{root_flag}`",
        dir.display(),
        super::data::thousands(train.len()),
        super::data::thousands(test.len())
    );
    Ok(())
}
