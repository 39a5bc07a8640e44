//! The 8-bit and 4-bit float formats (FP8 E4M3/E5M2 and their FNUZ variants,
//! E8M0 scales, FP4 E2M1), decoded and encoded by table: every format has at
//! most 256 codes, so the nearest representable value can be found by search
//! instead of by bit tricks, which keeps the oracle obviously right.

use crate::DType;
use std::sync::OnceLock;

#[derive(Clone, Copy)]
struct Format {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// Has a sign bit.
    signed: bool,
    /// Codes with all exponent bits set are inf/NaN (IEEE style).
    ieee_specials: bool,
    /// E4M3FN: only the all-ones code (per sign) is NaN, no infinities.
    fn_nan: bool,
    /// FNUZ: the negative-zero code 0x80 is the single NaN, no infinities.
    uz: bool,
}

fn format(d: DType) -> Option<Format> {
    let f = |exp_bits, man_bits, bias, ieee_specials, fn_nan, uz| Format {
        exp_bits,
        man_bits,
        bias,
        signed: true,
        ieee_specials,
        fn_nan,
        uz,
    };
    Some(match d {
        DType::F8E4M3FN => f(4, 3, 7, false, true, false),
        DType::F8E4M3FNUZ => f(4, 3, 8, false, false, true),
        DType::F8E5M2 => f(5, 2, 15, true, false, false),
        DType::F8E5M2FNUZ => f(5, 2, 16, false, false, true),
        DType::F4E2M1 => f(2, 1, 1, false, false, false),
        DType::F8E8M0 => Format {
            exp_bits: 8,
            man_bits: 0,
            bias: 127,
            signed: false,
            ieee_specials: false,
            fn_nan: false,
            uz: false,
        },
        _ => return None,
    })
}

fn decode_with(f: &Format, code: u32) -> f64 {
    let total = f.exp_bits + f.man_bits + u32::from(f.signed);
    let code = code & ((1 << total) - 1);
    if f.uz && code == 1 << (total - 1) {
        return f64::NAN;
    }
    if !f.signed {
        // E8M0: pure power of two, 0xFF is NaN.
        if code == 0xFF {
            return f64::NAN;
        }
        return 2f64.powi(code as i32 - f.bias);
    }
    let sign = if code >> (total - 1) & 1 == 1 {
        -1.0
    } else {
        1.0
    };
    let e = (code >> f.man_bits) & ((1 << f.exp_bits) - 1);
    let m = code & ((1 << f.man_bits) - 1);
    let emax = (1 << f.exp_bits) - 1;
    if f.ieee_specials && e == emax {
        return if m == 0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if f.fn_nan && e == emax && m == (1 << f.man_bits) - 1 {
        return f64::NAN;
    }
    let frac = m as f64 / (1u32 << f.man_bits) as f64;
    if e == 0 {
        sign * frac * 2f64.powi(1 - f.bias)
    } else {
        sign * (1.0 + frac) * 2f64.powi(e as i32 - f.bias)
    }
}

struct Table {
    /// Finite non-negative values and their codes, ascending.
    pos: Vec<(f64, u32)>,
    nan: u32,
    inf: Option<u32>,
    sign_bit: u32,
}

fn table(d: DType) -> Option<&'static Table> {
    static TABLES: OnceLock<Vec<(DType, Table)>> = OnceLock::new();
    let all = TABLES.get_or_init(|| {
        [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
            DType::F8E8M0,
            DType::F4E2M1,
        ]
        .into_iter()
        .map(|d| {
            let f = format(d).expect("listed formats have a layout");
            let bits = f.exp_bits + f.man_bits + u32::from(f.signed);
            let sign_bit = if f.signed { 1 << (bits - 1) } else { 0 };
            let mut pos = Vec::new();
            let mut nan = 0;
            let mut inf = None;
            for code in 0..(1u32 << bits) {
                if f.signed && code & sign_bit != 0 {
                    continue;
                }
                let v = decode_with(&f, code);
                if v.is_nan() {
                    nan = code;
                } else if v.is_infinite() {
                    inf = Some(code);
                } else {
                    pos.push((v, code));
                }
            }
            if f.uz {
                nan = sign_bit;
            } else if f.signed && nan == 0 && f.exp_bits > 2 {
                nan = (1 << bits) - 1 - sign_bit;
            }
            pos.sort_by(|a, b| a.0.total_cmp(&b.0));
            (
                d,
                Table {
                    pos,
                    nan,
                    inf,
                    sign_bit,
                },
            )
        })
        .collect()
    });
    all.iter().find(|(k, _)| *k == d).map(|(_, t)| t)
}

/// Decodes one code of a minifloat dtype.
pub fn decode(d: DType, code: u8) -> f64 {
    format(d).map_or(f64::NAN, |f| decode_with(&f, u32::from(code)))
}

/// Encodes with round-to-nearest-even. With `saturate`, values beyond the
/// largest finite one become it; otherwise they become inf where the format
/// has one, else NaN (the ONNX Cast rules).
pub fn encode(d: DType, x: f64, saturate: bool) -> u8 {
    let Some(t) = table(d) else { return 0 };
    let signed = t.sign_bit != 0;
    if x.is_nan() {
        return t.nan as u8;
    }
    let neg = x.is_sign_negative() && x != 0.0;
    if neg && !signed {
        return t.nan as u8;
    }
    let a = x.abs();
    let (max, max_code) = *t.pos.last().expect("formats have finite values");
    let with_sign = |c: u32| -> u8 {
        // FNUZ has no negative zero.
        if neg && !(c == 0 && t.nan == t.sign_bit) {
            (c | t.sign_bit) as u8
        } else {
            c as u8
        }
    };
    if a.is_infinite() {
        return match (saturate, t.inf) {
            (true, _) => with_sign(max_code),
            (false, Some(i)) => with_sign(i),
            (false, None) => t.nan as u8,
        };
    }
    // Index of the first value >= a.
    let i = t.pos.partition_point(|&(v, _)| v < a);
    let code = if i == t.pos.len() {
        // Above the largest finite value: does it round down to it?
        let prev = t.pos[t.pos.len() - 2].0;
        let half_ulp = (max - prev) / 2.0;
        if a < max + half_ulp || (a == max + half_ulp && max_code & 1 == 0) || saturate {
            max_code
        } else if let Some(inf) = t.inf {
            inf
        } else {
            return t.nan as u8;
        }
    } else if t.pos[i].0 == a || i == 0 {
        t.pos[i].1
    } else {
        let (lo, lc) = t.pos[i - 1];
        let (hi, hc) = t.pos[i];
        if a - lo < hi - a || (a - lo == hi - a && lc & 1 == 0) {
            lc
        } else {
            hc
        }
    };
    with_sign(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(decode(DType::F8E4M3FN, 0x7E), 448.0);
        assert!(decode(DType::F8E4M3FN, 0x7F).is_nan());
        assert_eq!(decode(DType::F8E5M2, 0x7B), 57344.0);
        assert_eq!(decode(DType::F8E5M2, 0x7C), f64::INFINITY);
        assert_eq!(decode(DType::F8E4M3FNUZ, 0x7F), 240.0);
        assert!(decode(DType::F8E4M3FNUZ, 0x80).is_nan());
        assert_eq!(decode(DType::F4E2M1, 0x7), 6.0);
        assert_eq!(decode(DType::F4E2M1, 0x9), -0.5);
        assert_eq!(decode(DType::F8E8M0, 127), 1.0);
    }

    #[test]
    fn round_trip_every_code() {
        for d in [
            DType::F8E4M3FN,
            DType::F8E4M3FNUZ,
            DType::F8E5M2,
            DType::F8E5M2FNUZ,
            DType::F4E2M1,
        ] {
            let n = if d == DType::F4E2M1 { 16 } else { 256 };
            for c in 0..n {
                let v = decode(d, c as u8);
                if v.is_nan() {
                    continue;
                }
                assert_eq!(decode(d, encode(d, v, false)), v, "{d} code {c:#x}");
            }
        }
    }

    #[test]
    fn rounding_and_saturation() {
        assert_eq!(
            decode(DType::F8E4M3FN, encode(DType::F8E4M3FN, 1000.0, true)),
            448.0
        );
        assert!(decode(DType::F8E4M3FN, encode(DType::F8E4M3FN, 1000.0, false)).is_nan());
        assert_eq!(
            decode(DType::F8E5M2, encode(DType::F8E5M2, 1e6, false)),
            f64::INFINITY
        );
        // 1.0625 lies halfway between 1.0 and 1.125 in E4M3: ties to even (1.0).
        assert_eq!(
            decode(DType::F8E4M3FN, encode(DType::F8E4M3FN, 1.0625, true)),
            1.0
        );
    }
}
