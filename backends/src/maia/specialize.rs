//! Compiling for given input values: a graph whose shapes or resampling
//! plans depend on the *values* of small parameter inputs (target shapes,
//! axes, pads, slice bounds, sizes, Resize's scales and roi: TensorRT's
//! shape tensors) cannot be laid out in a command stream until those values
//! are known. Given them, those inputs become constants, the graph is
//! compiled for exactly these values, and the program records them as
//! guards that refuse other values at run time (as on the cpu target).
//! Data operands are never specialized, so the computation itself is never
//! folded away at compile time.

use super::{Error, Options, compile};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::{Ctx, TypeInput};
use smelt_ir::{Graph, Node, Op, ValueId};
use smelt_runtime::maia::{Artifact, Guard, HwConfig};

/// Inputs at most this big are parameter-like enough to specialize on.
const MAX_ELEMENTS: usize = 64;

/// Compiles `g` plainly when it can; otherwise, where it has parameter
/// inputs, specialized on their values in `inputs`. The plain compile's
/// error is returned when specializing does not help.
pub fn compile_for(
    g: &Graph,
    inputs: &[Tensor],
    hw: &HwConfig,
    target: &str,
    opts: &Options,
) -> Result<Artifact, Error> {
    let err = match compile(g, hw, target, opts) {
        Ok(a) => return Ok(a),
        Err(e) if e.is_unsupported() => e,
        Err(e) => return Err(e),
    };
    let Some((s, picked)) = specialize(g, inputs) else {
        return Err(err);
    };
    let mut art = compile(&s, hw, target, opts).map_err(|_| err)?;
    for i in picked {
        let bytes = inputs[i]
            .to_data()
            .ok()
            .and_then(|d| d.raw().map(<[u8]>::to_vec))
            .ok_or_else(|| Error::Graph(format!("input {i} cannot be guarded")))?;
        art.io.guards.push(Guard { input: i, bytes });
    }
    Ok(art)
}

/// Whether input `i` is a parameter to specialize on: small, and every use
/// of it is a shape operand (its value decides a static dimension of the
/// consumer's outputs: a Reshape target, Range bounds, axes, pads, sizes)
/// or a parameter that is not data (Resize's roi or scales, DFT's length
/// or axis). A data operand is never specialized, so specializing never
/// folds the computation itself away.
fn parameter_like(g: &Graph, inputs: &[Tensor], i: usize) -> bool {
    if inputs[i].numel() > MAX_ELEMENTS {
        return false;
    }
    let id = g.inputs[i];
    let mut used = false;
    for n in &g.nodes {
        for (k, x) in n.inputs.iter().enumerate() {
            if *x != Some(id) {
                continue;
            }
            // Parameters that are not data, though they leave the output
            // shape alone: Resize's roi and scales, DFT's length and axis.
            let parameter = matches!((n.op, k), (Op::Resize | Op::DFT, 1 | 2));
            if !parameter && !decides_shape(g, inputs, n, id) {
                return false;
            }
            used = true;
        }
    }
    used
}

/// Whether knowing `id`'s value makes more of `n`'s output dimensions
/// static (every other small input and constant known either way).
fn decides_shape(g: &Graph, inputs: &[Tensor], n: &Node, id: ValueId) -> bool {
    let Some(imp) = smelt_ir::semantics::lookup(n.op) else {
        return false;
    };
    let value = |v: ValueId| -> Option<Tensor> {
        if let Some(d) = g.consts.get(&v) {
            return Tensor::from_data(d).ok();
        }
        let j = g.inputs.iter().position(|&x| x == v)?;
        inputs.get(j).filter(|t| t.numel() <= MAX_ELEMENTS).cloned()
    };
    let vals: Vec<Option<Tensor>> = n.inputs.iter().map(|v| v.and_then(value)).collect();
    let static_dims = |hide: bool| -> Option<usize> {
        let tys: Vec<Option<TypeInput>> = n
            .inputs
            .iter()
            .zip(&vals)
            .map(|(v, t)| {
                v.map(|v| TypeInput {
                    ty: &g.value(v).ty,
                    value: if hide && v == id { None } else { t.as_ref() },
                })
            })
            .collect();
        let outs = (imp.infer)(&Ctx::new(n), &tys).ok()?;
        Some(
            outs.iter()
                .filter_map(|t| t.shape.dims())
                .flatten()
                .filter(|d| d.as_static().is_some())
                .count(),
        )
    };
    match (static_dims(false), static_dims(true)) {
        (Some(known), Some(hidden)) => known > hidden,
        (Some(_), None) => true,
        _ => false,
    }
}

/// `g` with its parameter inputs' uses replaced by constants of these
/// values (the inputs stay, unused, so the program's interface does not
/// change), and which inputs those are; `None` when no input is
/// parameter-like.
fn specialize(g: &Graph, inputs: &[Tensor]) -> Option<(Graph, Vec<usize>)> {
    let picked: Vec<usize> = (0..g.inputs.len().min(inputs.len()))
        .filter(|&i| parameter_like(g, inputs, i))
        .collect();
    if picked.is_empty() {
        return None;
    }
    let mut s = g.clone();
    for &i in &picked {
        let id = g.inputs[i];
        let data = inputs[i].to_data().ok()?;
        let name = format!("{}.specialized", g.value(id).name);
        let c = s.add_const(name, data);
        for n in &mut s.nodes {
            for x in n.inputs.iter_mut().flatten() {
                if *x == id {
                    *x = c;
                }
            }
        }
    }
    // Shapes the values decide become static in the declared types too
    // (graph outputs are laid out before any node is lowered).
    smelt_ir::infer::infer_graph(&mut s).ok()?;
    Some((s, picked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::attr::Attrs;
    use smelt_ir::{DType, Dim, Shape, TensorType};

    #[test]
    fn run_time_pads_compile_for_their_value_and_guard_it() {
        let g = smelt_ir::text::parse(
            r#"graph "g"(%x: f32[2,3], %pads: i64[4]) {
  %y: f32[?,?] = Pad(%x, %pads)
  return %y
}"#,
        )
        .unwrap();
        let x = Tensor::from_f64(DType::F32, vec![2, 3], vec![1.0; 6]);
        let pads = |v: Vec<i64>| Tensor::from_i64(DType::I64, vec![4], v);
        let opts = Options::default();
        let plain = super::super::compile(&g, &HwConfig::tiny(), "tiny-npu", &opts);
        assert!(plain.is_err_and(|e| e.is_unsupported()));
        let ins = [x.clone(), pads(vec![0, 1, 1, 0])];
        let art = compile_for(&g, &ins, &HwConfig::tiny(), "tiny-npu", &opts).unwrap();
        assert_eq!(art.io.guards.len(), 1);
        assert_eq!(art.io.guards[0].input, 1);
        assert_eq!(art.io.outputs[0].shape, vec![3, 4]);
        let bytes = |t: &Tensor| t.to_data().unwrap().raw().unwrap().to_vec();
        assert!(art.io.check_guards(&[bytes(&x), bytes(&ins[1])]).is_ok());
        let other = art
            .io
            .check_guards(&[bytes(&x), bytes(&pads(vec![1, 0, 0, 1]))])
            .unwrap_err();
        assert!(
            other.contains("input \"pads\"") && other.contains("specialized"),
            "{other}"
        );
        // The guard survives the binary form.
        let back = Artifact::from_bytes(&art.to_bytes()).unwrap();
        assert_eq!(back.io.guards, art.io.guards);
    }

    #[test]
    fn only_shape_operands_are_parameters() {
        // y = Reshape(x, s) + k: s decides y's shape, k is data.
        let mut g = Graph::new("g");
        let x = g.add_value("x", TensorType::of_static(DType::F32, &[2, 3]));
        let s = g.add_value("s", TensorType::of_static(DType::I64, &[1]));
        let k = g.add_value("k", TensorType::of_static(DType::I64, &[6]));
        let y = g.add_value(
            "y",
            TensorType::new(DType::F32, Shape(Some(vec![Dim::Unknown]))),
        );
        g.inputs = vec![x, s, k];
        g.add_node(Node {
            op: Op::Reshape,
            name: "r".into(),
            inputs: vec![Some(x), Some(s)],
            outputs: vec![Some(y)],
            attrs: Attrs::new(),
        });
        let z = g.add_value("z", TensorType::of_static(DType::I64, &[6]));
        g.add_node(Node {
            op: Op::Add,
            name: "a".into(),
            inputs: vec![Some(k), Some(k)],
            outputs: vec![Some(z)],
            attrs: Attrs::new(),
        });
        let feeds = vec![
            Tensor::from_f64(DType::F32, vec![2, 3], vec![0.0; 6]),
            Tensor::from_i64(DType::I64, vec![1], vec![6]),
            Tensor::from_i64(DType::I64, vec![6], vec![1; 6]),
        ];
        assert!(!parameter_like(&g, &feeds, 0));
        assert!(parameter_like(&g, &feeds, 1));
        assert!(!parameter_like(&g, &feeds, 2));
    }
}
