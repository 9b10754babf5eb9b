//! A reader for MATLAB level-5 MAT-files (the format of Cars-196's `cars_annos.mat`): numeric,
//! character, struct and cell arrays, compressed (miCOMPRESSED) or not, either byte order.

/// One MATLAB array. `dims` are MATLAB's (column-major) dimensions.
#[derive(Clone, Debug, PartialEq)]
pub enum MatValue {
    Numeric {
        dims: Vec<usize>,
        data: Vec<f64>,
    },
    Char {
        dims: Vec<usize>,
        text: String,
    },
    /// `elements[i][f]` is field `fields[f]` of element `i` (column-major order).
    Struct {
        dims: Vec<usize>,
        fields: Vec<String>,
        elements: Vec<Vec<MatValue>>,
    },
    Cell {
        dims: Vec<usize>,
        items: Vec<MatValue>,
    },
}

impl MatValue {
    /// The value of field `name` of struct element `index`.
    pub fn field(&self, index: usize, name: &str) -> Option<&MatValue> {
        match self {
            MatValue::Struct { fields, elements, .. } => {
                let f = fields.iter().position(|n| n == name)?;
                elements.get(index)?.get(f)
            }
            _ => None,
        }
    }

    /// A numeric array's only value.
    pub fn scalar(&self) -> Option<f64> {
        match self {
            MatValue::Numeric { data, .. } if data.len() == 1 => Some(data[0]),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            MatValue::Char { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MatValue::Numeric { data, .. } => data.len(),
            MatValue::Char { text, .. } => text.chars().count(),
            MatValue::Struct { elements, .. } => elements.len(),
            MatValue::Cell { items, .. } => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("MAT-file: {0}")]
pub struct MatError(String);

fn err<T>(message: impl Into<String>) -> Result<T, MatError> {
    Err(MatError(message.into()))
}

const MI_INT8: u32 = 1;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

struct Element<'a> {
    kind: u32,
    data: &'a [u8],
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    big_endian: bool,
}

impl<'a> Reader<'a> {
    fn u32_at(&self, at: usize) -> Result<u32, MatError> {
        let b: [u8; 4] =
            self.bytes.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| MatError(format!("truncated at byte {at}")))?;
        Ok(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn next(&mut self) -> Result<Element<'a>, MatError> {
        let first = self.u32_at(self.at)?;
        if first >> 16 != 0 {
            // Small data element: type and size in one word, up to 4 bytes of data in the next.
            let (kind, size) = (first & 0xFFFF, (first >> 16) as usize);
            if size > 4 {
                return err(format!("small element of {size} bytes at byte {}", self.at));
            }
            let data = self.bytes.get(self.at + 4..self.at + 4 + size).ok_or_else(|| MatError("truncated small element".into()))?;
            self.at += 8;
            return Ok(Element { kind, data });
        }
        let size = self.u32_at(self.at + 4)? as usize;
        let start = self.at + 8;
        let data = start.checked_add(size).and_then(|end| self.bytes.get(start..end)).ok_or_else(|| {
            MatError(format!("element at byte {} declares {size} bytes, {} remain", self.at, self.bytes.len().saturating_sub(start)))
        })?;
        // Compressed elements are not padded; all others end on an 8-byte boundary.
        self.at = if first == MI_COMPRESSED { start + size } else { start.saturating_add(size.div_ceil(8) * 8) };
        Ok(Element { kind: first, data })
    }
}

fn numbers(e: &Element, big_endian: bool) -> Result<Vec<f64>, MatError> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            e.data
                .chunks_exact($n)
                .map(|c| {
                    let b: [u8; $n] = c.try_into().expect("chunk size");
                    (if big_endian { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }) as f64
                })
                .collect()
        };
    }
    Ok(match e.kind {
        1 => conv!(i8, 1),
        2 => conv!(u8, 1),
        3 => conv!(i16, 2),
        4 => conv!(u16, 2),
        5 => conv!(i32, 4),
        6 => conv!(u32, 4),
        7 => conv!(f32, 4),
        9 => conv!(f64, 8),
        12 => conv!(i64, 8),
        13 => conv!(u64, 8),
        other => return err(format!("unsupported numeric data type {other}")),
    })
}

/// Deepest nesting of cells and structs read; MATLAB's own files rarely pass 5.
pub const MAX_DEPTH: usize = 64;

/// Largest inflated compressed variable (1 GiB); Cars-196's annotations are 1 MB.
pub const MAX_INFLATED: u64 = 1 << 30;

/// An array element's contents; `depth` counts the cells and structs around it.
fn matrix(data: &[u8], big_endian: bool, depth: usize) -> Result<(String, MatValue), MatError> {
    if depth > MAX_DEPTH {
        return err(format!("cells or structs nested more than {MAX_DEPTH} deep"));
    }
    if data.is_empty() {
        return Ok((String::new(), MatValue::Numeric { dims: vec![0, 0], data: Vec::new() }));
    }
    let mut r = Reader { bytes: data, at: 0, big_endian };
    let flags = numbers(&r.next()?, big_endian)?;
    let class = *flags.first().ok_or_else(|| MatError("array without flags".into()))? as u32 & 0xFF;
    let dims: Vec<usize> = numbers(&r.next()?, big_endian)?
        .iter()
        .map(|&d| if d >= 0.0 && d <= u32::MAX as f64 { Ok(d as usize) } else { err(format!("dimension {d}")) })
        .collect::<Result<_, _>>()?;
    let name_element = r.next()?;
    let name = String::from_utf8_lossy(name_element.data).trim_end_matches('\0').to_string();
    let count = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| MatError(format!("dimensions {dims:?} overflow")))?;
    // Each cell item and struct field value is an element of at least 8 bytes: a count the bytes
    // left cannot hold is a false claim, refused before anything is allocated for it.
    let holds = |items: usize, r: &Reader| items.checked_mul(8).is_some_and(|b| b <= r.remaining());
    let value = match class {
        1 => {
            if !holds(count, &r) {
                return err(format!("cell `{name}` declares {count} items in {} bytes", r.remaining()));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let e = r.next()?;
                if e.kind != MI_MATRIX {
                    return err("cell item is not an array");
                }
                items.push(matrix(e.data, big_endian, depth + 1)?.1);
            }
            MatValue::Cell { dims, items }
        }
        2 => {
            let len_element = r.next()?;
            let field_len =
                *numbers(&len_element, big_endian)?.first().ok_or_else(|| MatError("struct without field-name length".into()))? as usize;
            let names = r.next()?;
            if names.kind != MI_INT8 || field_len == 0 {
                return err("struct field names are not int8 text");
            }
            let fields: Vec<String> =
                names.data.chunks(field_len).map(|c| String::from_utf8_lossy(c).trim_end_matches('\0').to_string()).collect();
            if !count.checked_mul(fields.len().max(1)).is_some_and(|n| holds(n, &r)) {
                return err(format!("struct `{name}` declares {count} elements of {} fields in {} bytes", fields.len(), r.remaining()));
            }
            let mut elements = Vec::with_capacity(count);
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in 0..fields.len() {
                    let e = r.next()?;
                    if e.kind != MI_MATRIX {
                        return err("struct field value is not an array");
                    }
                    values.push(matrix(e.data, big_endian, depth + 1)?.1);
                }
                elements.push(values);
            }
            MatValue::Struct { dims, fields, elements }
        }
        4 => {
            let e = if r.done() { Element { kind: 4, data: &[] } } else { r.next()? };
            let text = match e.kind {
                16 => String::from_utf8_lossy(e.data).into_owned(),
                _ => numbers(&e, big_endian)?.iter().map(|&c| char::from_u32(c as u32).unwrap_or('\u{FFFD}')).collect(),
            };
            MatValue::Char { dims, text }
        }
        6..=15 => {
            let data = if r.done() { Vec::new() } else { numbers(&r.next()?, big_endian)? };
            if data.len() != count {
                return err(format!("{} values for dimensions {dims:?}", data.len()));
            }
            MatValue::Numeric { dims, data }
        }
        5 => return err(format!("array `{name}`: sparse arrays are not supported")),
        other => return err(format!("array `{name}`: unsupported array class {other}")),
    };
    Ok((name, value))
}

/// The named variables of a MAT-file.
pub fn read(bytes: &[u8]) -> Result<Vec<(String, MatValue)>, MatError> {
    if bytes.len() < 128 {
        return err("shorter than the 128-byte header");
    }
    if bytes.starts_with(b"MATLAB 7.3") {
        return err("MATLAB 7.3 (HDF5) files are not supported; save with -v7 or -v6");
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => return err("not a level-5 MAT-file (no endian indicator)"),
    };
    let mut variables = Vec::new();
    let mut r = Reader { bytes, at: 128, big_endian };
    while !r.done() {
        let e = r.next()?;
        match e.kind {
            MI_MATRIX => variables.push(matrix(e.data, big_endian, 0)?),
            MI_COMPRESSED => {
                let limit = crate::io::inflate_limit(e.data.len(), MAX_INFLATED);
                let inflated = crate::io::read_to_end_at_most(flate2::read::ZlibDecoder::new(e.data), limit, "the inflated variable")
                    .map_err(|e| MatError(format!("compressed variable: {e}")))?;
                let mut inner = Reader { bytes: &inflated, at: 0, big_endian };
                let e = inner.next()?;
                if e.kind != MI_MATRIX {
                    return err("compressed element does not hold an array");
                }
                variables.push(matrix(e.data, big_endian, 0)?);
            }
            other => return err(format!("unexpected top-level element type {other}")),
        }
    }
    Ok(variables)
}
