//! Small ops that fit no other family: SwiGLU, TensorScatter (KV-cache
//! writes), CausalConvWithState (streaming depthwise conv), and the ai.onnx.ml table ops Binarizer, ArrayFeatureExtractor
//! and LabelEncoder.

use super::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::interp::tensor::{Storage, round_float};
use crate::{Attr, DClass, DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::SwiGLU => (infer_first, k_swiglu),
        Op::TensorScatter => (infer_first, k_tensor_scatter),
        Op::Binarizer => (infer_first, k_binarizer),
        Op::CausalConvWithState => (infer_causal_conv, k_causal_conv),
        Op::ArrayFeatureExtractor => (infer_afe, k_afe),
        Op::LabelEncoder => (infer_label_encoder, k_label_encoder),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn infer_first(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    Ok(vec![input(ins, 0)?.ty.clone()])
}

fn floats<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [f64]> {
    match &t.data {
        Storage::F(v) => Ok(v),
        _ => op_bail!("{what} must be a float tensor, found {}", t.dtype),
    }
}

/// SwiGLU(a, b) = a * sigmoid(alpha * a) * b on equal shapes. The sigmoid
/// and the gated product are rounded to the dtype before the final
/// multiply, as the reference (and the Swish-based function body) does.
fn k_swiglu(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let a = operand(ins, 0)?;
    let b = operand(ins, 1)?;
    if a.shape != b.shape || a.dtype != b.dtype {
        op_bail!(
            "SwiGLU needs A and B of the same shape and dtype, found {:?} {} and {:?} {}",
            a.shape,
            a.dtype,
            b.shape,
            b.dtype
        );
    }
    let alpha = ctx.float("alpha", 1.0)? as f64;
    let d = a.dtype;
    let (av, bv) = (floats(a, "A")?, floats(b, "B")?);
    let out = av
        .iter()
        .zip(bv)
        .map(|(&x, &y)| {
            let s = round_float(d, 1.0 / (1.0 + (-alpha * x).exp()));
            round_float(d, x * s) * y
        })
        .collect();
    Ok(vec![Tensor::from_f64(d, a.shape.clone(), out)])
}

/// Writes `update` into a copy of `past_cache` along `axis`, starting at
/// `write_indices[batch]` (0 when absent); "circular" wraps around the
/// cache length.
fn k_tensor_scatter(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let past = operand(ins, 0)?;
    let upd = operand(ins, 1)?;
    let r = past.rank();
    if upd.rank() != r || r < 2 || past.dtype != upd.dtype {
        op_bail!("TensorScatter needs cache and update of the same rank (>= 2) and dtype");
    }
    let axis = super::util::norm_axis(ctx.int("axis", -2)?, r)?;
    if axis == 0 {
        op_bail!("TensorScatter axis must not be the batch axis");
    }
    for i in 0..r {
        if (i != axis && past.shape[i] != upd.shape[i])
            || (i == axis && upd.shape[i] > past.shape[i])
        {
            op_bail!(
                "update shape {:?} does not fit cache shape {:?}",
                upd.shape,
                past.shape
            );
        }
    }
    let circular = match ctx.string("mode", "linear")?.as_str() {
        "linear" => false,
        "circular" => true,
        m => op_bail!("unknown mode `{m}`"),
    };
    let batch = past.shape[0];
    let idx = match ins.get(2).copied().flatten() {
        Some(t) => match t.to_i64_vec() {
            Some(v) if v.len() == batch => v,
            _ => op_bail!("write_indices must hold {batch} integers"),
        },
        None => vec![0; batch],
    };
    let max_len = past.shape[axis];
    let seq = upd.shape[axis];
    let outer: usize = past.shape[1..axis].iter().product();
    let inner: usize = past.shape[axis + 1..].iter().product();
    // Flat map over [cache..., update...]: each element reads either its
    // own cache slot or the update element written there.
    let pn = past.numel();
    let mut map: Vec<usize> = (0..pn).collect();
    for (b, &start) in idx.iter().enumerate() {
        for o in 0..outer {
            let row = b * outer + o;
            for s in 0..seq {
                let mut at = start + s as i64;
                if circular && max_len > 0 {
                    at = at.rem_euclid(max_len as i64);
                }
                if at < 0 || at as usize >= max_len {
                    op_bail!("write position {at} is outside the cache length {max_len}");
                }
                let dst = (row * max_len + at as usize) * inner;
                let src = (row * seq + s) * inner;
                for j in 0..inner {
                    map[dst + j] = pn + src + j;
                }
            }
        }
    }
    let both = concat(past, upd)?;
    Ok(vec![both.take(past.shape.clone(), &map)])
}

fn concat(a: &Tensor, b: &Tensor) -> OpResult<Tensor> {
    fn j<T: Clone>(x: &[T], y: &[T]) -> Vec<T> {
        x.iter().chain(y).cloned().collect()
    }
    let data = match (&a.data, &b.data) {
        (Storage::F(x), Storage::F(y)) => Storage::F(j(x, y)),
        (Storage::I(x), Storage::I(y)) => Storage::I(j(x, y)),
        (Storage::U(x), Storage::U(y)) => Storage::U(j(x, y)),
        (Storage::B(x), Storage::B(y)) => Storage::B(j(x, y)),
        (Storage::S(x), Storage::S(y)) => Storage::S(j(x, y)),
        _ => op_bail!("mixed storage for {} and {}", a.dtype, b.dtype),
    };
    Ok(a.with_data(vec![a.numel() + b.numel()], data))
}

fn infer_causal_conv(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let w = input(ins, 1)?.ty;
    let k1 = match w.shape.dims().and_then(|d| d.get(2)) {
        Some(Dim::Static(k)) if *k >= 1 => Dim::Static(k - 1),
        _ => Dim::Unknown,
    };
    let state = match x.shape.dims() {
        Some(d) if d.len() == 3 => Shape(Some(vec![d[0].clone(), d[1].clone(), k1])),
        _ => Shape(Some(vec![Dim::Unknown, Dim::Unknown, k1])),
    };
    Ok(vec![x.clone(), TensorType::new(x.dtype, state)])
}

/// Depthwise causal conv over [past_state ++ input] along time, with an
/// optional SiLU; the present state is the last k-1 steps of that
/// concatenation. The conv result is rounded to the dtype before the
/// activation, as in the reference.
fn k_causal_conv(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let w = operand(ins, 1)?;
    if x.rank() != 3 || w.rank() != 3 {
        op_bail!("CausalConvWithState needs input [B, C, L] and weight [C, 1, k]");
    }
    let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
    let k = w.shape[2];
    if w.shape[0] != c || w.shape[1] != 1 || k == 0 {
        op_bail!("weight shape {:?} does not fit {c} channels", w.shape);
    }
    let silu = match ctx.string("activation", "none")?.as_str() {
        "none" => false,
        "silu" | "swish" => true,
        a => op_bail!("unknown activation `{a}`"),
    };
    let xv = floats(x, "input")?;
    let wv = floats(w, "weight")?;
    let bias = match ins.get(2).copied().flatten() {
        Some(t) if t.numel() == c => floats(t, "bias")?.to_vec(),
        Some(t) => op_bail!("bias has {} entries for {c} channels", t.numel()),
        None => vec![0.0; c],
    };
    let past = match ins.get(3).copied().flatten() {
        Some(t) if t.shape == [b, c, k - 1] => floats(t, "past_state")?.to_vec(),
        Some(t) => op_bail!(
            "past_state shape {:?} should be {:?}",
            t.shape,
            [b, c, k - 1]
        ),
        None => vec![0.0; b * c * (k - 1)],
    };
    let pl = l + k - 1;
    let d = x.dtype;
    let mut out = Vec::with_capacity(b * c * l);
    let mut state = Vec::with_capacity(b * c * (k - 1));
    for bi in 0..b {
        for ch in 0..c {
            let row = bi * c + ch;
            let padded: Vec<f64> = past[row * (k - 1)..(row + 1) * (k - 1)]
                .iter()
                .chain(&xv[row * l..(row + 1) * l])
                .copied()
                .collect();
            for t in 0..l {
                let mut s = bias[ch];
                for j in 0..k {
                    s += wv[ch * k + j] * padded[t + j];
                }
                let s = round_float(d, s);
                out.push(if silu {
                    // The reference applies the sigmoid in f32.
                    let v = s as f32;
                    (v * (1.0 / (1.0 + (-v).exp()))) as f64
                } else {
                    s
                });
            }
            state.extend_from_slice(&padded[pl - (k - 1)..]);
        }
    }
    Ok(vec![
        Tensor::from_f64(d, vec![b, c, l], out),
        Tensor::from_f64(d, vec![b, c, k - 1], state),
    ])
}

fn k_binarizer(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let th = ctx.float("threshold", 0.0)? as f64;
    let v = match x.to_f64_vec() {
        Some(v) if x.dtype.class() != DClass::Bool => v,
        _ => op_bail!("Binarizer needs a numeric input, found {}", x.dtype),
    };
    let out: Vec<f64> = v.iter().map(|&e| if e > th { 1.0 } else { 0.0 }).collect();
    Ok(vec![match x.dtype.class() {
        DClass::Float => Tensor::from_f64(x.dtype, x.shape.clone(), out),
        DClass::Unsigned => Tensor::from_u64(
            x.dtype,
            x.shape.clone(),
            out.iter().map(|&e| e as u64).collect(),
        ),
        _ => Tensor::from_i64(
            x.dtype,
            x.shape.clone(),
            out.iter().map(|&e| e as i64).collect(),
        ),
    }])
}

/// Picks entries of the last axis; a 1-D input acts as one row (the
/// output is then [1, k], as in onnxruntime).
fn infer_afe(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let y = input(ins, 1)?.ty;
    let k = match y.shape.dims() {
        Some(d) => d
            .iter()
            .try_fold(1u64, |n, x| x.as_static().map(|k| n * k))
            .map_or(Dim::Unknown, Dim::Static),
        None => Dim::Unknown,
    };
    let dims = match x.shape.dims() {
        Some(d) if d.len() <= 1 => vec![Dim::Static(1), k],
        Some(d) => {
            let mut v = d[..d.len() - 1].to_vec();
            v.push(k);
            v
        }
        None => return Ok(vec![TensorType::new(x.dtype, Shape::unknown())]),
    };
    Ok(vec![TensorType::new(x.dtype, Shape(Some(dims)))])
}

fn k_afe(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let y = operand(ins, 1)?;
    let Some(ix) = y.to_i64_vec() else {
        op_bail!("indices must be integers");
    };
    if x.rank() == 0 {
        op_bail!("ArrayFeatureExtractor needs rank >= 1");
    }
    let last = x.shape[x.rank() - 1];
    let rows = x.numel() / last.max(1);
    let mut cols = Vec::with_capacity(ix.len());
    for &i in &ix {
        if i < 0 || i as usize >= last {
            op_bail!("index {i} is out of range for a last dim of {last}");
        }
        cols.push(i as usize);
    }
    let mut map = Vec::with_capacity(rows * cols.len());
    for r in 0..rows {
        map.extend(cols.iter().map(|c| r * last + c));
    }
    let shape = if x.rank() == 1 {
        vec![1, cols.len()]
    } else {
        let mut s = x.shape[..x.rank() - 1].to_vec();
        s.push(cols.len());
        s
    };
    Ok(vec![x.take(shape, &map)])
}

/// A LabelEncoder key or value: compared by value (floats by bit pattern
/// after rounding to f32, so -0.0 and NaN keys are distinct entries).
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    F(f64),
    I(i64),
    S(String),
}

/// The keys (or values) of a LabelEncoder from whichever attribute holds
/// them, with the dtype they stand for.
fn table(ctx: &Ctx, which: &str) -> OpResult<(DType, Vec<Cell>)> {
    if let Some(v) = ctx.floats(&format!("{which}_floats"))? {
        return Ok((
            DType::F32,
            v.into_iter().map(|x| Cell::F(x as f64)).collect(),
        ));
    }
    if let Some(v) = ctx.ints(&format!("{which}_int64s"))? {
        return Ok((DType::I64, v.into_iter().map(Cell::I).collect()));
    }
    match ctx.attr(&format!("{which}_strings")) {
        Some(Attr::Strings(v)) => {
            return Ok((DType::String, v.iter().cloned().map(Cell::S).collect()));
        }
        Some(Attr::String(s)) => return Ok((DType::String, vec![Cell::S(s.clone())])),
        _ => {}
    }
    if let Some(Attr::Tensor(t)) = ctx.attr(&format!("{which}_tensor")) {
        let t = match Tensor::from_data(t) {
            Ok(t) => t,
            Err(e) => op_bail!("{which}_tensor: {e}"),
        };
        return Ok((t.dtype, cells(&t)));
    }
    op_bail!("LabelEncoder has no {which} attribute")
}

fn cells(t: &Tensor) -> Vec<Cell> {
    match &t.data {
        Storage::F(v) => v.iter().map(|&x| Cell::F(x)).collect(),
        Storage::I(v) => v.iter().map(|&x| Cell::I(x)).collect(),
        Storage::U(v) => v.iter().map(|&x| Cell::I(x as i64)).collect(),
        Storage::B(v) => v.iter().map(|&x| Cell::I(i64::from(x))).collect(),
        Storage::S(v) => v.iter().cloned().map(Cell::S).collect(),
    }
}

fn default_value(ctx: &Ctx, dtype: DType) -> OpResult<Cell> {
    if let Some(Attr::Tensor(t)) = ctx.attr("default_tensor") {
        let t = match Tensor::from_data(t) {
            Ok(t) => t,
            Err(e) => op_bail!("default_tensor: {e}"),
        };
        if let Some(c) = cells(&t).into_iter().next() {
            return Ok(c);
        }
    }
    Ok(match dtype.class() {
        DClass::String => Cell::S(ctx.string("default_string", "_Unused")?),
        DClass::Float => Cell::F(ctx.float("default_float", -0.0)? as f64),
        _ => Cell::I(ctx.int("default_int64", -1)?),
    })
}

fn infer_label_encoder(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let (vt, _) = table(ctx, "values")?;
    Ok(vec![TensorType::new(vt, x.shape.clone())])
}

fn same_key(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::F(x), Cell::F(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Cell::F(x), Cell::I(y)) | (Cell::I(y), Cell::F(x)) => *x == *y as f64,
        _ => a == b,
    }
}

fn k_label_encoder(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let (_, keys) = table(ctx, "keys")?;
    let (vt, vals) = table(ctx, "values")?;
    if keys.len() != vals.len() {
        op_bail!(
            "LabelEncoder has {} keys but {} values",
            keys.len(),
            vals.len()
        );
    }
    let dflt = default_value(ctx, vt)?;
    let out: Vec<Cell> = cells(x)
        .iter()
        .map(|c| {
            keys.iter()
                .position(|k| same_key(k, c))
                .map_or_else(|| dflt.clone(), |i| vals[i].clone())
        })
        .collect();
    let shape = x.shape.clone();
    Ok(vec![match vt.class() {
        DClass::String => Tensor {
            dtype: vt,
            shape,
            data: Storage::S(
                out.into_iter()
                    .map(|c| match c {
                        Cell::S(s) => s,
                        Cell::F(f) => f.to_string(),
                        Cell::I(i) => i.to_string(),
                    })
                    .collect(),
            ),
        },
        DClass::Float => Tensor::from_f64(
            vt,
            shape,
            out.into_iter()
                .map(|c| match c {
                    Cell::F(f) => f,
                    Cell::I(i) => i as f64,
                    Cell::S(_) => f64::NAN,
                })
                .collect(),
        ),
        DClass::Signed | DClass::Unsigned | DClass::Bool => {
            let v: Vec<i64> = out
                .into_iter()
                .map(|c| match c {
                    Cell::I(i) => i,
                    Cell::F(f) => f as i64,
                    Cell::S(_) => 0,
                })
                .collect();
            match vt.class() {
                DClass::Signed => Tensor::from_i64(vt, shape, v),
                DClass::Unsigned => {
                    Tensor::from_u64(vt, shape, v.iter().map(|&i| i as u64).collect())
                }
                _ => Tensor::from_bool(shape, v.iter().map(|&i| i != 0).collect()),
            }
        }
        DClass::Block => op_bail!("LabelEncoder values of dtype {vt} are not supported"),
    }])
}

#[cfg(test)]
mod tests {
    use crate::interp::Tensor;
    use crate::interp::tensor::Storage;
    use crate::semantics::nn::testutil::{assert_close, f32t, run};
    use crate::{Attr, DType, Op};

    #[test]
    fn swiglu_and_binarizer() {
        // a * sigmoid(a) * b at a=1, b=2: 2 / (1 + e^-1) = 1.4621171572600098
        let a = f32t(&[2], &[1.0, 0.0]);
        let b = f32t(&[2], &[2.0, 5.0]);
        let y = run(Op::SwiGLU, &[], &[Some(&a), Some(&b)]).unwrap();
        assert_close(&y[0], &[1.4621171572600098, 0.0]);
        let x = f32t(&[3], &[0.5, 1.0, 1.5]);
        let y = run(
            Op::Binarizer,
            &[("threshold", Attr::Float(1.0))],
            &[Some(&x)],
        )
        .unwrap();
        assert_close(&y[0], &[0., 0., 1.]);
    }

    #[test]
    fn causal_conv_by_hand() {
        // k=2, w=[1, 2], past=[3], input=[1, 4]: padded [3, 1, 4],
        // out = [3 + 2, 1 + 8] = [5, 9], state = [4].
        let x = f32t(&[1, 1, 2], &[1., 4.]);
        let w = f32t(&[1, 1, 2], &[1., 2.]);
        let p = f32t(&[1, 1, 1], &[3.]);
        let y = run(
            Op::CausalConvWithState,
            &[],
            &[Some(&x), Some(&w), None, Some(&p)],
        )
        .unwrap();
        assert_close(&y[0], &[5., 9.]);
        assert_close(&y[1], &[4.]);
    }

    #[test]
    fn tensor_scatter_linear_and_circular() {
        // Cache [1, 3, 1] = [0,0,0]; write [7, 8] at index 2 circularly → [8,0,7].
        let c = f32t(&[1, 3, 1], &[0.0; 3]);
        let u = f32t(&[1, 2, 1], &[7., 8.]);
        let w = Tensor::from_i64(DType::I64, vec![1], vec![2]);
        let y = run(
            Op::TensorScatter,
            &[("mode", Attr::String("circular".into()))],
            &[Some(&c), Some(&u), Some(&w)],
        )
        .unwrap();
        assert_close(&y[0], &[8., 0., 7.]);
        // Linear mode refuses to write past the end.
        assert!(run(Op::TensorScatter, &[], &[Some(&c), Some(&u), Some(&w)]).is_err());
        let w = Tensor::from_i64(DType::I64, vec![1], vec![1]);
        let y = run(Op::TensorScatter, &[], &[Some(&c), Some(&u), Some(&w)]).unwrap();
        assert_close(&y[0], &[0., 7., 8.]);
    }

    #[test]
    fn label_encoder_and_feature_extractor() {
        let x = Tensor {
            dtype: DType::String,
            shape: vec![3],
            data: Storage::S(vec!["b".into(), "z".into(), "a".into()]),
        };
        let y = run(
            Op::LabelEncoder,
            &[
                ("keys_strings", Attr::Strings(vec!["a".into(), "b".into()])),
                ("values_int64s", Attr::Ints(vec![10, 20])),
            ],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec().unwrap(), vec![20, -1, 10]);
        let x = f32t(&[2, 3], &[0., 1., 2., 3., 4., 5.]);
        let i = Tensor::from_i64(DType::I64, vec![2], vec![2, 0]);
        let y = run(Op::ArrayFeatureExtractor, &[], &[Some(&x), Some(&i)]).unwrap();
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_close(&y[0], &[2., 0., 5., 3.]);
    }
}
