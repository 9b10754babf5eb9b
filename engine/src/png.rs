//! A minimal PNG writer (8-bit greyscale, no interlacing) for sprite sheets and thumbnails.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::ZlibEncoder;

use crate::io::write_atomically;

pub(crate) fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *entry = c;
    }
    table
}

pub(crate) fn crc32(table: &[u32; 256], bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c = table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

fn chunk(out: &mut Vec<u8>, table: &[u32; 256], kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(table, &out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The PNG file of a `width × height` greyscale image, rows top to bottom.
pub fn encode_grey(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    assert_eq!(pixels.len(), width * height, "pixel count does not match the image size");
    let table = crc32_table();
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(width as u32).to_be_bytes());
    header.extend_from_slice(&(height as u32).to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, greyscale, deflate, no filter, no interlace
    chunk(&mut out, &table, b"IHDR", &header);
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    for row in pixels.chunks_exact(width.max(1)) {
        encoder.write_all(&[0]).expect("writing to memory");
        encoder.write_all(row).expect("writing to memory");
    }
    chunk(&mut out, &table, b"IDAT", &encoder.finish().expect("writing to memory"));
    chunk(&mut out, &table, b"IEND", &[]);
    out
}

pub fn write_grey(path: &Path, width: usize, height: usize, pixels: &[u8]) -> std::io::Result<()> {
    write_atomically(path, &encode_grey(width, height, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// CRC-32 bit by bit, as the PNG specification defines it.
    fn crc_reference(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn crc_of_known_string() {
        // The check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(&crc32_table(), b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn chunks_and_pixels_round_trip() {
        let (w, h) = (5, 3);
        let pixels: Vec<u8> = (0..15).map(|i| (i * 17) as u8).collect();
        let png = encode_grey(w, h, &pixels);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut at = 8;
        let mut kinds = Vec::new();
        let mut idat = Vec::new();
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let body = &png[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc_reference(body));
            kinds.push(String::from_utf8(body[..4].to_vec()).unwrap());
            if &body[..4] == b"IHDR" {
                assert_eq!(&body[4..12], &[0, 0, 0, 5, 0, 0, 0, 3]);
            }
            if &body[..4] == b"IDAT" {
                idat.extend_from_slice(&body[4..]);
            }
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
        let expected: Vec<u8> = pixels.chunks(w).flat_map(|row| std::iter::once(0).chain(row.iter().copied())).collect();
        assert_eq!(raw, expected);
    }
}
