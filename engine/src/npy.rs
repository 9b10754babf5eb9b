//! Reading and writing NumPy `.npy` files (format versions 1, 2 and 3): the exchange format of
//! embeddings and labels with Python tools.

use std::fs;
use std::path::Path;

use crate::io::write_atomically;

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a .npy file ({0})")]
    Format(String),
    #[error("unsupported dtype `{0}`: expected {1}")]
    Dtype(String, &'static str),
    #[error("expected a {expected}-dimensional array, found shape {found:?}")]
    Rank { expected: usize, found: Vec<usize> },
    #[error("{0}")]
    Value(String),
}

/// Element types dml reads: float32/float64 matrices and int32/int64 label vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    F32,
    F64,
    I32,
    I64,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F32 | Kind::I32 => 4,
            Kind::F64 | Kind::I64 => 8,
        }
    }
}

/// A parsed header and the raw little- or big-endian data behind it.
struct RawArray {
    kind: Kind,
    big_endian: bool,
    fortran_order: bool,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn parse(bytes: &[u8]) -> Result<RawArray, NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::Format("missing the \\x93NUMPY magic".into()));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(NpyError::Format("truncated header".into()));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(NpyError::Format(format!("unknown format version {v}"))),
    };
    let header = start
        .checked_add(header_len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| NpyError::Format(format!("truncated header: it declares {header_len} bytes, the file has {}", bytes.len())))?;
    let header = std::str::from_utf8(header).map_err(|_| NpyError::Format("header is not text".into()))?;
    let descr = dict_value(header, "descr")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran_order = match dict_value(header, "fortran_order")? {
        "True" => true,
        "False" => false,
        other => return Err(NpyError::Format(format!("bad fortran_order `{other}`"))),
    };
    let shape = parse_shape(dict_value(header, "shape")?)?;

    const EXPECTED: &str = "float32, float64, int32 or int64";
    // The byte-order mark is one ASCII character; anything else (including a multi-byte one) is no dtype.
    let (order, code) = match descr.char_indices().nth(1) {
        Some((at, _)) => descr.split_at(at),
        None => (descr, ""),
    };
    let big_endian = match order {
        "<" | "|" | "=" => false,
        ">" => true,
        _ => return Err(NpyError::Dtype(descr.into(), EXPECTED)),
    };
    let kind = match code {
        "f4" => Kind::F32,
        "f8" => Kind::F64,
        "i4" => Kind::I32,
        "i8" => Kind::I64,
        _ => return Err(NpyError::Dtype(descr.into(), EXPECTED)),
    };
    // The shape is a claim of the file: its product and byte count must fit, and the bytes must be there.
    let needed = shape
        .iter()
        .try_fold(kind.size(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| NpyError::Format(format!("shape {shape:?} is too large to address")))?;
    let data = &bytes[start + header_len..];
    if data.len() < needed {
        return Err(NpyError::Format(format!("truncated data: shape {shape:?} needs {needed} bytes, file has {}", data.len())));
    }
    Ok(RawArray { kind, big_endian, fortran_order, shape, data: data[..needed].to_vec() })
}

/// The text after `'key':` up to the next top-level comma of the header dictionary.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str, NpyError> {
    let pattern_single = format!("'{key}'");
    let pattern_double = format!("\"{key}\"");
    let at = header
        .find(&pattern_single)
        .or_else(|| header.find(&pattern_double))
        .ok_or_else(|| NpyError::Format(format!("header has no `{key}`")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':').ok_or_else(|| NpyError::Format("malformed header".into()))?;
    let rest = rest.trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
        .ok_or_else(|| NpyError::Format("malformed header".into()))?;
    Ok(rest[..end].trim())
}

fn parse_shape(text: &str) -> Result<Vec<usize>, NpyError> {
    let inner = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| NpyError::Format(format!("bad shape `{text}`")))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| NpyError::Format(format!("bad shape `{text}`"))))
        .collect()
}

impl RawArray {
    fn values_f64(&self) -> Vec<f64> {
        let size = self.kind.size();
        let be = self.big_endian;
        self.data
            .chunks_exact(size)
            .map(|c| match self.kind {
                Kind::F32 => {
                    let b = [c[0], c[1], c[2], c[3]];
                    (if be { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }) as f64
                }
                Kind::F64 => {
                    let b: [u8; 8] = c.try_into().expect("chunk of 8");
                    if be { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }
                }
                Kind::I32 | Kind::I64 => unreachable!("integer arrays are read by values_i64"),
            })
            .collect()
    }

    fn values_i64(&self) -> Vec<i64> {
        let size = self.kind.size();
        let be = self.big_endian;
        self.data
            .chunks_exact(size)
            .map(|c| match self.kind {
                Kind::I32 => {
                    let b = [c[0], c[1], c[2], c[3]];
                    (if be { i32::from_be_bytes(b) } else { i32::from_le_bytes(b) }) as i64
                }
                Kind::I64 => {
                    let b: [u8; 8] = c.try_into().expect("chunk of 8");
                    if be { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) }
                }
                Kind::F32 | Kind::F64 => unreachable!("float arrays are read by values_f64"),
            })
            .collect()
    }
}

/// A row-major matrix read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

/// Reads a float32/float64 `[n, d]` array; NaN or infinite entries are an error.
pub fn read_matrix(path: &Path) -> Result<Matrix, NpyError> {
    parse_matrix(&fs::read(path)?)
}

/// [`read_matrix`] of the bytes of a `.npy` file.
pub fn parse_matrix(bytes: &[u8]) -> Result<Matrix, NpyError> {
    let raw = parse(bytes)?;
    if matches!(raw.kind, Kind::I32 | Kind::I64) {
        let descr = if raw.kind == Kind::I32 { "int32" } else { "int64" };
        return Err(NpyError::Dtype(descr.into(), "float32 or float64 embeddings"));
    }
    let [rows, cols] = raw.shape[..] else {
        return Err(NpyError::Rank { expected: 2, found: raw.shape });
    };
    let mut data = raw.values_f64();
    if raw.fortran_order {
        data = (0..rows * cols).map(|i| data[(i % cols) * rows + i / cols]).collect();
    }
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        return Err(NpyError::Value(format!("non-finite value {} at row {}, column {}", data[bad], bad / cols.max(1), bad % cols.max(1))));
    }
    Ok(Matrix { rows, cols, data })
}

/// Reads an int32/int64 `[n]` label array.
pub fn read_labels(path: &Path) -> Result<Vec<i64>, NpyError> {
    parse_labels(&fs::read(path)?)
}

/// [`read_labels`] of the bytes of a `.npy` file.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<i64>, NpyError> {
    let raw = parse(bytes)?;
    if matches!(raw.kind, Kind::F32 | Kind::F64) {
        let descr = if raw.kind == Kind::F32 { "float32" } else { "float64" };
        return Err(NpyError::Dtype(descr.into(), "int32 or int64 labels"));
    }
    if raw.shape.len() != 1 {
        return Err(NpyError::Rank { expected: 1, found: raw.shape });
    }
    Ok(raw.values_i64())
}

/// How often [`read_matrix_with_labels`] tries for a consistent pair, 20 ms apart.
const PAIR_TRIES: usize = 50;

/// Reads an embedding matrix and its label vector, written one after the other by another
/// process (a run finishing while the app reads): a pair read while it is replaced, seen as
/// rows and labels that disagree in number or as a matrix file that changed during the read, is
/// read again, for up to a second. Rows and labels that still disagree are an error.
pub fn read_matrix_with_labels(matrix: &Path, labels: &Path) -> Result<(Matrix, Vec<i64>), NpyError> {
    let stamp = |path: &Path| fs::metadata(path).and_then(|m| Ok((m.len(), m.modified()?))).ok();
    let mut tries = 0;
    loop {
        let before = stamp(matrix);
        let m = read_matrix(matrix)?;
        let l = read_labels(labels)?;
        let settled = before.is_some() && stamp(matrix) == before;
        if settled && m.rows == l.len() {
            return Ok((m, l));
        }
        tries += 1;
        if tries == PAIR_TRIES {
            return Err(NpyError::Value(format!("{} rows of embeddings but {} labels", m.rows, l.len())));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn header(descr: &str, shape: &[usize], fortran_order: bool) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let order = if fortran_order { "True" } else { "False" };
    let mut text = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    // Pad so that the data starts on a 64-byte boundary, as NumPy does.
    let unpadded = MAGIC.len() + 2 + 2 + text.len() + 1;
    text.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    text.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes a float32 `[rows, cols]` matrix.
pub fn write_matrix_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) -> std::io::Result<()> {
    assert_eq!(rows * cols, data.len(), "matrix data does not match its shape");
    let mut out = header("<f4", &[rows, cols], false);
    out.reserve(data.len() * 4);
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_atomically(path, &out)
}

/// Writes an int64 `[n]` vector.
pub fn write_labels(path: &Path, labels: &[i64]) -> std::io::Result<()> {
    let mut out = header("<i8", &[labels.len()], false);
    for v in labels {
        out.extend_from_slice(&v.to_le_bytes());
    }
    write_atomically(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_matrix_and_labels() {
        let dir = std::env::temp_dir().join(format!("dml-npy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let m = dir.join("m.npy");
        write_matrix_f32(&m, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.5, -6.0]).unwrap();
        let read = read_matrix(&m).unwrap();
        assert_eq!((read.rows, read.cols), (2, 3));
        assert_eq!(read.data, vec![1.0, 2.0, 3.0, 4.0, 5.5, -6.0]);
        // The header pads the data's start to a multiple of 64 bytes.
        assert!((fs::read(&m).unwrap().len() - 6 * 4).is_multiple_of(64));
        let l = dir.join("l.npy");
        write_labels(&l, &[3, -1, 7]).unwrap();
        assert_eq!(read_labels(&l).unwrap(), vec![3, -1, 7]);
        assert!(matches!(read_labels(&m), Err(NpyError::Dtype(..))));
        assert!(matches!(read_matrix(&l), Err(NpyError::Dtype(..))));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_pair_replaced_while_it_is_read_is_read_consistently() {
        let dir = std::env::temp_dir().join(format!("dml-npy-pair-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (m, l) = (dir.join("embeddings.npy"), dir.join("labels.npy"));
        // Pair number `i` has 50 + 50 × (i % 3) rows, every value and label equal to `i`.
        let write = |i: usize| {
            let rows = 50 + 50 * (i % 3);
            write_matrix_f32(&m, rows, 4, &vec![i as f32; rows * 4]).unwrap();
            write_labels(&l, &vec![i as i64; rows]).unwrap();
        };
        write(0);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut i = 1;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    write(i);
                    i += 1;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            });
            for _ in 0..300 {
                let (matrix, labels) = read_matrix_with_labels(&m, &l).unwrap();
                assert_eq!(matrix.rows, labels.len());
                assert!(
                    labels.iter().all(|&x| x as f64 == matrix.data[0]),
                    "rows of pair {} with labels of pair {}",
                    matrix.data[0],
                    labels[0]
                );
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // A pair that disagrees for good is an error.
        write_labels(&l, &[1, 2, 3]).unwrap();
        assert!(read_matrix_with_labels(&m, &l).unwrap_err().to_string().contains("but 3 labels"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A header with the given text after the magic, version 1.
    fn with_header(text: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn a_declared_shape_is_checked_against_the_bytes() {
        // 4 × 2^62 float32 values wrap to 0 bytes in unchecked arithmetic.
        let huge = with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4611686018427387904), }\n");
        assert!(matches!(parse_matrix(&huge), Err(NpyError::Format(m)) if m.contains("too large")), "{:?}", parse_matrix(&huge));
        // A product that fits but is not present in the file.
        let mut short = with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000), }\n");
        short.extend_from_slice(&[0; 16]);
        assert!(matches!(parse_matrix(&short), Err(NpyError::Format(m)) if m.contains("truncated data")));
        // A header length past the end of the file.
        let mut cut = with_header("{'descr': '<f4'}");
        cut[8] = 0xff;
        assert!(matches!(parse_matrix(&cut), Err(NpyError::Format(m)) if m.contains("truncated header")));
    }

    #[test]
    fn a_dtype_starting_with_a_multi_byte_character_is_refused() {
        for descr in ["éf4", "€", "<€"] {
            let bytes = with_header(&format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1, 1), }}\n"));
            assert!(matches!(parse_matrix(&bytes), Err(NpyError::Dtype(..))), "{descr}: {:?}", parse_matrix(&bytes));
        }
    }

    #[test]
    fn fortran_order_and_big_endian() {
        // Column-major data 1,3,2,4 is the matrix [[1,2],[3,4]].
        let mut bytes = header(">f8", &[2, 2], true);
        for v in [1.0f64, 3.0, 2.0, 4.0] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let raw = parse(&bytes).unwrap();
        assert!(raw.big_endian && raw.fortran_order);
        let dir = std::env::temp_dir().join(format!("dml-npy-f-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.npy");
        fs::write(&p, &bytes).unwrap();
        assert_eq!(read_matrix(&p).unwrap().data, vec![1.0, 2.0, 3.0, 4.0]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
