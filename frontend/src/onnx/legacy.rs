//! Rewrites of older opset forms into the IR's ops, which have the newest
//! ONNX semantics: attributes that later became inputs, renamed or removed
//! ops, and the 2-D coercion of the old Softmax family.

use super::{ImportError, Importer, Src};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, Attrs, DType, Op, ValueId};

/// The IR op an ONNX node becomes (before its helper nodes, if any).
pub(crate) fn target_op(src: &Src) -> Option<Op> {
    match (src.domain.as_str(), src.op_type.as_str()) {
        ("ai.onnx", "Upsample") => Some(Op::Resize),
        ("ai.onnx", "Scatter") => Some(Op::ScatterElements),
        (d, t) => Op::from_onnx(d, t),
    }
}

const REDUCE_18: &[&str] = &[
    "ReduceMax",
    "ReduceMin",
    "ReduceMean",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

fn take_ints(attrs: &mut Attrs, name: &str) -> Option<Vec<i64>> {
    match attrs.remove(name)? {
        Attr::Ints(v) => Some(v),
        Attr::Int(i) => Some(vec![i]),
        other => {
            // Leave a mistyped attribute for the op to reject.
            attrs.insert(name.to_string(), other);
            None
        }
    }
}

fn take_float(attrs: &mut Attrs, name: &str) -> Option<f64> {
    match attrs.remove(name)? {
        Attr::Float(f) => Some(f as f64),
        Attr::Int(i) => Some(i as f64),
        other => {
            attrs.insert(name.to_string(), other);
            None
        }
    }
}

/// Sets input `i`, padding with absent inputs.
fn set_input(inputs: &mut Vec<Option<ValueId>>, i: usize, v: Option<ValueId>) {
    if inputs.len() <= i {
        inputs.resize(i + 1, None);
    }
    inputs[i] = v;
}

/// Drops trailing absent inputs so ops see the shortest form.
fn trim(inputs: &mut Vec<Option<ValueId>>) {
    while inputs.last().is_some_and(Option::is_none) {
        inputs.pop();
    }
}

fn scalar_of(dtype: DType, x: f64) -> Tensor {
    match dtype.class() {
        smelt_ir::DClass::Signed => Tensor::from_i64(dtype, vec![], vec![x as i64]),
        smelt_ir::DClass::Unsigned => Tensor::from_u64(dtype, vec![], vec![x as u64]),
        smelt_ir::DClass::Bool => Tensor::from_bool(vec![], vec![x != 0.0]),
        _ => Tensor::from_f64(dtype, vec![], vec![x]),
    }
}

pub(crate) fn lower(
    im: &mut Importer,
    src: &Src,
    mut inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<String>>,
    mut attrs: Attrs,
) -> Result<(), ImportError> {
    let op = target_op(src).ok_or_else(|| src.unsupported())?;
    let v = src.opset;
    let onnx = src.domain == "ai.onnx";
    let t = src.op_type.as_str();
    let x_dtype = |im: &Importer, inputs: &[Option<ValueId>]| {
        inputs
            .first()
            .copied()
            .flatten()
            .map(|x| im.value_type(x).dtype)
    };
    if onnx {
        match t {
            "Reshape" if v < 5 => {
                if let Some(shape) = take_ints(&mut attrs, "shape") {
                    let c = im.const_i64s(src, "shape", shape)?;
                    set_input(&mut inputs, 1, Some(c));
                }
                attrs.remove("consumed_inputs");
            }
            "Squeeze" | "Unsqueeze" if v < 13 => {
                if let Some(axes) = take_ints(&mut attrs, "axes") {
                    let c = im.const_i64s(src, "axes", axes)?;
                    set_input(&mut inputs, 1, Some(c));
                }
            }
            "ReduceSum" if v < 13 => axes_to_input(im, src, &mut inputs, &mut attrs)?,
            _ if v < 18 && REDUCE_18.contains(&t) => {
                axes_to_input(im, src, &mut inputs, &mut attrs)?
            }
            "Split" => {
                if v < 13
                    && let Some(split) = take_ints(&mut attrs, "split")
                {
                    let c = im.const_i64s(src, "split", split)?;
                    set_input(&mut inputs, 1, Some(c));
                }
                // Before opset 18 no `split` meant equal parts, one per output;
                // since then that is spelled with `num_outputs`.
                if v < 18 && inputs.get(1).copied().flatten().is_none() {
                    attrs.insert("num_outputs".into(), Attr::Int(outputs.len() as i64));
                }
            }
            "Slice" if v < 10 => {
                let starts = take_ints(&mut attrs, "starts").unwrap_or_default();
                let ends = take_ints(&mut attrs, "ends").unwrap_or_default();
                let axes = take_ints(&mut attrs, "axes");
                let s = im.const_i64s(src, "starts", starts)?;
                let e = im.const_i64s(src, "ends", ends)?;
                set_input(&mut inputs, 1, Some(s));
                set_input(&mut inputs, 2, Some(e));
                if let Some(axes) = axes {
                    let a = im.const_i64s(src, "axes", axes)?;
                    set_input(&mut inputs, 3, Some(a));
                }
            }
            "Pad" if v < 11 => {
                let pads = take_ints(&mut attrs, "pads")
                    .or_else(|| take_ints(&mut attrs, "paddings"))
                    .unwrap_or_default();
                let p = im.const_i64s(src, "pads", pads)?;
                set_input(&mut inputs, 1, Some(p));
                let value = take_float(&mut attrs, "value").unwrap_or(0.0);
                if value != 0.0
                    && let Some(d) = x_dtype(im, &inputs)
                {
                    let c = im.const_tensor(src, "value", scalar_of(d, value))?;
                    set_input(&mut inputs, 2, Some(c));
                }
            }
            "Clip" if v < 11 => {
                let d = x_dtype(im, &inputs).unwrap_or(DType::F32);
                for (i, name) in [(1, "min"), (2, "max")] {
                    if let Some(x) = take_float(&mut attrs, name) {
                        let c = im.const_tensor(src, name, scalar_of(d, x))?;
                        set_input(&mut inputs, i, Some(c));
                    }
                }
            }
            "Dropout" if v < 12 => {
                attrs.remove("is_test");
                if let Some(r) = take_float(&mut attrs, "ratio") {
                    let c = im.const_tensor(src, "ratio", Tensor::scalar_f32(r as f32))?;
                    set_input(&mut inputs, 1, Some(c));
                }
            }
            "TopK" if v < 10 => {
                if let Some(k) = take_ints(&mut attrs, "k") {
                    let c = im.const_i64s(src, "k", k)?;
                    set_input(&mut inputs, 1, Some(c));
                }
            }
            "Upsample" => {
                if v < 9
                    && let Some(Attr::Floats(s)) = attrs.remove("scales")
                {
                    let n = s.len();
                    let t = Tensor::from_f64(
                        DType::F32,
                        vec![n],
                        s.iter().map(|&x| x as f64).collect(),
                    );
                    let c = im.const_tensor(src, "scales", t)?;
                    set_input(&mut inputs, 1, Some(c));
                }
                resize_from_10(&mut inputs, &mut attrs);
            }
            "Resize" if v < 11 => resize_from_10(&mut inputs, &mut attrs),
            "Softmax" | "LogSoftmax" | "Hardmax" if v < 13 => {
                return softmax_2d(im, src, op, inputs, outputs, attrs);
            }
            "DFT" if v < 20 => {
                // DFT-17's `axis` attribute (default 1) became input 2.
                let axis = match attrs.remove("axis") {
                    None => 1,
                    Some(Attr::Int(a)) => a,
                    Some(a) => {
                        return Err(src.err(format!(
                            "attribute `axis` should be an int, found {}",
                            a.kind()
                        )));
                    }
                };
                let c = im.const_tensor(src, "axis", Tensor::scalar_i64(axis))?;
                set_input(&mut inputs, 2, Some(c));
            }
            "BatchNormalization" if v < 9 => {
                attrs.remove("spatial");
                attrs.remove("is_test");
            }
            _ => {}
        }
    }
    trim(&mut inputs);
    im.emit(src, op, inputs, outputs, attrs)?;
    Ok(())
}

fn axes_to_input(
    im: &mut Importer,
    src: &Src,
    inputs: &mut Vec<Option<ValueId>>,
    attrs: &mut Attrs,
) -> Result<(), ImportError> {
    if let Some(axes) = take_ints(attrs, "axes") {
        let c = im.const_i64s(src, "axes", axes)?;
        set_input(inputs, 1, Some(c));
    }
    Ok(())
}

/// Resize-10 and Upsample take (X, scales) and sample with asymmetric
/// coordinates (nearest: floor, which repeats elements for integer scales).
fn resize_from_10(inputs: &mut Vec<Option<ValueId>>, attrs: &mut Attrs) {
    let scales = inputs.get(1).copied().flatten();
    inputs.truncate(1);
    set_input(inputs, 2, scales);
    if let Some(Attr::String(m)) = attrs.get_mut("mode")
        && m == "bilinear"
    {
        *m = "linear".into();
    }
    attrs.insert(
        "coordinate_transformation_mode".into(),
        Attr::String("asymmetric".into()),
    );
    attrs.insert("nearest_mode".into(), Attr::String("floor".into()));
}

/// Before opset 13 the Softmax family coerced its input to 2-D at `axis`
/// (default 1) and normalized over the whole trailing block.
fn softmax_2d(
    im: &mut Importer,
    src: &Src,
    op: Op,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<String>>,
    mut attrs: Attrs,
) -> Result<(), ImportError> {
    let axis = match attrs.remove("axis") {
        None => 1,
        Some(Attr::Int(a)) => a,
        Some(a) => {
            return Err(src.err(format!(
                "attribute `axis` should be an int, found {}",
                a.kind()
            )));
        }
    };
    let Some(x) = inputs.first().copied().flatten() else {
        return Err(src.err("missing required input 0"));
    };
    let rank = im.value_type(x).shape.rank();
    if let Some(r) = rank {
        let a = if axis < 0 { axis + r as i64 } else { axis };
        // Coercing at the last axis changes nothing.
        if r > 0 && a == r as i64 - 1 {
            attrs.insert("axis".into(), Attr::Int(-1));
            im.emit(src, op, inputs, outputs, attrs)?;
            return Ok(());
        }
    }
    let shape_name = im.fresh("shape");
    let shape = im.emit(
        src,
        Op::Shape,
        vec![Some(x)],
        vec![Some(shape_name)],
        Attrs::new(),
    )?;
    let flat_name = im.fresh("flat");
    let mut fa = Attrs::new();
    fa.insert("axis".into(), Attr::Int(axis));
    let flat = im.emit(src, Op::Flatten, vec![Some(x)], vec![Some(flat_name)], fa)?;
    let y2_name = im.fresh("y2d");
    attrs.insert("axis".into(), Attr::Int(-1));
    let y2 = im.emit(src, op, vec![flat[0]], vec![Some(y2_name)], attrs)?;
    let out = outputs.into_iter().next().flatten();
    let Some(out) = out else { return Ok(()) };
    im.emit(
        src,
        Op::Reshape,
        vec![y2[0], shape[0]],
        vec![Some(out)],
        Attrs::new(),
    )?;
    Ok(())
}
