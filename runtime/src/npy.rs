//! NumPy `.npy` files (format 1.0/2.0/3.0, little-endian, C order) as raw
//! bytes plus a smelt dtype name, for the runtime binary, which links no
//! IR. dtypes NumPy lacks (bf16, f8) are refused by name.

#[derive(Debug, thiserror::Error)]
#[error("npy: {0}")]
pub struct NpyError(String);

/// (NumPy descr, smelt dtype name).
const TYPES: &[(&str, &str)] = &[
    ("<f4", "f32"),
    ("<f8", "f64"),
    ("<f2", "f16"),
    ("|i1", "i8"),
    ("<i2", "i16"),
    ("<i4", "i32"),
    ("<i8", "i64"),
    ("|u1", "u8"),
    ("<u2", "u16"),
    ("<u4", "u32"),
    ("<u8", "u64"),
    ("|b1", "bool"),
    // bfloat16 (ml_dtypes) saves as a 2-byte void type.
    ("<V2", "bf16"),
    ("|V2", "bf16"),
];

pub struct Npy {
    pub dtype: String,
    pub shape: Vec<u64>,
    pub data: Vec<u8>,
}

pub fn read(bytes: &[u8]) -> Result<Npy, NpyError> {
    let e = |m: &str| NpyError(m.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(e("not an .npy file"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(e("unsupported .npy version")),
    };
    let end = start.checked_add(hlen).filter(|&x| x <= bytes.len());
    let end = end.ok_or_else(|| e("truncated header"))?;
    let h = std::str::from_utf8(&bytes[start..end]).map_err(|_| e("header is not text"))?;
    let field = |k: &str| -> Option<&str> {
        let i = h.find(&format!("'{k}'"))? + k.len() + 2;
        let rest = h[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| e("no descr"))?;
    let descr = descr.trim_start_matches('\'');
    let descr = &descr[..descr.find('\'').ok_or_else(|| e("bad descr"))?];
    let dtype = TYPES
        .iter()
        .find(|(d, _)| {
            *d == descr || (d.starts_with('<') && d[1..] == descr[1..] && descr.starts_with('='))
        })
        .map(|(_, t)| t.to_string())
        .ok_or_else(|| NpyError(format!("dtype {descr} is not supported")))?;
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(e("Fortran-order arrays are not supported"));
    }
    let shape = field("shape").ok_or_else(|| e("no shape"))?;
    let shape = &shape[1..shape.find(')').ok_or_else(|| e("bad shape"))?];
    let shape: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| e("bad shape")))
        .collect::<Result<_, _>>()?;
    Ok(Npy {
        dtype,
        shape,
        data: bytes[end..].to_vec(),
    })
}

/// An `.npy` file of these bytes; `None` for dtypes NumPy lacks.
pub fn write(dtype: &str, shape: &[u64], data: &[u8]) -> Option<Vec<u8>> {
    let descr = TYPES.iter().find(|(_, t)| *t == dtype)?.0;
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Header padded so the data starts 64-byte aligned, ending in '\n'.
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f = super::write("f32", &[2, 3], &data).unwrap();
        let n = super::read(&f).unwrap();
        assert_eq!(
            (n.dtype.as_str(), n.shape.as_slice()),
            ("f32", &[2u64, 3][..])
        );
        assert_eq!(n.data, data);
        assert!(super::read(&f[..20]).is_err());
    }
}
