//! End-to-end tests of `dml data check` on small fixture trees written in each dataset's real
//! on-disk format (list files as published, real PNG images), and its errors on broken trees.

use std::fs;
use std::path::Path;
use std::process::Output;

mod common;

use common::{assert_error, dml, mat, scratch};

fn image(path: &Path, shade: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, dml_engine::png::encode_grey(4, 3, &[shade; 12])).unwrap();
}

fn check(dataset: &str, root: &Path) -> Output {
    dml(&["data", "check", "--dataset", dataset, "--root", root.to_str().unwrap()])
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CUB-200-2011 with classes 1, 2 (train) and 101, 102, 150 (test), two images each.
fn cub_tree(root: &Path) {
    let (mut images, mut labels) = (String::new(), String::new());
    let mut id = 0;
    for class in [1, 2, 101, 102, 150] {
        for k in 0..2 {
            id += 1;
            let rel = format!("{class:03}.Bird_{class}/Bird_{class}_{k:04}_{id}.png");
            image(&root.join("images").join(&rel), id as u8);
            images.push_str(&format!("{id} {rel}\n"));
            labels.push_str(&format!("{id} {class}\n"));
        }
    }
    fs::write(root.join("images.txt"), images).unwrap();
    fs::write(root.join("image_class_labels.txt"), labels).unwrap();
}

#[test]
fn cub() {
    let root = scratch("cub");
    cub_tree(&root);
    let out = stdout(&check("cub", &root));
    assert!(out.contains("train 4 images in 2 classes; test 6 images in 3 classes"), "{out}");
    assert!(out.contains("all 10 listed image files exist"), "{out}");
    assert!(out.contains("published split: 5,864 / 5,924 — this tree differs"), "{out}");

    fs::remove_file(root.join("images/101.Bird_101/Bird_101_0001_6.png")).unwrap();
    assert_error(&check("cub", &root), "Bird_101_0001_6.png", "listed in the test split but missing");
    fs::write(root.join("image_class_labels.txt"), "1 1\n2 x\n").unwrap();
    assert_error(&check("cub", &root), "image_class_labels.txt", "line 2: class `x` is not an integer");
    fs::write(root.join("image_class_labels.txt"), "1 201\n").unwrap();
    assert_error(&check("cub", &root), "image_class_labels.txt", "class 201 outside 1–200");
    fs::remove_file(root.join("images.txt")).unwrap();
    assert_error(&check("cub", &root), "images.txt", "missing: a CUB-200-2011 root holds images.txt");
    fs::remove_dir_all(&root).unwrap();

    // The folder the archive unpacks into, one level down from the root given.
    let parent = scratch("cub-parent");
    cub_tree(&parent.join("CUB_200_2011"));
    let out = check("cub", &parent);
    assert_error(&out, "images.txt", "missing: a CUB-200-2011 root holds images.txt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/CUB_200_2011 does: pass that folder as the root"), "{stderr}");
    fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn stanford_online_products() {
    let root = scratch("sop");
    for (file, classes) in [("Ebay_train.txt", 1..=3), ("Ebay_test.txt", 4..=5)] {
        let mut text = String::from("image_id class_id super_class_id path\n");
        let mut id = 0;
        for class in classes {
            for k in 0..3 {
                id += 1;
                let rel = format!("bicycle_final/{class}_{k}.png");
                image(&root.join(&rel), class as u8);
                text.push_str(&format!("{id} {class} 1 {rel}\n"));
            }
        }
        fs::write(root.join(file), text).unwrap();
    }
    let out = stdout(&check("sop", &root));
    assert!(out.contains("train 9 images in 3 classes; test 6 images in 2 classes"), "{out}");
    // A CUB root is not an SOP root.
    let cub = scratch("sop-is-cub");
    cub_tree(&cub);
    assert_error(&check("sop", &cub), "Ebay_train.txt", "missing: a Stanford Online Products root holds Ebay_train.txt");
    fs::write(root.join("Ebay_test.txt"), "1 4 1 bicycle_final/4_0.png\n").unwrap();
    assert_error(&check("sop", &root), "Ebay_test.txt", "expected the header");
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&cub).unwrap();
}

/// In-Shop items 2 and 7 (train), 3 and 12 (query and gallery): `list_eval_partition.txt` in
/// `list_dir`, the images its `img/...` paths name under `images_dir`. Returns the list's text.
fn in_shop_tree(list_dir: &Path, images_dir: &Path) -> String {
    let mut lines = Vec::new();
    for (item, status, n) in [(2, "train", 3), (7, "train", 2), (3, "query", 2), (3, "gallery", 2), (12, "query", 1), (12, "gallery", 3)] {
        for k in 0..n {
            let rel = format!("img/WOMEN/Dresses/id_{item:08}/{k:02}_{status}.png");
            image(&images_dir.join(&rel), item as u8);
            lines.push(format!("{rel} id_{item:08} {status}"));
        }
    }
    let text = format!("{}\nimage_name item_id evaluation_status\n{}\n", lines.len(), lines.join("\n"));
    fs::create_dir_all(list_dir).unwrap();
    fs::write(list_dir.join("list_eval_partition.txt"), &text).unwrap();
    text
}

#[test]
fn in_shop() {
    let root = scratch("inshop");
    let text = in_shop_tree(&root, &root);
    let out = stdout(&check("inshop", &root));
    assert!(out.contains("train 5 images in 2 classes; query 3 images in 2 classes; gallery 5 images in 2 classes"), "{out}");
    assert!(out.contains("all 13 listed image files exist"), "{out}");
    assert!(out.contains("published split: 25,882 / 14,218 / 12,612"), "{out}");
    fs::write(root.join("list_eval_partition.txt"), text.replacen("13", "99", 1)).unwrap();
    assert_error(&check("inshop", &root), "list_eval_partition.txt", "declares 99 images but lists 13");
    fs::write(root.join("list_eval_partition.txt"), "1\nimage_name item_id evaluation_status\nimg/a.png id_1 validation\n").unwrap();
    assert_error(&check("inshop", &root), "list_eval_partition.txt", "unknown evaluation status `validation`");
    fs::remove_file(root.join("list_eval_partition.txt")).unwrap();
    assert_error(
        &check("inshop", &root),
        "list_eval_partition.txt",
        "missing: an In-Shop root holds list_eval_partition.txt or Eval/list_eval_partition.txt",
    );
    fs::remove_dir_all(&root).unwrap();

    // The tree as published: the list in Eval/, img.zip unpacked in Img/.
    let parent = scratch("inshop-published");
    let published = parent.join("In-shop Clothes Retrieval Benchmark");
    in_shop_tree(&published.join("Eval"), &published.join("Img"));
    let out = stdout(&check("inshop", &published));
    assert!(out.contains("train 5 images in 2 classes; query 3 images in 2 classes; gallery 5 images in 2 classes"), "{out}");
    assert!(out.contains("all 13 listed image files exist"), "{out}");
    fs::remove_file(published.join("Img/img/WOMEN/Dresses/id_00000012/02_gallery.png")).unwrap();
    assert_error(&check("inshop", &published), "Img/img/WOMEN/Dresses/id_00000012/02_gallery.png", "missing");
    let out = check("inshop", &parent);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("In-shop Clothes Retrieval Benchmark does: pass that folder as the root"), "{stderr}");
    fs::remove_dir_all(&parent).unwrap();
}

#[test]
fn image_folder() {
    let root = scratch("folder");
    for (class, n) in [("cat", 2), ("dog", 3), ("emu", 1), ("yak", 2), ("zebu", 2)] {
        for k in 0..n {
            image(&root.join(class).join(format!("{k}.png")), k as u8);
        }
    }
    fs::write(root.join("dog").join("notes.txt"), "not an image").unwrap();
    fs::write(root.join("dog").join("._0.png"), "macOS metadata, named like an image").unwrap();
    image(&root.join(".ipynb_checkpoints").join("0.png"), 0);
    let out = stdout(&check("folder", &root));
    // Five classes in sorted order: cat, dog train; emu, yak, zebu test.
    assert!(out.contains("train 5 images in 2 classes; test 5 images in 3 classes"), "{out}");
    assert!(!out.contains("published"), "{out}");
    fs::create_dir_all(root.join("empty")).unwrap();
    assert_error(&check("folder", &root), "empty", "class folder without images");
    assert_error(&check("folder", &root.join("nowhere")), "nowhere", "no such folder");
    assert_error(&check("fashion", &root), "", "unknown dataset `fashion`");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn cars_196_from_a_matlab_file() {
    for compressed in [false, true] {
        let root = scratch(if compressed { "cars-z" } else { "cars" });
        let fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"];
        let mut rows = Vec::new();
        let mut id = 0;
        for (class, n) in [(1, 2), (98, 1), (99, 3), (196, 2)] {
            for _ in 0..n {
                id += 1;
                let rel = format!("car_ims/{id:06}.png");
                image(&root.join(&rel), id as u8);
                rows.push(vec![
                    mat::text(&rel),
                    mat::double(1.0),
                    mat::double(2.0),
                    mat::double(30.0),
                    mat::double(20.0),
                    mat::double(class as f64),
                    mat::uint8((id % 2) as u8),
                ]);
            }
        }
        let names = mat::cell("class_names", &[mat::text("AM General Hummer SUV 2000"), mat::text("smart fortwo Convertible 2012")]);
        let bytes = mat::file(&[mat::structure("annotations", &fields, &rows), names], compressed);
        fs::write(root.join("cars_annos.mat"), &bytes).unwrap();
        let out = stdout(&check("cars", &root));
        assert!(out.contains("train 3 images in 2 classes; test 5 images in 2 classes"), "{out}");
        assert!(out.contains("published split: 8,054 / 8,131"), "{out}");

        fs::write(root.join("cars_annos.mat"), &bytes[..bytes.len() - 40]).unwrap();
        assert_error(&check("cars", &root), "cars_annos.mat", "MAT-file");
        fs::write(root.join("cars_annos.mat"), b"not a mat file").unwrap();
        assert_error(&check("cars", &root), "cars_annos.mat", "128-byte header");
        fs::remove_file(root.join("cars_annos.mat")).unwrap();
        assert_error(&check("cars", &root), "cars_annos.mat", "missing: a Cars-196 root holds cars_annos.mat");
        fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn fashion_mnist_full_trains_on_the_training_file_and_tests_on_the_test_file() {
    let root = scratch("fashion-full");
    common::fashion_mnist_full_tree(&root, 60);
    let out = stdout(&check("fashion-mnist-full", &root));
    assert!(out.contains("train 30 images in 5 classes; test 5,000 images in 5 classes"), "{out}");
    assert!(out.contains("30,000 / 5,000 — these files differ"), "{out}");

    let bundled = stdout(&dml(&["data", "check", "--dataset", "fashion-mnist"]));
    assert!(bundled.contains("train 5,000 images in 5 classes; test 5,000 images in 5 classes"), "{bundled}");
    assert!(bundled.contains("these files match it"), "{bundled}");
    assert!(bundled.contains("Copyright: 2017, Zalando SE") && bundled.contains("License: Expat"), "{bundled}");

    fs::write(root.join("train-labels-idx1-ubyte"), common::idx_u8(&[59], &[0; 59])).unwrap();
    assert_error(&check("fashion-mnist-full", &root), "train-labels-idx1-ubyte", "59");
    let empty = root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    assert_error(&check("fashion-mnist-full", &empty), "empty", "dml data fetch fashion-mnist-full");
    assert_error(&dml(&["data", "check", "--dataset", "cub"]), "", "needs its folder (--root)");
    fs::remove_dir_all(&root).unwrap();
}
