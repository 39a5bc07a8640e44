//! Linear quantization as the arithmetic it is defined by: QuantizeLinear
//! as a division, Round, the zero point added and a Clip to the target's
//! range, then a Cast; DequantizeLinear as (x - zero point) · scale; the
//! integer matmuls and convolutions as float MatMul / Conv of the
//! zero-point-shifted operands, which is exact while every partial sum
//! stays below 2^24 (checked from the static shapes: the expansion
//! declines otherwise).
//!
//! Scales and zero points may be graph inputs: per-axis and blocked ones
//! are reshaped (and blocks repeated) so that they broadcast against x.

use super::steps::int_attr;
use super::{Builder, Expansion};
use smelt_ir::semantics::util::dtype_to_onnx;
use smelt_ir::{Attr, DClass, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::QuantizeLinear => Some(quantize),
        Op::DequantizeLinear => Some(dequantize),
        Op::DynamicQuantizeLinear => Some(dynamic),
        Op::MatMulInteger => Some(matmul_integer),
        Op::QLinearMatMul => Some(qlinear_matmul),
        Op::ConvInteger => Some(conv_integer),
        Op::QLinearConv => Some(qlinear_conv),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn cast(b: &mut Builder, v: ValueId, to: DType) -> Result<ValueId, String> {
    if b.dtype(v) == to {
        return Ok(v);
    }
    let code = dtype_to_onnx(to).ok_or_else(|| format!("no ONNX code for {to}"))?;
    b.op(Op::Cast, &[v], &[("to", Attr::Int(code))])
}

fn reshape(b: &mut Builder, v: ValueId, shape: &[usize]) -> Result<ValueId, String> {
    let s = b.const_i64(&[shape.len()], shape.iter().map(|&d| d as i64).collect())?;
    b.op(Op::Reshape, &[v, s], &[])
}

/// The clamp range of an integer quantization target (at most 16 bits).
fn int_range(d: DType) -> Option<(f64, f64)> {
    let bits = d.bits() as i32;
    if bits > 16 {
        return None;
    }
    match d.class() {
        DClass::Signed => Some((-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)),
        DClass::Unsigned => Some((0.0, 2f64.powi(bits) - 1.0)),
        _ => None,
    }
}

/// A scale or zero point `p` (already f32) shaped to broadcast against x
/// of shape `xs`: as it is when it has one value, one value per slice
/// along `axis`, or one per block of `block` elements along it (blocks
/// repeated, the last one cut to the axis' length). None: a shape that
/// fits none of these.
fn spread(
    b: &mut Builder,
    p: ValueId,
    xs: &[usize],
    axis: i64,
    block: i64,
) -> Result<Option<ValueId>, String> {
    let Some(ps) = b.shape(p) else {
        return Ok(None);
    };
    if ps.iter().product::<usize>() == 1 {
        return Ok(Some(p));
    }
    let r = xs.len() as i64;
    let ax = if axis < 0 { axis + r } else { axis };
    if !(0..r).contains(&ax) {
        return Ok(None);
    }
    let ax = ax as usize;
    let dim = xs[ax];
    if block <= 0 {
        if ps != [dim] {
            return Ok(None);
        }
        let mut shape = vec![dim];
        shape.extend(std::iter::repeat_n(1, xs.len() - ax - 1));
        return Ok(Some(reshape(b, p, &shape)?));
    }
    let block = block as usize;
    let pdim = dim.div_ceil(block);
    let fits = ps.len() == xs.len()
        && ps
            .iter()
            .zip(xs)
            .enumerate()
            .all(|(k, (&a, &x))| if k == ax { a == pdim } else { a == x });
    if !fits {
        return Ok(None);
    }
    // [.., pdim, ..] -> [.., pdim, 1, ..] -> [.., pdim, block, ..] ->
    // [.., pdim·block, ..], then the first `dim` along the axis.
    let mut with_one = ps.clone();
    with_one.insert(ax + 1, 1);
    let v = reshape(b, p, &with_one)?;
    let mut wide = ps.clone();
    wide.insert(ax + 1, block);
    let ws = b.const_i64(&[wide.len()], wide.iter().map(|&d| d as i64).collect())?;
    let v = b.op(Op::Expand, &[v, ws], &[])?;
    let mut merged = ps.clone();
    merged[ax] = pdim * block;
    let v = reshape(b, v, &merged)?;
    if pdim * block == dim {
        return Ok(Some(v));
    }
    let starts = b.const_i64(&[1], vec![0])?;
    let ends = b.const_i64(&[1], vec![dim as i64])?;
    let axes = b.const_i64(&[1], vec![ax as i64])?;
    Ok(Some(b.op(Op::Slice, &[v, starts, ends, axes], &[])?))
}

/// The dtype QuantizeLinear divides in: `precision`, else numpy's
/// promotion of x and the scale. None where the vector unit has no exact
/// equivalent (f64).
fn div_dtype(n: &Node, x: DType, s: DType) -> Option<DType> {
    let d = match int_attr(n, "precision", 0) {
        0 if x == DType::F32 || s == DType::F32 => DType::F32,
        0 if x == s => x,
        0 => return None,
        code => smelt_ir::semantics::util::dtype_from_onnx(code)?,
    };
    matches!(d, DType::F32 | DType::F16 | DType::BF16).then_some(d)
}

/// round(q) (+ zero point), clipped to `to`'s range, cast to it. `q` is
/// in its division dtype; the zero point `z`, if any, is f32. The sum is
/// taken in f32, where every integer of ≤ 16 bits is exact.
fn to_int(b: &mut Builder, q: ValueId, z: Option<ValueId>, to: DType) -> Result<ValueId, String> {
    let Some((lo, hi)) = int_range(to) else {
        return Err(format!("no integer range for {to}"));
    };
    let r = b.op(Op::Round, &[q], &[])?;
    let mut r = cast(b, r, DType::F32)?;
    if let Some(z) = z {
        r = b.op(Op::Add, &[r, z], &[])?;
    }
    let lo = b.scalar(DType::F32, lo)?;
    let hi = b.scalar(DType::F32, hi)?;
    let r = b.op(Op::Clip, &[r, lo, hi], &[])?;
    cast(b, r, to)
}

fn quantize(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(s)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(&yv) = n.outputs.first().and_then(|o| o.as_ref()) else {
        return Ok(None);
    };
    let to = b.dtype(yv);
    let Some(xs) = b.shape(x) else {
        return Ok(None);
    };
    let Some(pd) = div_dtype(n, b.dtype(x), b.dtype(s)) else {
        return Ok(None);
    };
    let (axis, block) = (int_attr(n, "axis", 1), int_attr(n, "block_size", 0));
    let s = cast(b, s, pd)?;
    let Some(s) = spread(b, s, &xs, axis, block)? else {
        return Ok(None);
    };
    let xq = cast(b, x, pd)?;
    let q = b.op(Op::Div, &[xq, s], &[])?;
    let zp = match Builder::input(n, 2) {
        Some(z) => {
            let zf = cast(b, z, DType::F32)?;
            match spread(b, zf, &xs, axis, block)? {
                Some(z) => Some(z),
                None => return Ok(None),
            }
        }
        None => None,
    };
    let y = match to {
        d if int_range(d).is_some() => to_int(b, q, zp, d)?,
        // The zero point of fp8 targets is zero by definition.
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => {
            let sat = int_attr(n, "saturate", 1);
            let code = dtype_to_onnx(to).ok_or_else(|| format!("no ONNX code for {to}"))?;
            b.op(
                Op::Cast,
                &[q],
                &[("to", Attr::Int(code)), ("saturate", Attr::Int(sat))],
            )?
        }
        DType::F4E2M1 => {
            let mut v = cast(b, q, DType::F32)?;
            if let Some(z) = zp {
                v = b.op(Op::Add, &[v, z], &[])?;
            }
            cast(b, v, to)?
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![Some(y)]))
}

fn dequantize(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(s)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(&yv) = n.outputs.first().and_then(|o| o.as_ref()) else {
        return Ok(None);
    };
    let to = b.dtype(yv);
    let Some(xs) = b.shape(x) else {
        return Ok(None);
    };
    let xd = b.dtype(x);
    // Integers of ≤ 16 bits and the small floats are exact in f32.
    if !(int_range(xd).is_some() || (xd.is_float() && xd.bits() <= 8)) {
        return Ok(None);
    }
    let (axis, block) = (int_attr(n, "axis", 1), int_attr(n, "block_size", 0));
    let mut v = cast(b, x, DType::F32)?;
    // Float inputs (fp8, fp4) carry no zero point to subtract.
    if let Some(z) = Builder::input(n, 2).filter(|_| !xd.is_float()) {
        let zf = cast(b, z, DType::F32)?;
        let Some(z) = spread(b, zf, &xs, axis, block)? else {
            return Ok(None);
        };
        v = b.op(Op::Sub, &[v, z], &[])?;
    }
    let sf = cast(b, s, DType::F32)?;
    let Some(s) = spread(b, sf, &xs, axis, block)? else {
        return Ok(None);
    };
    let y = b.op(Op::Mul, &[v, s], &[])?;
    Ok(Some(vec![Some(cast(b, y, to)?)]))
}

/// uint8 quantization with the scale and zero point from the data's range
/// (extended to include 0), in f32 step by step as the specification's
/// function body; a constant input (range 0) gets range 1, as the
/// reference does, instead of dividing by zero.
fn dynamic(b: &mut Builder, n: &Node) -> Out {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    if b.dtype(x) != DType::F32 || b.shape(x).is_none() {
        return Ok(None);
    }
    let keep = [("keepdims", Attr::Int(0))];
    let zero = b.scalar(DType::F32, 0.0)?;
    let mx = b.op(Op::ReduceMax, &[x], &keep)?;
    let mx = b.op(Op::Max, &[mx, zero], &[])?;
    let mn = b.op(Op::ReduceMin, &[x], &keep)?;
    let mn = b.op(Op::Min, &[mn, zero], &[])?;
    let range = b.op(Op::Sub, &[mx, mn], &[])?;
    let flat = b.op(Op::Equal, &[range, zero], &[])?;
    let one = b.scalar(DType::F32, 1.0)?;
    let range = b.op(Op::Where, &[flat, one, range], &[])?;
    let q = b.scalar(DType::F32, 255.0)?;
    let scale = b.op(Op::Div, &[range, q], &[])?;
    let zp = b.op(Op::Div, &[mn, scale], &[])?;
    let zp = b.op(Op::Sub, &[zero, zp], &[])?;
    let zp = b.op(Op::Clip, &[zp, zero, q], &[])?;
    let zp = b.op(Op::Round, &[zp], &[])?;
    let xq = b.op(Op::Div, &[x, scale], &[])?;
    let y = to_int(b, xq, Some(zp), DType::U8)?;
    let zq = cast(b, zp, DType::U8)?;
    Ok(Some(vec![Some(y), Some(scale), Some(zq)]))
}

/// The largest |value| of an integer dtype of ≤ 16 bits.
fn magnitude(d: DType) -> Option<f64> {
    int_range(d).map(|(lo, hi)| lo.abs().max(hi))
}

/// Whether sums of `k` products of zero-point-shifted `a` and `b` values
/// are all exact in f32 (and each shifted value in bf16, the tensor
/// unit's operand dtype): |a - za| ≤ 2·max|a|, likewise for b.
fn exact(a: DType, b: DType, k: usize) -> bool {
    let (Some(ma), Some(mb)) = (magnitude(a), magnitude(b)) else {
        return false;
    };
    let (sa, sb) = (
        if a.class() == DClass::Unsigned {
            ma
        } else {
            2.0 * ma
        },
        if b.class() == DClass::Unsigned {
            mb
        } else {
            2.0 * mb
        },
    );
    // bf16 holds integers up to 256 exactly.
    sa <= 256.0 && sb <= 256.0 && sa * sb * k as f64 <= 2f64.powi(24)
}

/// `v` - zero point as f32; `per_row`: a 1-D zero point of A has one value
/// per row (its second-to-last axis).
fn shifted(
    b: &mut Builder,
    v: ValueId,
    z: Option<ValueId>,
    per_row: bool,
) -> Result<Option<ValueId>, String> {
    let vf = cast(b, v, DType::F32)?;
    let Some(z) = z else { return Ok(Some(vf)) };
    let zf = cast(b, z, DType::F32)?;
    let Some(zs) = b.shape(zf) else {
        return Ok(None);
    };
    let zf = if per_row && zs.len() == 1 && zs[0] != 1 {
        reshape(b, zf, &[zs[0], 1])?
    } else {
        zf
    };
    Ok(Some(b.op(Op::Sub, &[vf, zf], &[])?))
}

/// (A - za) · (B - zb) in f32, or None where that would not be exact.
fn int_product(
    b: &mut Builder,
    a: ValueId,
    za: Option<ValueId>,
    bv: ValueId,
    zb: Option<ValueId>,
) -> Result<Option<ValueId>, String> {
    let (Some(ash), Some(_)) = (b.shape(a), b.shape(bv)) else {
        return Ok(None);
    };
    let k = ash.last().copied().unwrap_or(1);
    if !exact(b.dtype(a), b.dtype(bv), k) {
        return Ok(None);
    }
    let (Some(af), Some(bf)) = (shifted(b, a, za, true)?, shifted(b, bv, zb, false)?) else {
        return Ok(None);
    };
    Ok(Some(b.op(Op::MatMul, &[af, bf], &[])?))
}

fn matmul_integer(b: &mut Builder, n: &Node) -> Out {
    let (Some(a), Some(bv)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(p) = int_product(b, a, Builder::input(n, 2), bv, Builder::input(n, 3))? else {
        return Ok(None);
    };
    Ok(Some(vec![Some(cast(b, p, DType::I32)?)]))
}

/// round(acc · s + zy) clipped to zy's dtype, s in f32.
fn requantize(
    b: &mut Builder,
    acc: ValueId,
    s: ValueId,
    zy: ValueId,
) -> Result<Option<ValueId>, String> {
    let to = b.dtype(zy);
    if int_range(to).is_none() {
        return Ok(None);
    }
    let v = b.op(Op::Mul, &[acc, s], &[])?;
    let z = cast(b, zy, DType::F32)?;
    Ok(Some(to_int(b, v, Some(z), to)?))
}

fn qlinear_matmul(b: &mut Builder, n: &Node) -> Out {
    let ins: Vec<Option<ValueId>> = (0..8).map(|i| Builder::input(n, i)).collect();
    let [
        Some(a),
        Some(sa),
        za,
        Some(bv),
        Some(sb),
        zb,
        Some(sy),
        Some(zy),
    ] = ins[..]
    else {
        return Ok(None);
    };
    let Some(acc) = int_product(b, a, za, bv, zb)? else {
        return Ok(None);
    };
    // s = a_scale · b_scale / y_scale; a's per row, b's per column.
    let saf = cast(b, sa, DType::F32)?;
    let saf = match b.shape(saf) {
        Some(s) if s.len() == 1 && s[0] != 1 => reshape(b, saf, &[s[0], 1])?,
        Some(_) => saf,
        None => return Ok(None),
    };
    let sbf = cast(b, sb, DType::F32)?;
    let syf = cast(b, sy, DType::F32)?;
    let s = b.op(Op::Mul, &[saf, sbf], &[])?;
    let s = b.op(Op::Div, &[s, syf], &[])?;
    Ok(requantize(b, acc, s, zy)?.map(|y| vec![Some(y)]))
}

/// Conv's attributes, copied.
fn conv_attrs(n: &Node) -> Vec<(&str, Attr)> {
    [
        "auto_pad",
        "dilations",
        "group",
        "kernel_shape",
        "pads",
        "strides",
    ]
    .into_iter()
    .filter_map(|k| n.attr(k).map(|v| (k, v.clone())))
    .collect()
}

/// Conv of the zero-point-shifted x and w (w's zero point per output
/// channel) in f32, with an optional integer bias; None where not exact.
fn int_conv(
    b: &mut Builder,
    n: &Node,
    x: ValueId,
    zx: Option<ValueId>,
    w: ValueId,
    zw: Option<ValueId>,
    bias: Option<ValueId>,
) -> Result<Option<ValueId>, String> {
    let Some(ws) = b.shape(w) else {
        return Ok(None);
    };
    if ws.len() < 2 || b.shape(x).is_none() {
        return Ok(None);
    }
    let k: usize = ws[1..].iter().product();
    if !exact(b.dtype(x), b.dtype(w), k) {
        return Ok(None);
    }
    let Some(xf) = shifted(b, x, zx, false)? else {
        return Ok(None);
    };
    let mut wf = cast(b, w, DType::F32)?;
    if let Some(z) = zw {
        let zf = cast(b, z, DType::F32)?;
        let zf = match b.shape(zf) {
            Some(s) if s.iter().product::<usize>() == ws[0] && ws[0] != 1 => {
                let mut shape = vec![ws[0]];
                shape.extend(std::iter::repeat_n(1, ws.len() - 1));
                reshape(b, zf, &shape)?
            }
            Some(s) if s.iter().product::<usize>() == 1 => zf,
            _ => return Ok(None),
        };
        wf = b.op(Op::Sub, &[wf, zf], &[])?;
    }
    let mut ins = vec![Some(xf), Some(wf)];
    if let Some(bias) = bias {
        // An i32 bias is exact in f32 only below 2^24 in magnitude: it
        // is a run-time value, so this is the one inexact corner left.
        ins.push(Some(cast(b, bias, DType::F32)?));
    }
    let outs = b.node(Op::Conv, &ins, &conv_attrs(n))?;
    Ok(outs.first().copied())
}

fn conv_integer(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(w)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (zx, zw) = (Builder::input(n, 2), Builder::input(n, 3));
    let Some(y) = int_conv(b, n, x, zx, w, zw, None)? else {
        return Ok(None);
    };
    Ok(Some(vec![Some(cast(b, y, DType::I32)?)]))
}

fn qlinear_conv(b: &mut Builder, n: &Node) -> Out {
    let ins: Vec<Option<ValueId>> = (0..9).map(|i| Builder::input(n, i)).collect();
    let [
        Some(x),
        Some(sx),
        zx,
        Some(w),
        Some(sw),
        zw,
        Some(sy),
        Some(zy),
        bias,
    ] = ins[..]
    else {
        return Ok(None);
    };
    let Some(acc) = int_conv(b, n, x, zx, w, zw, bias)? else {
        return Ok(None);
    };
    let Some(rank) = b.shape(acc).map(|s| s.len()) else {
        return Ok(None);
    };
    // s = x_scale · w_scale[oc] / y_scale, w's per output channel.
    let sxf = cast(b, sx, DType::F32)?;
    let swf = cast(b, sw, DType::F32)?;
    let swf = match b.shape(swf) {
        Some(s) if s.len() == 1 && s[0] != 1 && rank >= 2 => {
            let mut shape = vec![s[0]];
            shape.extend(std::iter::repeat_n(1, rank - 2));
            reshape(b, swf, &shape)?
        }
        Some(_) => swf,
        None => return Ok(None),
    };
    let syf = cast(b, sy, DType::F32)?;
    let s = b.op(Op::Mul, &[sxf, swf], &[])?;
    let s = b.op(Op::Div, &[s, syf], &[])?;
    Ok(requantize(b, acc, s, zy)?.map(|y| vec![Some(y)]))
}

#[cfg(test)]
mod tests {
    use crate::maia::{Options, compile};
    use smelt_runtime::maia::sim::{Options as SimOptions, Sim};
    use smelt_runtime::maia::{Artifact, HwConfig};

    /// Compiles IR text for tiny-npu (the quantization ops expand) and
    /// runs it on raw input bytes.
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

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        // Expected from onnx.reference (ReferenceEvaluator, opset 21):
        // x / s rounds half to even (-0.5 -> 0, 1.25 -> 1, 1.5 -> 2), the
        // zero point is added, then clipped (300 + 128 -> 255, -7 -> 0).
        let text = r#"graph "g"(%x: f32[2,3], %s: f32[3], %z: u8[3]) {
  %y: u8[2,3] = QuantizeLinear(%x, %s, %z) {axis=1}
  return %y
}"#;
        let ins = [
            ("x", f32s(&[-1.0, 0.5, 300.0, 2.5, -3.5, 1.5])),
            ("s", f32s(&[2.0, 0.5, 1.0])),
            ("z", vec![10, 0, 128]),
        ];
        assert_eq!(run(text, &ins, "y"), vec![10, 1, 255, 11, 0, 130]);
        // Blocks of 2 along axis 1 of a 5-wide x (the last block cut to
        // one element), int8 output, no zero point (onnx.reference).
        let text = r#"graph "g"(%x: f32[2,5], %s: f32[2,3]) {
  %y: i8[2,5] = QuantizeLinear(%x, %s) {axis=1, block_size=2, output_dtype=3}
  return %y
}"#;
        let ins = [
            (
                "x",
                f32s(&[1.0, 2.0, 3.0, 4.0, 5.0, -6.0, 7.0, -8.0, 9.0, -10.0]),
            ),
            ("s", f32s(&[2.0, 4.0, 8.0, 0.5, 1.0, 3.0])),
        ];
        let want: Vec<u8> = [0i8, 1, 1, 1, 1, -12, 14, -8, 9, -3]
            .iter()
            .map(|&v| v as u8)
            .collect();
        assert_eq!(run(text, &ins, "y"), want);
    }

    #[test]
    fn matmul_integer_is_exact() {
        // numpy: (A - 12) @ (B - [3, 200]) in int32.
        let text = r#"graph "g"(%a: u8[2,3], %b: u8[3,2], %za: u8[], %zb: u8[2]) {
  %y: i32[2,2] = MatMulInteger(%a, %b, %za, %zb)
  return %y
}"#;
        let ins = [
            ("a", vec![200, 3, 17, 0, 255, 128]),
            ("b", vec![1, 250, 40, 7, 255, 0]),
            ("za", vec![12]),
            ("zb", vec![3, 200]),
        ];
        let want: Vec<u8> = [551i32, 10137, 38247, -70699]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(run(text, &ins, "y"), want);
    }
}
