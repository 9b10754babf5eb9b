//! The IDX format of MNIST and Fashion-MNIST (unsigned bytes, big-endian dimensions), plain or
//! gzip-compressed.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an IDX file of unsigned bytes ({0})")]
    Format(String),
}

/// An n-dimensional array of bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads `path`, decompressing it when it ends in `.gz`.
pub fn read(path: &Path) -> Result<IdxArray, IdxError> {
    let raw = std::fs::read(path)?;
    if path.extension().is_some_and(|e| e == "gz") { parse_gz(&raw) } else { parse(&raw) }
}

/// Largest IDX array read (1 GiB): ten times the largest MNIST-family file (EMNIST's ByClass
/// training images, 546 MB).
pub const MAX_BYTES: u64 = 1 << 30;

/// Parses a gzip-compressed IDX file held in memory. The stream is inflated no further than
/// DEFLATE's maximum ratio allows for its size, nor past [`MAX_BYTES`].
pub fn parse_gz(raw: &[u8]) -> Result<IdxArray, IdxError> {
    let inflated = flate2::read::GzDecoder::new(raw);
    let bytes = crate::io::read_to_end_at_most(inflated, crate::io::inflate_limit(raw.len(), MAX_BYTES + 1024), "the inflated file")
        .map_err(|e| IdxError::Format(format!("bad gzip stream: {e}")))?;
    parse(&bytes)
}

pub fn parse(bytes: &[u8]) -> Result<IdxArray, IdxError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(IdxError::Format("bad magic number".into()));
    }
    if bytes[2] != 0x08 {
        return Err(IdxError::Format(format!("element type 0x{:02x}, expected 0x08", bytes[2])));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(IdxError::Format("truncated header".into()));
    }
    if rank == 0 {
        return Err(IdxError::Format("no dimensions".into()));
    }
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize).collect();
    if dims.contains(&0) {
        return Err(IdxError::Format(format!("dimensions {dims:?}: an empty dimension")));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n as u64 <= MAX_BYTES)
        .ok_or_else(|| IdxError::Format(format!("dimensions {dims:?} describe more than {MAX_BYTES} bytes")))?;
    let data = &bytes[header..];
    if data.len() != count {
        return Err(IdxError::Format(format!("dimensions {dims:?} need {count} bytes, found {}", data.len())));
    }
    Ok(IdxArray { dims, data: data.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let mut bytes = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend([1, 2, 3, 4, 5, 6]);
        assert_eq!(parse(&bytes).unwrap(), IdxArray { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] });
        assert!(parse(&bytes[..15]).is_err());
        bytes[2] = 0x0d;
        assert!(parse(&bytes).is_err());
    }

    fn message(result: Result<IdxArray, IdxError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn declared_dimensions_are_claims() {
        // No dimensions, an empty one, and a product that overflows 64 bits (all with no data).
        assert!(message(parse(&[0, 0, 8, 0])).contains("no dimensions"));
        assert!(message(parse(&[0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 5])).contains("empty dimension"));
        let mut huge = vec![0, 0, 8, 3];
        for _ in 0..3 {
            huge.extend(u32::MAX.to_be_bytes());
        }
        assert!(message(parse(&huge)).contains("more than 1073741824 bytes"));
        // A gzip bomb: a 2-dimensional header followed by 64 MiB of zeros, in about 64 KiB.
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[0, 0, 8, 2, 0, 0, 0x10, 0, 0, 0, 0x10, 0]).unwrap();
        gz.write_all(&vec![0u8; 64 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        // The claimed 4096 × 4096 = 16 MiB do not match the 64 MiB inflated; the bound is the
        // ratio (about 64 MiB for this stream), so it inflates and is refused on size.
        assert!(message(parse_gz(&gz)).contains("need 16777216 bytes"));
        let mut truncated_stream = gz.clone();
        truncated_stream.truncate(gz.len() / 2);
        assert!(message(parse_gz(&truncated_stream)).contains("bad gzip stream"));
    }
}
