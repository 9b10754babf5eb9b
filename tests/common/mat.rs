//! MAT-file level 5 writing, little-endian, independent of the reader under test.

use std::io::Write;

pub fn element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    out
}

/// The compact form MATLAB uses for data of at most 4 bytes.
pub fn small(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() as u32) << 16 | kind).to_le_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(8, 0);
    out
}

pub fn array(class: u8, dims: &[i32], name: &str, body: &[u8]) -> Vec<u8> {
    let mut inner = element(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
    inner.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>()));
    inner.extend(if name.len() <= 4 && !name.is_empty() { small(1, name.as_bytes()) } else { element(1, name.as_bytes()) });
    inner.extend_from_slice(body);
    element(14, &inner)
}

pub fn text(s: &str) -> Vec<u8> {
    let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    array(4, &[1, s.len() as i32], "", &element(4, &units))
}

pub fn double(v: f64) -> Vec<u8> {
    array(6, &[1, 1], "", &element(9, &v.to_le_bytes()))
}

pub fn uint8(v: u8) -> Vec<u8> {
    array(9, &[1, 1], "", &small(2, &[v]))
}

/// A 1×n struct array; `rows[i]` holds element i's field values, already encoded.
pub fn structure(name: &str, fields: &[&str], rows: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let width = 32;
    let mut names = Vec::new();
    for f in fields {
        let mut bytes = f.as_bytes().to_vec();
        bytes.resize(width, 0);
        names.extend(bytes);
    }
    let mut body = small(5, &(width as i32).to_le_bytes());
    body.extend(element(1, &names));
    for row in rows {
        for value in row {
            body.extend_from_slice(value);
        }
    }
    array(2, &[1, rows.len() as i32], name, &body)
}

pub fn cell(name: &str, items: &[Vec<u8>]) -> Vec<u8> {
    array(1, &[1, items.len() as i32], name, &items.concat())
}

pub fn file(variables: &[Vec<u8>], compressed: bool) -> Vec<u8> {
    let mut out = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Fri Nov 27 12:00:00 2026".to_vec();
    out.resize(116, b' ');
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for v in variables {
        if compressed {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(v).unwrap();
            let z = z.finish().unwrap();
            out.extend_from_slice(&15u32.to_le_bytes());
            out.extend_from_slice(&(z.len() as u32).to_le_bytes());
            out.extend(z);
        } else {
            out.extend_from_slice(v);
        }
    }
    out
}
