//! The IDX format of MNIST and Fashion-MNIST (unsigned bytes, big-endian dimensions), plain or
//! gzip-compressed.

use std::io::Read;
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

/// Parses a gzip-compressed IDX file held in memory.
pub fn parse_gz(raw: &[u8]) -> Result<IdxArray, IdxError> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(raw).read_to_end(&mut bytes).map_err(|e| IdxError::Format(format!("bad gzip stream: {e}")))?;
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
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize).collect();
    let count: usize = dims.iter().product();
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
}
