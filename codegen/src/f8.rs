//! The 8-bit (and 4-bit) float storage types: their layouts, a decode
//! table per format (loads look the code up) and the constants the store
//! encoder needs.
//!
//! Own small decoder rather than smelt-ir's: codegen does not depend on the
//! IR crate. The conformance suite checks both agree.

use smelt_kernel::Ty;

#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub exp_bits: u32,
    pub man_bits: u32,
    pub bias: i32,
    /// All-ones exponent codes are inf (mantissa 0) / NaN (E5M2).
    pub ieee: bool,
    /// Only the all-ones code per sign is NaN, no inf (E4M3FN).
    pub fn_nan: bool,
    /// 0x80 is the only NaN, no inf, no negative zero (FNUZ).
    pub uz: bool,
    /// Total bits (8, or 4 for E2M1, which has neither inf nor NaN and
    /// always saturates).
    pub bits: u32,
}

pub fn format(t: Ty) -> Option<Format> {
    let f = |exp_bits, man_bits, bias, ieee, fn_nan, uz| Format {
        exp_bits,
        man_bits,
        bias,
        ieee,
        fn_nan,
        uz,
        bits: 8,
    };
    Some(match t {
        Ty::F8E4M3FN => f(4, 3, 7, false, true, false),
        Ty::F8E4M3FNUZ => f(4, 3, 8, false, false, true),
        Ty::F8E5M2 => f(5, 2, 15, true, false, false),
        Ty::F8E5M2FNUZ => f(5, 2, 16, false, false, true),
        Ty::F4E2M1 => Format {
            bits: 4,
            ..f(2, 1, 1, false, false, false)
        },
        _ => return None,
    })
}

impl Format {
    pub fn decode(&self, code: u8) -> f32 {
        let code = u32::from(code) & ((1 << self.bits) - 1);
        if self.uz && code == 0x80 {
            return f32::NAN;
        }
        let sign = if code & self.sign_bit() != 0 {
            -1.0
        } else {
            1.0
        };
        let e = (code >> self.man_bits) & ((1 << self.exp_bits) - 1);
        let m = code & ((1 << self.man_bits) - 1);
        let emax = (1 << self.exp_bits) - 1;
        if self.ieee && e == emax {
            return if m == 0 {
                sign * f32::INFINITY
            } else {
                f32::NAN
            };
        }
        if self.fn_nan && e == emax && m == (1 << self.man_bits) - 1 {
            return f32::NAN;
        }
        let frac = m as f32 / (1u32 << self.man_bits) as f32;
        let scale = |p: i32| 2f32.powi(p);
        if e == 0 {
            sign * frac * scale(1 - self.bias)
        } else {
            sign * (1.0 + frac) * scale(e as i32 - self.bias)
        }
    }

    /// The largest finite positive code.
    pub fn max_code(&self) -> u32 {
        if self.ieee {
            (((1 << self.exp_bits) - 1) << self.man_bits) - 1
        } else if self.fn_nan {
            0x7E
        } else {
            self.sign_bit() - 1
        }
    }

    pub fn sign_bit(&self) -> u32 {
        1 << (self.bits - 1)
    }

    /// Whether an overflowing store saturates whatever the caller asks
    /// (E2M1 has no code for inf or NaN).
    pub fn always_saturates(&self) -> bool {
        self.bits == 4
    }

    pub fn max_value(&self) -> f32 {
        self.decode(self.max_code() as u8)
    }

    /// The positive infinity code, where the format has one.
    pub fn inf_code(&self) -> Option<u32> {
        self.ieee
            .then_some(((1 << self.exp_bits) - 1) << self.man_bits)
    }

    /// The NaN a store produces (positive where the format has a sign).
    /// E2M1 stores NaN as 0, as the reference Cast does.
    pub fn nan_code(&self) -> u32 {
        if self.bits == 4 {
            0
        } else if self.uz {
            0x80
        } else {
            0x7F
        }
    }

    /// The smallest positive normal value, 2^(1 - bias).
    pub fn min_normal(&self) -> f32 {
        2f32.powi(1 - self.bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Largest finite values from the OCP FP8 spec / onnx.numpy_helper.
        let f = format(Ty::F8E4M3FN).unwrap();
        assert_eq!(f.max_code(), 0x7E);
        assert_eq!(f.max_value(), 448.0);
        assert!(f.decode(0x7F).is_nan());
        let f = format(Ty::F8E4M3FNUZ).unwrap();
        assert_eq!(f.max_value(), 240.0);
        assert!(f.decode(0x80).is_nan());
        let f = format(Ty::F8E5M2).unwrap();
        assert_eq!(f.max_code(), 0x7B);
        assert_eq!(f.max_value(), 57344.0);
        assert_eq!(f.decode(0x7C), f32::INFINITY);
        let f = format(Ty::F8E5M2FNUZ).unwrap();
        assert_eq!(f.max_value(), 57344.0);
        assert_eq!(f.decode(0x01), 2f32.powi(-17));
        // E2M1 codes: 0 0.5 1 1.5 2 3 4 6, then the negatives.
        let f = format(Ty::F4E2M1).unwrap();
        assert_eq!(f.max_code(), 7);
        assert_eq!(f.max_value(), 6.0);
        assert_eq!(f.decode(1), 0.5);
        assert_eq!(f.decode(0x9), -0.5);
    }
}
