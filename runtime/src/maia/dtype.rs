//! Storage dtypes of the Maia-style command stream and their exact
//! rounding. Values are computed in f32 and rounded to the storage dtype
//! when written, as the hardware would.
//!
//! MX (OCP microscaling) data is stored in blocks of 33 bytes: one E8M0
//! scale byte followed by 32 element bytes (fp6/fp4 elements unpacked, one
//! per byte, so that addresses stay byte-aligned). The block runs along the
//! innermost (contiguous) axis, which must be a multiple of 32.

use half::{bf16, f16};

macro_rules! dts {
    ($($v:ident = $code:literal, $name:literal;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Dt { $($v),* }
        impl Dt {
            pub const ALL: &'static [Dt] = &[$(Dt::$v),*];
            pub fn code(self) -> u8 { match self { $(Dt::$v => $code),* } }
            pub fn from_code(c: u8) -> Option<Dt> { match c { $($code => Some(Dt::$v),)* _ => None } }
            /// The smelt dtype name (same as the IR's).
            pub fn name(self) -> &'static str { match self { $(Dt::$v => $name),* } }
            pub fn from_name(s: &str) -> Option<Dt> { match s { $($name => Some(Dt::$v),)* _ => None } }
        }
    };
}

dts! {
    F32 = 0, "f32";
    F16 = 1, "f16";
    BF16 = 2, "bf16";
    F8E4M3 = 3, "f8e4m3fn";
    F8E5M2 = 4, "f8e5m2";
    I32 = 5, "i32";
    I8 = 6, "i8";
    I64 = 7, "i64";
    U8 = 8, "u8";
    I16 = 9, "i16";
    U16 = 10, "u16";
    U32 = 11, "u32";
    F64 = 12, "f64";
    F8E4M3Fnuz = 13, "f8e4m3fnuz";
    F8E5M2Fnuz = 14, "f8e5m2fnuz";
    MxFp8E4M3 = 16, "mxfp8e4m3";
    MxFp8E5M2 = 17, "mxfp8e5m2";
    MxFp6E3M2 = 18, "mxfp6e3m2";
    MxFp6E2M3 = 19, "mxfp6e2m3";
    MxFp4 = 20, "mxfp4";
    MxInt8 = 21, "mxint8";
    I4 = 22, "i4";
    U4 = 23, "u4";
    I2 = 24, "i2";
    U2 = 25, "u2";
    F4E2M1 = 26, "f4e2m1";
    F8E8M0 = 27, "f8e8m0";
}

impl std::fmt::Display for Dt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A small float format without the f32 machinery: exponent and mantissa
/// bits, bias, and whether the all-ones exponent is Inf/NaN (IEEE-like) or
/// the format is finite (fn: only S.1111.111 is NaN, e4m3fn; or none: MX fp6/fp4).
#[derive(Clone, Copy)]
struct Mini {
    e: i32,
    m: i32,
    bias: i32,
    kind: Special,
}

#[derive(Clone, Copy, PartialEq)]
enum Special {
    Ieee,
    FnNan,
    /// fnuz: 0x80 (the negative zero code) is the only NaN; no infinities,
    /// no negative zero.
    Fnuz,
    None,
}

const E4M3: Mini = Mini {
    e: 4,
    m: 3,
    bias: 7,
    kind: Special::FnNan,
};
const E5M2: Mini = Mini {
    e: 5,
    m: 2,
    bias: 15,
    kind: Special::Ieee,
};
const E4M3FNUZ: Mini = Mini {
    e: 4,
    m: 3,
    bias: 8,
    kind: Special::Fnuz,
};
const E5M2FNUZ: Mini = Mini {
    e: 5,
    m: 2,
    bias: 16,
    kind: Special::Fnuz,
};
const E3M2: Mini = Mini {
    e: 3,
    m: 2,
    bias: 3,
    kind: Special::None,
};
const E2M3: Mini = Mini {
    e: 2,
    m: 3,
    bias: 1,
    kind: Special::None,
};
const E2M1: Mini = Mini {
    e: 2,
    m: 1,
    bias: 1,
    kind: Special::None,
};

impl Mini {
    fn max(self) -> f64 {
        let top_e = (1 << self.e) - 1 - if self.kind == Special::Ieee { 1 } else { 0 };
        let top_m = (1 << self.m) - 1 - if self.kind == Special::FnNan { 1 } else { 0 };
        (1.0 + top_m as f64 / (1 << self.m) as f64) * 2f64.powi(top_e - self.bias)
    }

    /// Whether `x` rounds (to nearest even) beyond the largest finite value.
    fn overflows(self, x: f32) -> bool {
        let a = (x as f64).abs();
        let max = self.max();
        if a.is_infinite() {
            return true;
        }
        if a <= max {
            return false;
        }
        // max has an odd mantissa unless all its mantissa bits are set
        // (fn formats give up the top code to NaN): a tie rounds to the even
        // neighbour, which is max itself only when max is even.
        let ulp = 2f64.powi(max.log2().floor() as i32 - self.m);
        let half = max + ulp / 2.0;
        let max_even = ((max / ulp) as u64).is_multiple_of(2);
        a > half || (a == half && !max_even)
    }

    fn decode(self, code: u8) -> f32 {
        if self.kind == Special::Fnuz && code == 0x80 {
            return f32::NAN;
        }
        let sign = if code >> (self.e + self.m) & 1 == 1 {
            -1.0
        } else {
            1.0
        };
        let ef = (code as i32 >> self.m) & ((1 << self.e) - 1);
        let mf = code as i32 & ((1 << self.m) - 1);
        let all_e = (1 << self.e) - 1;
        match self.kind {
            Special::Ieee if ef == all_e => {
                return if mf == 0 {
                    sign * f32::INFINITY
                } else {
                    f32::NAN
                };
            }
            Special::FnNan if ef == all_e && mf == (1 << self.m) - 1 => return f32::NAN,
            _ => {}
        }
        let v = if ef == 0 {
            mf as f64 * 2f64.powi(1 - self.bias - self.m)
        } else {
            (1.0 + mf as f64 / (1 << self.m) as f64) * 2f64.powi(ef - self.bias)
        };
        sign * v as f32
    }

    /// Round to nearest, ties to even; values beyond the largest finite
    /// (infinities included) saturate to it (ONNX's default `saturate=1`
    /// for fp8 casts, and the OCP MX rule for fp6/fp4).
    fn encode(self, x: f32) -> u8 {
        self.encode_with(x, true)
    }

    /// `encode`, or with `saturate` false ONNX's `saturate=0`: what rounds
    /// beyond the largest finite value (infinities included) becomes inf
    /// where the format has one, else NaN.
    fn encode_with(self, x: f32, saturate: bool) -> u8 {
        if self.kind == Special::Fnuz {
            if x.is_nan() {
                return 0x80;
            }
            if !saturate && self.overflows(x) {
                return 0x80;
            }
            // Whatever rounds to zero is +0: 0x80 is NaN.
            let c = Mini {
                kind: Special::None,
                ..self
            }
            .encode(x);
            return if c & 0x7f == 0 { 0 } else { c };
        }
        let sbit = if x.is_sign_negative() {
            1u8 << (self.e + self.m)
        } else {
            0
        };
        if x.is_nan() {
            return match self.kind {
                Special::Ieee => ((((1 << self.e) - 1) << self.m) | 1) as u8,
                Special::FnNan => 0x7f,
                Special::None => 0,
                Special::Fnuz => 0x80,
            };
        }
        let a = (x as f64).abs();
        let max = self.max();
        if a == 0.0 {
            return sbit;
        }
        if !saturate && self.overflows(x) {
            return match self.kind {
                Special::Ieee => sbit | ((((1 << self.e) - 1) << self.m) as u8),
                Special::FnNan => sbit | 0x7f,
                // Formats without inf or NaN can only saturate.
                _ => self.encode(x),
            };
        }
        let min_normal_e = 1 - self.bias;
        let e = (a.log2().floor() as i32).max(min_normal_e);
        let quantum = 2f64.powi(e - self.m);
        let q = ((a / quantum).round_ties_even() * quantum).min(max);
        if q < 2f64.powi(min_normal_e) {
            let mf = (q / 2f64.powi(min_normal_e - self.m)).round() as u8;
            return sbit | mf;
        }
        let e2 = q.log2().floor() as i32;
        let mf = ((q / 2f64.powi(e2) - 1.0) * (1 << self.m) as f64).round() as u8;
        sbit | (((e2 + self.bias) as u8) << self.m) | mf
    }
}

impl Dt {
    pub fn is_mx(self) -> bool {
        matches!(
            self,
            Dt::MxFp8E4M3 | Dt::MxFp8E5M2 | Dt::MxFp6E3M2 | Dt::MxFp6E2M3 | Dt::MxFp4 | Dt::MxInt8
        )
    }

    /// Sub-byte dtypes packed several to a byte, low bits first (ONNX's
    /// layout). A transfer of them must start and end on whole bytes.
    pub fn is_packed(self) -> bool {
        matches!(self, Dt::I4 | Dt::U4 | Dt::I2 | Dt::U2 | Dt::F4E2M1)
    }

    /// Bytes of `n` elements (for MX, `n` must be a multiple of 32; other
    /// `n` is rounded up to whole blocks).
    pub fn bytes(self, n: u64) -> u64 {
        match self {
            Dt::I64 | Dt::F64 => 8 * n,
            Dt::I4 | Dt::U4 | Dt::F4E2M1 => n.div_ceil(2),
            Dt::I2 | Dt::U2 => n.div_ceil(4),
            Dt::F32 | Dt::I32 | Dt::U32 => 4 * n,
            Dt::F16 | Dt::BF16 | Dt::I16 | Dt::U16 => 2 * n,
            Dt::F8E4M3
            | Dt::F8E5M2
            | Dt::F8E4M3Fnuz
            | Dt::F8E5M2Fnuz
            | Dt::F8E8M0
            | Dt::I8
            | Dt::U8 => n,
            _ => n.div_ceil(32) * 33,
        }
    }

    /// Element width in bits as the hardware computes with it (for rates).
    pub fn bits(self) -> u32 {
        match self {
            Dt::I64 | Dt::F64 => 64,
            Dt::F32 | Dt::I32 | Dt::U32 => 32,
            Dt::F16 | Dt::BF16 | Dt::I16 | Dt::U16 => 16,
            Dt::MxFp6E3M2 | Dt::MxFp6E2M3 => 6,
            Dt::MxFp4 | Dt::I4 | Dt::U4 | Dt::F4E2M1 => 4,
            Dt::I2 | Dt::U2 => 2,
            _ => 8,
        }
    }

    fn mx_elem(self) -> Option<Mini> {
        match self {
            Dt::MxFp8E4M3 => Some(E4M3),
            Dt::MxFp8E5M2 => Some(E5M2),
            Dt::MxFp6E3M2 => Some(E3M2),
            Dt::MxFp6E2M3 => Some(E2M3),
            Dt::MxFp4 => Some(E2M1),
            _ => None,
        }
    }

    /// Integer dtypes: the DMA converts between them exactly (wrapping to
    /// the destination's width) and the vector unit computes on them
    /// exactly when they are in its `dtypes`.
    pub fn is_int(self) -> bool {
        matches!(
            self,
            Dt::I32 | Dt::I8 | Dt::I64 | Dt::U8 | Dt::I16 | Dt::U16 | Dt::U32
        )
    }

    /// Reads integer elements exactly (sign- or zero-extended). None for
    /// non-integer dtypes.
    pub fn load_int(self, src: &[u8], out: &mut [i64]) -> Option<()> {
        let w = self.bytes(1) as usize;
        if !self.is_int() {
            return None;
        }
        for (o, b) in out.iter_mut().zip(src.chunks_exact(w)) {
            *o = match self {
                Dt::I8 => b[0] as i8 as i64,
                Dt::U8 => b[0] as i64,
                Dt::I16 => i16::from_le_bytes([b[0], b[1]]) as i64,
                Dt::U16 => u16::from_le_bytes([b[0], b[1]]) as i64,
                Dt::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
                Dt::U32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
                _ => i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            };
        }
        Some(())
    }

    /// Writes integers wrapped to this dtype's width (two's complement),
    /// as a cast between integer types does. None for non-integer dtypes.
    pub fn store_int(self, vals: &[i64], dst: &mut [u8]) -> Option<()> {
        let w = self.bytes(1) as usize;
        if !self.is_int() {
            return None;
        }
        for (&v, b) in vals.iter().zip(dst.chunks_exact_mut(w)) {
            b.copy_from_slice(&v.to_le_bytes()[..w]);
        }
        Some(())
    }

    /// Reads `out.len()` elements from `src` (which must hold
    /// `self.bytes(out.len())` bytes).
    pub fn load(self, src: &[u8], out: &mut [f32]) {
        if self.is_packed() {
            let b = self.bits() as usize;
            let mask = (1u8 << b) - 1;
            for (i, o) in out.iter_mut().enumerate() {
                let c = (src[i * b / 8] >> (i * b % 8)) & mask;
                *o = match self {
                    Dt::F4E2M1 => E2M1.decode(c),
                    // Sign-extend from b bits.
                    Dt::I4 | Dt::I2 => ((c << (8 - b)) as i8 >> (8 - b)) as f32,
                    _ => c as f32,
                };
            }
            return;
        }
        if self.is_int() && !matches!(self, Dt::I32 | Dt::I8) {
            let mut v = vec![0i64; out.len()];
            let _ = self.load_int(src, &mut v);
            for (o, x) in out.iter_mut().zip(v) {
                *o = x as f32;
            }
            return;
        }
        match self {
            Dt::F32 => each(src, 4, out, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }),
            Dt::I32 => each(src, 4, out, |b| {
                i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32
            }),
            Dt::F16 => each(src, 2, out, |b| f16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dt::BF16 => each(src, 2, out, |b| bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            Dt::F64 => each(src, 8, out, |b| {
                f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
            }),
            Dt::F8E4M3Fnuz => each(src, 1, out, |b| E4M3FNUZ.decode(b[0])),
            Dt::F8E5M2Fnuz => each(src, 1, out, |b| E5M2FNUZ.decode(b[0])),
            Dt::F8E4M3 => each(src, 1, out, |b| E4M3.decode(b[0])),
            Dt::F8E5M2 => each(src, 1, out, |b| E5M2.decode(b[0])),
            Dt::I8 => each(src, 1, out, |b| b[0] as i8 as f32),
            Dt::F8E8M0 => each(src, 1, out, |b| e8m0(b[0])),
            _ => {
                for (blk, vals) in src.chunks(33).zip(out.chunks_mut(32)) {
                    let scale = e8m0(blk[0]);
                    for (v, &c) in vals.iter_mut().zip(&blk[1..]) {
                        let e = match self.mx_elem() {
                            Some(mini) => mini.decode(c),
                            // mxint8: two's complement with an implicit 2^-6.
                            None => c as i8 as f32 / 64.0,
                        };
                        *v = e * scale;
                    }
                }
            }
        }
    }

    /// Whether a conversion to this dtype can overflow into inf or NaN
    /// (a DMA may then convert without saturating).
    pub fn has_overflow_mode(self) -> bool {
        matches!(
            self,
            Dt::F8E4M3 | Dt::F8E5M2 | Dt::F8E4M3Fnuz | Dt::F8E5M2Fnuz | Dt::F8E8M0
        )
    }

    /// `store`, converting to fp8 and e8m0 without saturating when
    /// `saturate` is false (ONNX Cast's `saturate=0`: what rounds beyond
    /// the largest finite value becomes inf where the format has one, else
    /// NaN). Other dtypes ignore the flag.
    pub fn store_with(self, vals: &[f32], dst: &mut [u8], saturate: bool) {
        if saturate {
            return self.store(vals, dst);
        }
        match self {
            Dt::F8E4M3Fnuz => put(vals, 1, dst, |v, b| b[0] = E4M3FNUZ.encode_with(v, false)),
            Dt::F8E5M2Fnuz => put(vals, 1, dst, |v, b| b[0] = E5M2FNUZ.encode_with(v, false)),
            Dt::F8E4M3 => put(vals, 1, dst, |v, b| b[0] = E4M3.encode_with(v, false)),
            Dt::F8E5M2 => put(vals, 1, dst, |v, b| b[0] = E5M2.encode_with(v, false)),
            Dt::F8E8M0 => put(vals, 1, dst, |v, b| b[0] = to_e8m0(v, false)),
            _ => self.store(vals, dst),
        }
    }

    /// Writes `vals` rounded to this dtype into `dst`.
    pub fn store(self, vals: &[f32], dst: &mut [u8]) {
        if self.is_packed() {
            // f4e2m1 rounds to nearest even and saturates (NaN gives +0);
            // integers truncate toward zero and wrap (NaN and ±inf give 0),
            // as ONNX's Cast to these types does.
            let b = self.bits() as usize;
            let mask = (1u8 << b) - 1;
            dst.fill(0);
            for (i, &v) in vals.iter().enumerate() {
                let c = match self {
                    Dt::F4E2M1 if v.is_nan() => 0,
                    Dt::F4E2M1 => E2M1.encode(v),
                    _ if v.is_finite() => (v.trunc() as i64 & mask as i64) as u8,
                    _ => 0,
                };
                dst[i * b / 8] |= (c & mask) << (i * b % 8);
            }
            return;
        }
        if self.is_int() && !matches!(self, Dt::I32 | Dt::I8) {
            // Rounded, then saturated to the dtype's range (as I32/I8 do).
            let (lo, hi) = match self {
                Dt::U8 => (0.0, 255.0),
                Dt::I16 => (-32768.0, 32767.0),
                Dt::U16 => (0.0, 65535.0),
                Dt::U32 => (0.0, 4294967295.0),
                _ => (i64::MIN as f64, i64::MAX as f64),
            };
            let v: Vec<i64> = vals
                .iter()
                .map(|&x| (x as f64).round_ties_even().clamp(lo, hi) as i64)
                .collect();
            let _ = self.store_int(&v, dst);
            return;
        }
        match self {
            Dt::F32 => put(vals, 4, dst, |v, b| b.copy_from_slice(&v.to_le_bytes())),
            Dt::I32 => put(vals, 4, dst, |v, b| {
                b.copy_from_slice(&(v.round_ties_even() as i32).to_le_bytes())
            }),
            Dt::F16 => put(vals, 2, dst, |v, b| {
                b.copy_from_slice(&f16::from_f32(v).to_le_bytes())
            }),
            Dt::BF16 => put(vals, 2, dst, |v, b| {
                b.copy_from_slice(&bf16::from_f32(v).to_le_bytes())
            }),
            Dt::F64 => put(vals, 8, dst, |v, b| {
                b.copy_from_slice(&(v as f64).to_le_bytes())
            }),
            Dt::F8E4M3Fnuz => put(vals, 1, dst, |v, b| b[0] = E4M3FNUZ.encode(v)),
            Dt::F8E5M2Fnuz => put(vals, 1, dst, |v, b| b[0] = E5M2FNUZ.encode(v)),
            Dt::F8E4M3 => put(vals, 1, dst, |v, b| b[0] = E4M3.encode(v)),
            Dt::F8E5M2 => put(vals, 1, dst, |v, b| b[0] = E5M2.encode(v)),
            Dt::I8 => put(vals, 1, dst, |v, b| {
                b[0] = v.round_ties_even().clamp(-128.0, 127.0) as i8 as u8
            }),
            Dt::F8E8M0 => put(vals, 1, dst, |v, b| b[0] = to_e8m0(v, true)),
            _ => {
                for (blk, vs) in dst.chunks_mut(33).zip(vals.chunks(32)) {
                    // OCP MX: shared exponent = floor(log2(amax)) - emax of the
                    // element type; elements are then rounded and saturated.
                    let amax = vs.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let emax = match self.mx_elem() {
                        Some(mini) => mini.max().log2().floor() as i32,
                        None => 0, // mxint8 holds [-2, 2) with its 2^-6 step
                    };
                    let se = if amax > 0.0 && amax.is_finite() {
                        (amax.log2().floor() as i32 - emax).clamp(-127, 127)
                    } else {
                        0
                    };
                    blk[0] = (se + 127) as u8;
                    let inv = 2f32.powi(-se);
                    for (b, &v) in blk[1..].iter_mut().zip(vs) {
                        *b = match self.mx_elem() {
                            Some(mini) => mini.encode(v * inv),
                            None => {
                                (v * inv * 64.0).round_ties_even().clamp(-128.0, 127.0) as i8 as u8
                            }
                        };
                    }
                }
            }
        }
    }
}

/// E8M0 (a power of two, 0xff NaN) from the f32 exponent field, rounded
/// up when any mantissa bit is set (ONNX Cast's default `round_mode`).
/// Saturating, 2^127 does not round up into the NaN code; NaN and ±inf
/// give NaN either way. The sign is dropped.
fn to_e8m0(v: f32, saturate: bool) -> u8 {
    let bits = v.to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let up = bits & 0x7f_ffff != 0 && !(saturate && exp == 0xfe);
    (exp + u32::from(up)) as u8
}

fn e8m0(b: u8) -> f32 {
    if b == 255 {
        f32::NAN
    } else {
        2f32.powi(b as i32 - 127)
    }
}

#[inline]
fn each(src: &[u8], w: usize, out: &mut [f32], f: impl Fn(&[u8]) -> f32) {
    for (o, b) in out.iter_mut().zip(src.chunks_exact(w)) {
        *o = f(b);
    }
}

#[inline]
fn put(vals: &[f32], w: usize, dst: &mut [u8], f: impl Fn(f32, &mut [u8])) {
    for (&v, b) in vals.iter().zip(dst.chunks_exact_mut(w)) {
        f(v, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(d: Dt, v: f32) -> f32 {
        let mut b = vec![0u8; d.bytes(1) as usize];
        d.store(&[v], &mut b);
        let mut o = [0f32];
        d.load(&b, &mut o);
        o[0]
    }

    #[test]
    fn fp8_known_values() {
        // e4m3fn: max 448, 1.0 = 0x38, smallest subnormal 2^-9 (OCP FP8 spec).
        assert_eq!(E4M3.max(), 448.0);
        assert_eq!(E4M3.encode(1.0), 0x38);
        assert_eq!(E4M3.decode(0x01), 2f32.powi(-9));
        assert_eq!(round(Dt::F8E4M3, 1000.0), 448.0);
        assert!(E4M3.decode(0x7f).is_nan());
        // e5m2: max 57344, 1.0 = 0x3c, 0x7c = +inf.
        assert_eq!(E5M2.max(), 57344.0);
        assert_eq!(E5M2.encode(1.0), 0x3c);
        assert_eq!(E5M2.decode(0x7c), f32::INFINITY);
        // 1.0625 lies halfway between 1.0 and 1.125 in e4m3: ties to even (1.0).
        assert_eq!(round(Dt::F8E4M3, 1.0625), 1.0);
        assert_eq!(round(Dt::F8E4M3, 1.1875), 1.25);
        assert_eq!(round(Dt::F8E4M3, -3.3), -3.25);
    }

    #[test]
    fn fp8_decode_encode_is_identity_on_all_codes() {
        for c in 0..=255u8 {
            for m in [E4M3, E5M2] {
                let v = m.decode(c);
                if v.is_finite() {
                    let back = m.encode(v);
                    // -0 and +0 both decode to zero; compare values.
                    assert_eq!(m.decode(back), v, "code {c:#x}");
                }
            }
        }
    }

    #[test]
    fn fnuz_known_values() {
        // ONNX float8 fnuz: e4m3fnuz max 240 (bias 8), e5m2fnuz max 57344
        // (bias 16); 0x80 is NaN, so -0 and tiny negatives encode as +0.
        assert_eq!(E4M3FNUZ.max(), 240.0);
        assert_eq!(E5M2FNUZ.max(), 57344.0);
        assert_eq!(E4M3FNUZ.encode(1.0), 0x40);
        assert_eq!(E5M2FNUZ.encode(1.0), 0x40);
        assert!(E4M3FNUZ.decode(0x80).is_nan());
        assert_eq!(E4M3FNUZ.encode(f32::NAN), 0x80);
        assert_eq!(E4M3FNUZ.encode(-0.0), 0);
        assert_eq!(E4M3FNUZ.encode(-1e-6), 0);
        assert_eq!(round(Dt::F8E4M3Fnuz, 1000.0), 240.0);
        assert_eq!(round(Dt::F8E4M3Fnuz, -f32::INFINITY), -240.0);
        assert_eq!(round(Dt::F8E5M2Fnuz, -3.3), -3.5);
    }

    #[test]
    fn packed_sub_byte_round_trip() {
        // i4 packs low nibble first: [-8, 7, -1] = 0x78, 0x0f; u2 [3, 0, 1, 2]
        // = 0b10_01_00_11.
        let mut b = [0u8; 2];
        Dt::I4.store(&[-8.0, 7.9, -1.5], &mut b);
        assert_eq!(b, [0x78, 0x0f]);
        let mut o = [0f32; 3];
        Dt::I4.load(&b, &mut o);
        assert_eq!(o, [-8.0, 7.0, -1.0]);
        let mut b = [0u8; 1];
        Dt::U2.store(&[3.0, 0.0, 1.0, 6.0], &mut b);
        assert_eq!(b, [0b10_01_00_11]);
        // f4e2m1: 0.5 = 0x1; 7 saturates to 6 = 0x7.
        Dt::F4E2M1.store(&[0.5, 7.0], &mut b);
        assert_eq!(b, [0x71]);
        assert_eq!(Dt::I2.bytes(5), 2);
    }

    #[test]
    fn mx_formats() {
        // OCP MX: fp6 e3m2 max 28, e2m3 max 7.5, fp4 e2m1 max 6.
        assert_eq!(E3M2.max(), 28.0);
        assert_eq!(E2M3.max(), 7.5);
        assert_eq!(E2M1.max(), 6.0);
        // A block whose amax is 6 gets scale 2^0 in mxfp4 (emax 2) and the
        // element grid {0, .5, 1, 1.5, 2, 3, 4, 6}: 2.6 rounds to 3, 0.7 to 0.5.
        let mut v = vec![0f32; 32];
        v[0] = 6.0;
        v[1] = 2.6;
        v[2] = 0.7;
        let mut b = vec![0u8; 33];
        Dt::MxFp4.store(&v, &mut b);
        assert_eq!(b[0], 127);
        let mut o = vec![0f32; 32];
        Dt::MxFp4.load(&b, &mut o);
        assert_eq!(&o[..3], &[6.0, 3.0, 0.5]);
        // bf16 through `half`: 1 + 2^-9 rounds to 1 (8 mantissa bits).
        assert_eq!(round(Dt::BF16, 1.0 + 2f32.powi(-9)), 1.0);
    }
}
