//! The MAT-file reader on files written by SciPy (`fixtures/make_mat.py`).

use dml_engine::data::mat5::{self, MatValue};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn check_annotations(variables: &[(String, MatValue)]) {
    let (_, annotations) = variables.iter().find(|(n, _)| n == "annotations").expect("annotations");
    assert_eq!(annotations.len(), 3);
    let expected = [("car_ims/000001.jpg", 1.0, 0.0), ("car_ims/000002.jpg", 99.0, 1.0), ("car_ims/000003.jpg", 196.0, 0.0)];
    for (i, (path, class, test)) in expected.iter().enumerate() {
        assert_eq!(annotations.field(i, "relative_im_path").and_then(MatValue::text), Some(*path));
        assert_eq!(annotations.field(i, "class").and_then(MatValue::scalar), Some(*class));
        assert_eq!(annotations.field(i, "test").and_then(MatValue::scalar), Some(*test));
        assert_eq!(annotations.field(i, "bbox_x1").and_then(MatValue::scalar), Some(12.0));
    }
}

#[test]
fn compressed_file_with_struct_and_cell() {
    let variables = mat5::read(&fixture("cars_annos_scipy_compressed.mat")).unwrap();
    check_annotations(&variables);
    let (_, names) = variables.iter().find(|(n, _)| n == "class_names").expect("class_names");
    let MatValue::Cell { items, .. } = names else { panic!("class_names is a cell array") };
    let texts: Vec<&str> = items.iter().filter_map(MatValue::text).collect();
    assert_eq!(texts, ["AM General Hummer SUV 2000", "smart fortwo Convertible 2012"]);
}

#[test]
fn plain_file() {
    check_annotations(&mat5::read(&fixture("cars_annos_scipy_plain.mat")).unwrap());
}

#[test]
fn damaged_files_are_errors_not_panics() {
    let bytes = fixture("cars_annos_scipy_plain.mat");
    // (The 128-byte header alone is a valid file without variables.)
    for cut in [0, 100, 140, 300, bytes.len() - 1] {
        assert!(mat5::read(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[132] ^= 0x7F; // the first element's size
    assert!(mat5::read(&flipped).is_err());
}
