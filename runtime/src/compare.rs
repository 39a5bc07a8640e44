//! Compares an output with the expected one, both raw bytes of one smelt
//! dtype, with the ONNX test rule |got - want| <= atol + rtol * |want|
//! for floats (NaN matches NaN, infinities match exactly) and equality
//! for everything else. Used by `smelt-rt --check`, which links no IR.

use half::{bf16, f16};

fn floats(dtype: &str, b: &[u8]) -> Option<Vec<f64>> {
    Some(match dtype {
        "f32" => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        "f64" => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        "f16" => b
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        "bf16" => b
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        _ => return None,
    })
}

/// `Err` names the first element that differs.
pub fn compare(dtype: &str, want: &[u8], got: &[u8], rtol: f64, atol: f64) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!("{} bytes expected, got {}", want.len(), got.len()));
    }
    match (floats(dtype, want), floats(dtype, got)) {
        (Some(w), Some(g)) => {
            for (i, (&w, &g)) in w.iter().zip(&g).enumerate() {
                let ok = if w.is_nan() || g.is_nan() {
                    w.is_nan() && g.is_nan()
                } else if w.is_infinite() || g.is_infinite() {
                    w == g
                } else {
                    (w - g).abs() <= atol + rtol * w.abs()
                };
                if !ok {
                    return Err(format!("element {i}: expected {w}, got {g}"));
                }
            }
            Ok(())
        }
        _ => match want.iter().zip(got).position(|(a, b)| a != b) {
            None => Ok(()),
            Some(i) => Err(format!("byte {i} differs ({dtype})")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn tolerances_and_nan() {
        let b = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        assert!(
            compare(
                "f32",
                &b(&[1.0, f32::NAN]),
                &b(&[1.0005, f32::NAN]),
                1e-3,
                0.0
            )
            .is_ok()
        );
        assert!(compare("f32", &b(&[1.0]), &b(&[1.01]), 1e-3, 0.0).is_err());
        assert!(compare("f32", &b(&[f32::INFINITY]), &b(&[f32::MAX]), 1.0, 1.0).is_err());
        assert!(
            compare(
                "i64",
                &[1, 0, 0, 0, 0, 0, 0, 0],
                &[2, 0, 0, 0, 0, 0, 0, 0],
                1.0,
                1.0
            )
            .is_err()
        );
    }
}
