//! Cast and CastLike. Conversions the DMA does exactly are one strided
//! copy: between floats, to and from fp8 (saturating or not, per the
//! `saturate` attribute), to and from e8m0 (rounding up), integers to
//! floats and integers to integers (extension, then wrapping). Floats to
//! integers truncate toward zero on the vector unit first; the store then
//! converts whole numbers exactly.

use super::Error;
use super::elementwise::{self, int_dt};
use super::lower::{Lw, TRef, unsup};
use super::movement::copy_flat;
use super::program::Lane;
use smelt_ir::{Attr, DType, Node};
use smelt_runtime::maia::{Dt, VOp, VSrc};

fn attr_int(n: &Node, name: &str, d: i64) -> i64 {
    match n.attr(name) {
        Some(Attr::Int(v)) => *v,
        _ => d,
    }
}

/// Floats the DMA reads and writes.
fn float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
}

fn f8(d: DType) -> bool {
    matches!(
        d,
        DType::F8E4M3FN | DType::F8E5M2 | DType::F8E4M3FNUZ | DType::F8E5M2FNUZ
    )
}

/// Packed sub-byte types: converted to and from f32/f16/bf16 and i8 in
/// one command, so no piece starts inside a byte.
fn packed(d: DType) -> bool {
    matches!(
        d,
        DType::I4 | DType::U4 | DType::I2 | DType::U2 | DType::F4E2M1
    )
}

/// Integers whose every value f32 holds exactly (the DMA converts through
/// f32), as the DMA reads them.
fn small_int(d: DType) -> bool {
    matches!(
        d,
        DType::Bool | DType::I8 | DType::U8 | DType::I16 | DType::U16
    )
}

/// `t` as the DMA must read or write it for a conversion: integers in
/// their own dtype (u8 and i16 are stored under i8's and f16's).
fn as_int(t: &TRef) -> Option<TRef> {
    let dt = int_dt(t.gdt)?;
    Some(TRef {
        dt,
        mult: 1,
        ..t.clone()
    })
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let y = lw.output(n, 0)?;
    let (xd, yd) = (x.gdt, y.gdt);
    let saturate = attr_int(n, "saturate", 1) != 0;
    let round_up = match n.attr("round_mode") {
        Some(Attr::String(s)) => s == "up",
        _ => true,
    };
    if xd == yd || ((float(xd) || f8(xd) || xd == DType::F8E8M0) && float(yd)) {
        lw.p.phase();
        return copy_flat(&mut lw.p, &x, &y);
    }
    if float(xd) && (f8(yd) || (yd == DType::F8E8M0 && round_up)) {
        lw.p.phase();
        lw.p.saturate = saturate;
        let r = copy_flat(&mut lw.p, &x, &y);
        lw.p.saturate = true;
        return r;
    }
    let to_u8_ok = yd != DType::U8 || matches!(xd, DType::U4 | DType::U2);
    let narrow = |d: DType| {
        matches!(
            d,
            DType::F32 | DType::F16 | DType::BF16 | DType::I8 | DType::U8
        )
    };
    if (packed(xd) && to_u8_ok && (narrow(yd) || packed(yd))) || (narrow(xd) && packed(yd)) {
        let cnt = x.numel();
        let dt = |t: &TRef| if t.gdt == DType::U8 { Dt::U8 } else { t.dt };
        let (sdt, ddt) = (dt(&x), dt(&y));
        let q = lw.p.dma_q(0, Lane::Load);
        lw.p.phase();
        return lw.p.dma(q, x.at(0), y.at(0), sdt, ddt, 1, cnt, cnt, cnt);
    }
    // Integers to floats (i32 rounds to f32 as Cast does).
    let int_src = small_int(xd) || xd == DType::I32;
    if int_src && float(yd) {
        let xi = as_int(&x).ok_or_else(|| unsup(n.op, format!("{xd} to {yd}")))?;
        lw.p.phase();
        return copy_flat(&mut lw.p, &xi, &y);
    }
    // Integers to integers (not to bool, which is x ≠ 0): extend, wrap.
    let int = |d: DType| d.is_int() && d != DType::U64;
    if (int(xd) || xd == DType::Bool) && int(yd) {
        let (Some(xi), Some(yi)) = (as_int(&x), as_int(&y)) else {
            return Err(unsup(n.op, format!("{xd} to {yd}")));
        };
        lw.p.phase();
        return copy_flat(&mut lw.p, &xi, &yi);
    }
    if matches!(xd, DType::F32 | DType::F16 | DType::BF16) && int(yd) {
        return float_to_int(lw, &x, &y);
    }
    Err(unsup(n.op, format!("{xd} to {yd}")))
}

/// trunc(x) = floor(|x|) · (1 - 2·[x < 0]) on the vector unit; the store
/// converts the whole numbers to the integer dtype exactly (out of range
/// saturates: ONNX leaves that undefined; NaN gives 0).
fn float_to_int(lw: &mut Lw, x: &TRef, y: &TRef) -> Result<(), Error> {
    let yi = as_int(y).ok_or_else(|| unsup("Cast", format!("{} to {}", x.gdt, y.gdt)))?;
    elementwise::run(lw, &yi, vec![(x.clone(), None)], true, &|b, d, s, tmp| {
        let a = match s.first() {
            Some(VSrc::Full(a)) => *a,
            _ => 0,
        };
        vec![
            b.v(VOp::Abs, d, a, VSrc::None),
            b.v(VOp::Floor, d, d, VSrc::None),
            b.v(VOp::Lt, tmp, a, VSrc::Imm(0.0)),
            b.v(VOp::Mul, tmp, tmp, VSrc::Imm(-2.0)),
            b.v(VOp::Add, tmp, tmp, VSrc::Imm(1.0)),
            b.v(VOp::Mul, d, d, VSrc::Full(tmp)),
        ]
    })
}

#[cfg(test)]
mod tests {
    use crate::maia::{Options, compile};
    use smelt_runtime::maia::sim::{Options as SimOptions, Sim};
    use smelt_runtime::maia::{Artifact, HwConfig};

    fn run(text: &str, inputs: &[(&str, Vec<u8>)], output: &str) -> Vec<u8> {
        let g = smelt_ir::text::parse(text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        let art = Artifact::from_bytes(&art.to_bytes()).unwrap();
        let mut sim = Sim::new(&art, SimOptions::default());
        for (name, v) in inputs {
            sim.write_region_bytes(0, &format!("in.{name}"), v).unwrap();
        }
        sim.run().unwrap();
        sim.read_region_bytes(0, &format!("out.{output}")).unwrap()
    }

    #[test]
    fn floats_truncate_to_integers_and_u8_widens_unsigned() {
        // Cast truncates toward zero (numpy's astype): -2.7 -> -2, -0.5 ->
        // 0, 0.7 -> 0, 3.9 -> 3, 127.99 -> 127.
        let text = r#"graph "g"(%x: f32[5], %u: u8[3]) {
  %i: i8[5] = Cast(%x) {to=3}
  %l: i64[5] = Cast(%x) {to=7}
  %f: f32[3] = Cast(%u) {to=1}
  %w: i16[3] = Cast(%u) {to=5}
  return %i, %l, %f, %w
}"#;
        let x: Vec<u8> = [-2.7f32, -0.5, 0.7, 3.9, 127.99]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let ins = [("x", x), ("u", vec![200u8, 0, 255])];
        let want = [-2i8, 0, 0, 3, 127];
        assert_eq!(run(text, &ins, "i"), want.map(|v| v as u8).to_vec());
        let l: Vec<u8> = want
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect();
        assert_eq!(run(text, &ins, "l"), l);
        let f: Vec<u8> = [200f32, 0.0, 255.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(run(text, &ins, "f"), f);
        let w: Vec<u8> = [200i16, 0, 255]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(run(text, &ins, "w"), w);
    }
}
