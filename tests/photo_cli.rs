//! End-to-end tests of training on photo datasets in their on-disk formats (JPEG files decoded by
//! the `image` crate): `dml train` on CUB-200-2011, Cars-196, Stanford Online Products, In-Shop
//! and an image folder; `eval`, `embed` and `export` of the trained model; corrupt images with and
//! without `--skip-bad-images`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use dml_engine::image::{Rgb, RgbImage};
use dml_engine::npy;
use serde_json::Value;

mod common;

use common::{assert_error, dml, mat, scratch};

/// A photo of class `class`: stripes whose direction and period depend on the class, in a
/// class colour, with per-image noise.
fn photo(path: &Path, class: u32, item: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let period = 3 + class % 4;
    let image = RgbImage::from_fn(48, 36, |x, y| {
        let along = if class.is_multiple_of(2) { x } else { y };
        let on = (along / period).is_multiple_of(2);
        let noise = ((x * 7 + y * 13 + item * 31) % 23) as u8;
        let base = [(40 * class) as u8, 255 - (30 * class) as u8, (90 + 20 * class) as u8];
        Rgb(base.map(|c| if on { c.saturating_add(noise) } else { noise }))
    });
    image.save(path).unwrap();
}

/// Six class folders (a–c train, d–f test) of eight JPEG photos each.
fn folder_tree(root: &Path) {
    for (class, name) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
        for item in 0..8 {
            photo(&root.join(name).join(format!("{item}.jpg")), class as u32, item);
        }
    }
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "dml failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A few iterations of the small CNN on 32 × 32 crops.
fn train(root: &Path, dataset: &str, run_dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--dataset",
        dataset,
        "--root",
        root.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--p",
        "3",
        "--k",
        "4",
        "--iterations",
        "6",
        "--eval-interval",
        "3",
        "--dim",
        "16",
        "--set",
        "augment.resize=36",
        "--set",
        "augment.crop=32",
        "--set",
        "eval.batch_size=10",
    ];
    args.extend_from_slice(extra);
    dml(&args)
}

fn evals(run_dir: &Path) -> Vec<Value> {
    fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("split").is_some())
        .collect()
}

#[test]
fn an_image_folder_trains_and_its_model_evaluates_embeds_and_exports() {
    let dir = scratch("photo-folder");
    let root = dir.join("photos");
    folder_tree(&root);
    // Leftovers of other tools, which are neither classes nor images: a notebook's checkpoint
    // folder and macOS's metadata files, named like images but not images.
    let checkpoints = root.join(".ipynb_checkpoints");
    fs::create_dir_all(&checkpoints).unwrap();
    fs::copy(root.join("d/0.jpg"), checkpoints.join("0.jpg")).unwrap();
    fs::write(root.join("d/._0.jpg"), b"\x00\x05\x16\x07 AppleDouble").unwrap();
    let run_dir = dir.join("run");
    let out = train(&root, "folder", &run_dir, &[]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("24 train images in 3 classes, 24 test images"), "{stderr}");
    let evals = evals(&run_dir);
    assert_eq!(evals.iter().map(|e| e["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 3, 6]);
    let test = npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap();
    assert_eq!((test.rows, test.cols), (24, 16));

    // `dml eval` reproduces the run's last evaluation from model.bpk.
    let json: Value = serde_json::from_str(ok(&dml(&["eval", "--run", run_dir.to_str().unwrap(), "--json"])).trim()).unwrap();
    let last = evals.last().unwrap();
    for k in ["1", "2", "4", "8"] {
        let (a, b) = (json["recall_at_k"][k].as_f64().unwrap(), last["recall_at_k"][k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "Recall@{k}: eval {a} vs run {b}");
    }

    // `dml embed` on the test classes' files gives the rows of the run's test embeddings.
    let out_npy = dir.join("e.npy");
    let folders: Vec<String> = ["d", "e", "f"].iter().map(|c| root.join(c).to_string_lossy().into_owned()).collect();
    let mut args = vec!["embed", "--run", run_dir.to_str().unwrap(), "--out", out_npy.to_str().unwrap(), "--images"];
    args.extend(folders.iter().map(String::as_str));
    ok(&dml(&args));
    let embedded = npy::read_matrix(&out_npy).unwrap();
    assert_eq!((embedded.rows, embedded.cols), (24, 16));
    let worst = embedded.data.iter().zip(&test.data).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    assert!(worst < 1e-4, "embed and the run's evaluation differ by {worst}");
    let listed = fs::read_to_string(dir.join("e.txt")).unwrap();
    assert_eq!(listed.lines().count(), 24);
    assert!(listed.lines().next().unwrap().ends_with("d/0.jpg"), "{listed}");
    assert_error(
        &dml(&[
            "embed",
            "--run",
            run_dir.to_str().unwrap(),
            "--out",
            out_npy.to_str().unwrap(),
            "--images",
            dir.join("run").to_str().unwrap(),
        ]),
        "run",
        "no image files here",
    );

    // `dml project` maps the test embeddings to 2-D, one row per test image.
    for (method, extra) in [("pca", vec![]), ("tsne", vec!["--perplexity", "5", "--iterations", "100"])] {
        let map_path = dir.join(format!("{method}.npy"));
        let mut args = vec!["project", "--run", run_dir.to_str().unwrap(), "--method", method, "--out", map_path.to_str().unwrap()];
        args.extend(extra);
        ok(&dml(&args));
        let map = npy::read_matrix(&map_path).unwrap();
        assert_eq!((map.rows, map.cols), (24, 2), "{method}");
        assert!(map.data.iter().all(|v| v.is_finite()));
    }
    let out = dml(&["project", "--run", run_dir.to_str().unwrap(), "--out", dir.join("x.npy").to_str().unwrap(), "--perplexity", "30"]);
    assert_error(&out, "", "--perplexity 30: must be positive and below n / 3 = 8.0");

    // `dml export` writes an RGB sprite of the photos next to the vectors.
    let projector = dir.join("projector");
    ok(&dml(&["export", "--run", run_dir.to_str().unwrap(), "--projector", projector.to_str().unwrap()]));
    assert_eq!(fs::read_to_string(projector.join("vectors.tsv")).unwrap().lines().count(), 24);
    let sprite = fs::read(projector.join("sprite.png")).unwrap();
    // IHDR: width, height (5 × 64 pixels: 24 thumbnails on a 5-wide grid), 8 bits, colour type 2 (RGB).
    assert_eq!(&sprite[16..26], &[0, 0, 1, 64, 0, 0, 1, 64, 8, 2]);

    // `dml export --web`: photos as JPEG squares of the test resize (their centre crop is the test
    // view); too few for t-SNE, so the map is PCA's.
    let web = dir.join("web");
    ok(&dml(&["export", "--run", run_dir.to_str().unwrap(), "--web", web.to_str().unwrap()]));
    let manifest: Value = serde_json::from_str(&fs::read_to_string(web.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["map"], "PCA");
    let images = manifest["images"].as_array().unwrap();
    assert_eq!(images.len(), 24);
    let config = dml_engine::train::TrainConfig::from_toml(&fs::read_to_string(run_dir.join("config.toml")).unwrap()).unwrap();
    let side = config.augment.resize;
    for image in images {
        let decoded = dml_engine::image::open(web.join(image.as_str().unwrap())).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (side, side));
    }
    assert_eq!(npy::read_matrix(&web.join("map.npy")).unwrap().rows, 24);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn in_shop_evaluates_queries_against_the_gallery() {
    let dir = scratch("photo-inshop");
    let root = dir.join("inshop");
    inshop_tree(&root);
    let run_dir = dir.join("run");
    let out = train(&root, "inshop", &run_dir, &[]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 query images, 5 gallery images"));
    let gallery = npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap();
    let query = npy::read_matrix(&run_dir.join("query_embeddings.npy")).unwrap();
    assert_eq!((gallery.rows, query.rows), (5, 4));
    // Recomputing from the saved query and gallery embeddings gives the run's numbers.
    let metrics = ok(&dml(&[
        "metrics",
        "--json",
        "--query-embeddings",
        run_dir.join("query_embeddings.npy").to_str().unwrap(),
        "--query-labels",
        run_dir.join("query_labels.npy").to_str().unwrap(),
        "--embeddings",
        run_dir.join("embeddings.npy").to_str().unwrap(),
        "--labels",
        run_dir.join("labels.npy").to_str().unwrap(),
    ]));
    let json: Value = serde_json::from_str(metrics.trim()).unwrap();
    let last = evals(&run_dir).pop().unwrap();
    assert!((json["map_at_r"].as_f64().unwrap() - last["map_at_r"].as_f64().unwrap()).abs() < 1e-6, "{json} vs {last}");
    fs::remove_dir_all(&dir).unwrap();
}

/// The mean colour of the centred square of an image: what survives every thumbnail and view.
fn centre_colour(image: &RgbImage) -> [f64; 3] {
    let side = image.width().min(image.height());
    let (left, top) = ((image.width() - side) / 2, (image.height() - side) / 2);
    let mut sum = [0f64; 3];
    for y in top + side / 4..top + 3 * side / 4 {
        for x in left + side / 4..left + 3 * side / 4 {
            for (total, value) in sum.iter_mut().zip(image.get_pixel(x, y).0) {
                *total += value as f64;
            }
        }
    }
    sum.map(|s| s / ((side / 2) * (side / 2)) as f64)
}

fn assert_same_colour(a: [f64; 3], b: [f64; 3], what: &str) {
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 12.0), "{what}: {a:?} vs {b:?}");
}

#[test]
fn in_shop_with_more_gallery_than_queries_and_a_skipped_image_end_to_end() {
    let dir = scratch("photo-inshop-gallery");
    let root = dir.join("inshop");
    let mut lines = Vec::new();
    // 4 queries, 7 gallery images; item 7's second gallery image is damaged.
    for (item, status, n) in
        [(1, "train", 5), (2, "train", 5), (4, "train", 5), (7, "query", 2), (9, "query", 2), (7, "gallery", 4), (9, "gallery", 3)]
    {
        for k in 0..n {
            let rel = format!("img/WOMEN/Tees/id_{item:08}/{k:02}_{status}.jpg");
            photo(&root.join(&rel), item, k + if status == "gallery" { 10 } else { 0 });
            lines.push(format!("{rel} id_{item:08} {status}"));
        }
    }
    let damaged = "img/WOMEN/Tees/id_00000007/01_gallery.jpg";
    fs::write(root.join(damaged), b"\xFF\xD8\xFF\xE0 not a JPEG").unwrap();
    fs::write(
        root.join("list_eval_partition.txt"),
        format!("{}\nimage_name item_id evaluation_status\n{}\n", lines.len(), lines.join("\n")),
    )
    .unwrap();
    let run_dir = dir.join("run");
    let out = train(&root, "inshop", &run_dir, &["--skip-bad-images"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 query images, 7 gallery images"));

    // The run says which file each row came from; the damaged one is not among them.
    let gallery = npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap();
    let labels = npy::read_labels(&run_dir.join("labels.npy")).unwrap();
    let rows: Vec<String> = fs::read_to_string(run_dir.join("embeddings.txt")).unwrap().lines().map(str::to_string).collect();
    let query_rows: Vec<String> = fs::read_to_string(run_dir.join("query_embeddings.txt")).unwrap().lines().map(str::to_string).collect();
    assert_eq!((gallery.rows, labels.len(), rows.len(), query_rows.len()), (6, 6, 6, 4));
    assert!(!rows.iter().any(|r| r == damaged) && rows.iter().all(|r| r.ends_with("_gallery.jpg")), "{rows:?}");
    assert!(query_rows.iter().all(|r| r.ends_with("_query.jpg")), "{query_rows:?}");
    for (row, label) in rows.iter().zip(&labels) {
        assert!(row.contains(&format!("id_{label:08}")), "row {row} has label {label}");
    }
    let sources: Vec<RgbImage> = rows.iter().map(|r| dml_engine::image::open(root.join(r)).unwrap().to_rgb8()).collect();

    // eval repeats the run's numbers, skipping the same image.
    let json: Value =
        serde_json::from_str(ok(&dml(&["eval", "--run", run_dir.to_str().unwrap(), "--json", "--skip-bad-images"])).trim()).unwrap();
    let last = evals(&run_dir).pop().unwrap();
    assert!((json["map_at_r"].as_f64().unwrap() - last["map_at_r"].as_f64().unwrap()).abs() < 1e-6, "{json} vs {last}");

    // embed lists what it embedded, the damaged file left out.
    let e = dir.join("e.npy");
    let gallery_folder = root.join("img/WOMEN/Tees/id_00000007");
    ok(&dml(&[
        "embed",
        "--run",
        run_dir.to_str().unwrap(),
        "--out",
        e.to_str().unwrap(),
        "--skip-bad-images",
        "--images",
        gallery_folder.to_str().unwrap(),
    ]));
    let embedded: Vec<String> = fs::read_to_string(dir.join("e.txt")).unwrap().lines().map(str::to_string).collect();
    assert_eq!((npy::read_matrix(&e).unwrap().rows, embedded.len()), (5, 5));
    assert!(!embedded.iter().any(|f| f.ends_with("01_gallery.jpg")), "{embedded:?}");

    // The projector's sprite shows, cell by cell, the gallery image of each row.
    let projector = dir.join("projector");
    ok(&dml(&["export", "--run", run_dir.to_str().unwrap(), "--projector", projector.to_str().unwrap(), "--skip-bad-images"]));
    let metadata: Vec<String> = fs::read_to_string(projector.join("metadata.tsv")).unwrap().lines().skip(1).map(str::to_string).collect();
    assert_eq!(metadata.iter().map(|l| l.split('\t').next().unwrap().parse::<i64>().unwrap()).collect::<Vec<_>>(), labels);
    let sprite = dml_engine::image::open(projector.join("sprite.png")).unwrap().to_rgb8();
    let per_row = 3; // ⌈√6⌉
    for (i, source) in sources.iter().enumerate() {
        let cell = dml_engine::image::imageops::crop_imm(&sprite, (i % per_row * 64) as u32, (i / per_row * 64) as u32, 64, 64).to_image();
        assert_same_colour(centre_colour(&cell), centre_colour(source), &format!("sprite cell {i} ({})", rows[i]));
    }

    // The web demo's gallery: the gallery rows' images, labels and embeddings.
    let web = dir.join("web");
    ok(&dml(&["export", "--run", run_dir.to_str().unwrap(), "--web", web.to_str().unwrap(), "--skip-bad-images"]));
    let manifest: Value = serde_json::from_str(&fs::read_to_string(web.join("manifest.json")).unwrap()).unwrap();
    let images = manifest["images"].as_array().unwrap();
    assert_eq!(images.len(), 6);
    assert_eq!(npy::read_labels(&web.join("labels.npy")).unwrap(), labels);
    for (i, image) in images.iter().enumerate() {
        let row = manifest["test_rows"][i].as_u64().unwrap() as usize;
        let exported = dml_engine::image::open(web.join(image.as_str().unwrap())).unwrap().to_rgb8();
        assert_same_colour(centre_colour(&exported), centre_colour(&sources[row]), &format!("web image {i}"));
    }
    // It refuses to write into the run folder.
    assert_error(&dml(&["export", "--run", run_dir.to_str().unwrap(), "--web", run_dir.to_str().unwrap()]), "run", "is a run folder");

    // The app's thumbnails: row i is the file of row i.
    let app_run = dml_app::run_data::RunData::open(&run_dir).unwrap();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(app_run.row_file(i).unwrap(), root.join(row), "thumbnail of row {i}");
    }
    assert_eq!(app_run.row_file(6), None);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_corrupt_image_stops_the_run_unless_skipped() {
    let dir = scratch("photo-corrupt");
    let root = dir.join("photos");
    folder_tree(&root);
    let corrupt: PathBuf = root.join("e").join("9.jpg");
    fs::write(&corrupt, b"\xFF\xD8\xFF\xE0 this is not a JPEG").unwrap();
    let out = train(&root, "folder", &dir.join("strict"), &[]);
    assert_error(&out, "e/9.jpg", "--skip-bad-images");

    let run_dir = dir.join("lenient");
    let out = train(&root, "folder", &run_dir, &["--skip-bad-images"]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("warning: skipped").count(), 1, "each bad image is reported once: {stderr}");
    assert!(stderr.contains("e/9.jpg"), "{stderr}");
    assert_eq!(npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap().rows, 24);
    fs::remove_dir_all(&dir).unwrap();
}

/// CUB-200-2011: classes 1–3 train, 101–103 test, six photos each.
/// In-Shop Clothes: items 1, 2, 4 train (five photos each); items 7 and 9 with query and gallery
/// photos.
fn inshop_tree(root: &Path) {
    let mut lines = Vec::new();
    for (item, status, n) in
        [(1, "train", 5), (2, "train", 5), (4, "train", 5), (7, "query", 2), (7, "gallery", 3), (9, "query", 2), (9, "gallery", 2)]
    {
        for k in 0..n {
            let rel = format!("img/MEN/Denim/id_{item:08}/{k:02}_{status}.jpg");
            photo(&root.join(&rel), item, k);
            lines.push(format!("{rel} id_{item:08} {status}"));
        }
    }
    fs::write(
        root.join("list_eval_partition.txt"),
        format!("{}\nimage_name item_id evaluation_status\n{}\n", lines.len(), lines.join("\n")),
    )
    .unwrap();
}

fn cub_tree(root: &Path) {
    let (mut images, mut labels) = (String::new(), String::new());
    let mut id = 0;
    for class in [1, 2, 3, 101, 102, 103] {
        for k in 0..6 {
            id += 1;
            let rel = format!("{class:03}.Bird_{class}/Bird_{class}_{k:04}_{id}.jpg");
            photo(&root.join("images").join(&rel), class % 100, k);
            images.push_str(&format!("{id} {rel}\n"));
            labels.push_str(&format!("{id} {class}\n"));
        }
    }
    fs::write(root.join("images.txt"), images).unwrap();
    fs::write(root.join("image_class_labels.txt"), labels).unwrap();
}

/// Stanford Online Products: classes 1–3 train, 4–6 test, five photos each.
fn sop_tree(root: &Path) {
    for (file, classes) in [("Ebay_train.txt", 1..=3), ("Ebay_test.txt", 4..=6)] {
        let mut text = String::from("image_id class_id super_class_id path\n");
        for (id, (class, k)) in classes.flat_map(|c| (0..5).map(move |k| (c, k))).enumerate() {
            let rel = format!("chair_final/{class}_{k}.JPG");
            photo(&root.join(&rel), class, k);
            text.push_str(&format!("{} {class} 2 {rel}\n", id + 1));
        }
        fs::write(root.join(file), text).unwrap();
    }
}

/// Cars-196: classes 1–3 train, 99–101 test, five photos each, listed in a compressed MAT file.
fn cars_tree(root: &Path) {
    let fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"];
    let mut rows = Vec::new();
    let mut id = 0;
    for class in [1, 2, 3, 99, 100, 101] {
        for k in 0..5 {
            id += 1;
            let rel = format!("car_ims/{id:06}.jpg");
            photo(&root.join(&rel), class % 98, k);
            // relative_im_path, the bounding box x1 y1 x2 y2, class, test
            rows.push(vec![
                mat::text(&rel),
                mat::double(1.0),
                mat::double(1.0),
                mat::double(48.0),
                mat::double(36.0),
                mat::double(class as f64),
                mat::uint8((k % 2) as u8),
            ]);
        }
    }
    fs::write(root.join("cars_annos.mat"), mat::file(&[mat::structure("annotations", &fields, &rows)], true)).unwrap();
}

#[test]
fn cub_cars_and_sop_train_from_their_list_files() {
    let dir = scratch("photo-formats");
    for (dataset, build, train_count, test_count) in
        [("cub", cub_tree as fn(&Path), 18, 18), ("sop", sop_tree as fn(&Path), 15, 15), ("cars", cars_tree as fn(&Path), 15, 15)]
    {
        let root = dir.join(dataset);
        build(&root);
        let run_dir = dir.join(format!("{dataset}-run"));
        let out = train(&root, dataset, &run_dir, &["--set", "run.iterations=3"]);
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{train_count} train images in 3 classes, {test_count} test images")), "{dataset}: {stderr}");
        assert_eq!(evals(&run_dir).len(), 2, "{dataset}: evaluations before and after");
        assert_eq!(npy::read_matrix(&run_dir.join("embeddings.npy")).unwrap().rows, test_count, "{dataset}");
        // The published class ids start at 1 and the training split's need not be contiguous: a
        // proxy loss sees them numbered 0..classes−1.
        let proxy_run = dir.join(format!("{dataset}-proxy"));
        ok(&train(&root, dataset, &proxy_run, &["--set", "run.iterations=2", "--loss", "proxy_nca"]));
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// A dataset list names files under the dataset root with `/`; an entry that would leave the root,
/// or name a drive, a Windows device or a `\`-separated path, is refused on every system alike.
#[test]
fn list_paths_must_be_plain_names_under_the_root() {
    let dir = scratch("list-paths");
    let root = dir.join("cub");
    cub_tree(&root);
    let images = fs::read_to_string(root.join("images.txt")).unwrap();
    for bad in
        ["../outside.jpg", "001.Bird_1\\..\\..\\outside.jpg", "C:/Windows/x.jpg", "/etc/x.jpg", "001.Bird_1//x.jpg", "001.Bird_1/CON.jpg"]
    {
        let first = images.lines().next().unwrap();
        let edited = images.replacen(first, &format!("1 {bad}"), 1);
        fs::write(root.join("images.txt"), edited).unwrap();
        for command in [&["data", "check", "--dataset", "cub"][..], &["train", "--dataset", "cub", "--iterations", "1"][..]] {
            let mut args = command.to_vec();
            args.extend_from_slice(&["--root", root.to_str().unwrap()]);
            assert_error(&dml(&args), "images.txt", &format!("line 1: `{bad}` is not a relative path of plain names joined by `/`"));
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// File names need not be Unicode on Linux: such images train like any other; where a name has to
/// be written as text (`dml embed`'s row list, a run's config), the error says so instead of
/// writing another name.
#[cfg(target_os = "linux")]
#[test]
fn names_that_are_not_utf8_train_and_are_refused_where_written_as_text() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = scratch("non-utf8");
    let root = dir.join("folder");
    folder_tree(&root);
    let odd = root.join("a").join(OsStr::from_bytes(b"caf\xe9.jpg"));
    photo(&odd, 0, 9);
    let run_dir = dir.join("run");
    let out = train(&root, "folder", &run_dir, &["--set", "run.iterations=2"]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("25 train images in 3 classes"), "{}", String::from_utf8_lossy(&out.stderr));

    let embedded = dir.join("e.npy");
    let out = dml(&[
        "embed",
        "--run",
        run_dir.to_str().unwrap(),
        "--images",
        root.join("a").to_str().unwrap(),
        "--out",
        embedded.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert_error(&out, "caf", "the file name is not valid UTF-8");
    assert!(!embedded.exists());

    let odd_root = dir.join(OsStr::from_bytes(b"r\xe9sum\xe9"));
    fs::rename(&root, &odd_root).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dml"))
        .arg("train")
        .args(["--dataset", "folder", "--root"])
        .arg(&odd_root)
        .args(["--run-dir", dir.join("run2").to_str().unwrap()])
        .output()
        .unwrap();
    assert_error(&out, "sum", "--root is not valid UTF-8");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_refuses_a_folder_whose_classes_changed_and_restarts_a_run_without_checkpoint() {
    let dir = scratch("photo-resume-changed");
    let root = dir.join("photos");
    folder_tree(&root);
    let run_dir = dir.join("run");
    ok(&train(&root, "folder", &run_dir, &[]));
    // A class folder added since, sorting first: as many classes and images train as before,
    // but other ones under the same labels.
    for item in 0..8 {
        photo(&root.join("0-new").join(format!("{item}.jpg")), 7, item);
    }
    let out = dml(&["train", "--resume", run_dir.to_str().unwrap(), "--iterations", "9"]);
    assert_error(&out, "photos", "the training set changed since the run started (24 images of 3 classes then, 24 of 3 now)");
    fs::remove_dir_all(root.join("0-new")).unwrap();

    // A run killed before its first checkpoint starts over in its folder.
    fs::remove_file(run_dir.join("checkpoint.dml")).unwrap();
    let out = dml(&["train", "--resume", run_dir.to_str().unwrap()]);
    ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no checkpoint yet (the run stopped before its first one); starting it from iteration 0")
    );
    assert!(run_dir.join("checkpoint.dml").exists());
    fs::remove_dir_all(&dir).unwrap();
}

/// Every preset validates and trains two iterations (with the memory on, for the XBM ones) on a
/// small tree of its dataset's published format, with the small CNN on 32-pixel crops standing in
/// for its ImageNet backbone to keep the test short. Without that override or `--pretrained`, a
/// preset refuses to start from random weights; `--print-config` shows the preset with overrides.
#[test]
fn every_preset_runs_on_its_dataset_format() {
    let dir = scratch("presets");
    for (dataset, build) in
        [("cub", cub_tree as fn(&Path)), ("cars", cars_tree as fn(&Path)), ("sop", sop_tree as fn(&Path)), ("inshop", inshop_tree)]
    {
        build(&dir.join(dataset));
    }
    for preset in &dml_engine::train::PRESETS {
        let config = preset.config().unwrap();
        let dataset = config.data.dataset.name();
        let root = dir.join(dataset);
        let run_dir = dir.join(preset.name);
        let mut extra =
            vec!["--preset", preset.name, "--backbone", "small-cnn", "--set", "run.iterations=2", "--set", "run.eval_interval=0"];
        if config.xbm.memory_size > 0 {
            extra.extend(["--set", "xbm.start_iteration=0"]);
        }
        let out = train(&root, dataset, &run_dir, &extra);
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("preset {}: ", preset.name)) && stderr.contains(&preset.expected_text()), "{stderr}");
        let steps: Vec<Value> = fs::read_to_string(run_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v.get("loss").is_some())
            .collect();
        assert_eq!(steps.len(), 2, "{}", preset.name);
        if config.xbm.memory_size > 0 {
            assert!(steps[1].get("xbm_loss").is_some(), "{}: the second step used the memory", preset.name);
        }
        let written = fs::read_to_string(run_dir.join("config.toml")).unwrap();
        assert!(written.contains(&format!("name = \"{}\"", config.loss.name())), "{}: {written}", preset.name);
    }

    let root = dir.join("cub");
    let refused =
        dml(&["train", "--preset", "proxy-anchor-cub", "--root", root.to_str().unwrap(), "--run-dir", dir.join("x").to_str().unwrap()]);
    assert_error(&refused, "", "--preset proxy-anchor-cub: bn-inception starts from ImageNet weights; give --pretrained FILE");
    assert!(!dir.join("x").exists(), "nothing is created for a refused preset");
    let shown = ok(&dml(&["train", "--preset", "proxy-anchor-cub", "--lr", "0.002", "--print-config"]));
    assert!(shown.contains("lr = 0.002") && shown.contains("name = \"adamw\"") && shown.contains("iterations = 1980"), "{shown}");
    let unknown = dml(&["train", "--preset", "ms-imagenet"]);
    assert_error(&unknown, "", "--preset ms-imagenet: no such preset (known: ms-cub");
    fs::remove_dir_all(&dir).unwrap();
}
