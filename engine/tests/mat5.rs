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

/// A little-endian level-5 file: the 128-byte header and the given top-level elements.
fn mat_file(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![b' '; 116];
    out.extend([0; 8]);
    out.extend([0, 1, b'I', b'M']);
    for e in elements {
        out.extend(e);
    }
    out
}

/// One data element (type, size, data padded to 8 bytes).
fn element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_le_bytes().to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out.resize(out.len().next_multiple_of(8), 0);
    out
}

/// An miMATRIX of the given class and dimensions whose body follows the name.
fn array(class: u8, dims: &[i32], body: &[Vec<u8>]) -> Vec<u8> {
    let mut inner = element(6, &[class, 0, 0, 0, 0, 0, 0, 0]); // miUINT32 flags
    inner.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<_>>())); // miINT32 dims
    inner.extend(element(1, b"x")); // miINT8 name
    for b in body {
        inner.extend(b);
    }
    element(14, &inner)
}

fn error_of(bytes: &[u8]) -> String {
    mat5::read(bytes).expect_err("a crafted file must be refused").to_string()
}

#[test]
fn counts_from_the_file_are_claims() {
    // A 300-byte file whose cell claims 2^31 × 2^31 items, and one whose struct claims 10^9
    // elements: refused before any allocation for them.
    assert!(error_of(&mat_file(&[array(1, &[i32::MAX, i32::MAX], &[])])).contains("items in 0 bytes"));
    let field_names = [element(5, &8i32.to_le_bytes()), element(1, b"a\0\0\0\0\0\0\0")];
    assert!(error_of(&mat_file(&[array(2, &[1_000_000_000, 1], &field_names)])).contains("declares 1000000000 elements"));
    // Negative or overflowing dimensions.
    assert!(error_of(&mat_file(&[array(6, &[-1, 1], &[])])).contains("dimension -1"));
    // Within the claim the count must still match what is there.
    let one = array(6, &[1, 1], &[element(9, &2.5f64.to_le_bytes())]);
    let MatValue::Numeric { data, .. } = &mat5::read(&mat_file(std::slice::from_ref(&one))).unwrap()[0].1 else { panic!() };
    assert_eq!(data, &[2.5]);
    assert!(error_of(&mat_file(&[array(6, &[2, 1], &[element(9, &2.5f64.to_le_bytes())])])).contains("1 values for dimensions"));
}

#[test]
fn nesting_has_a_depth_limit() {
    // Cells within cells, deeper than the limit: an error, not a stack overflow.
    let mut nested = array(6, &[0, 0], &[]);
    for _ in 0..=mat5::MAX_DEPTH + 1 {
        nested = array(1, &[1, 1], &[nested]);
    }
    assert!(error_of(&mat_file(&[nested])).contains("nested more than 64 deep"));
    // Forty deep is fine.
    let mut ok = array(6, &[1, 1], &[element(9, &1f64.to_le_bytes())]);
    for _ in 0..40 {
        ok = array(1, &[1, 1], &[ok]);
    }
    assert_eq!(mat5::read(&mat_file(&[ok])).unwrap().len(), 1);
}
