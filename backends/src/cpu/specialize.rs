//! Shape specialization: a graph whose shapes depend on the *values* of
//! small integer or boolean inputs (axes, sizes, target shapes — what
//! TensorRT calls shape tensors —, Compress's condition, Dropout's
//! training_mode) cannot be compiled for static shapes until those values
//! are known. Given them, the inputs become constants, constant folding
//! makes every shape static, and the artifact records the values as guards
//! that the executor checks on every run.

use super::{CpuError, Report};
use smelt_ir::interp::Tensor;
use smelt_ir::{DType, Graph};
use smelt_runtime::cpu::{Artifact, Guard};

/// Inputs at most this big are shape-like enough to specialize on.
const MAX_ELEMENTS: usize = 64;

fn shape_like(t: &Tensor) -> bool {
    matches!(t.dtype, DType::I64 | DType::I32 | DType::Bool) && t.numel() <= MAX_ELEMENTS
}

/// Compiles `g` for these inputs: plainly when its shapes are static,
/// else specialized on the values of its small integer inputs.
pub fn compile_for(g: &Graph, inputs: &[Tensor]) -> Result<(Artifact, Report), CpuError> {
    let err = match super::compile(g) {
        Ok(r) => return Ok(r),
        Err(e) if e.to_string().contains("needs static shapes") => e,
        Err(e) => return Err(e),
    };
    let Some((folded, guards)) = specialize(g, inputs)? else {
        return Err(err);
    };
    let (mut art, report) = super::compile(&folded).map_err(|_| err)?;
    art.manifest.guards = guards;
    Ok((art, report))
}

/// `g` with its small integer inputs replaced by these values and folded
/// (so that shapes depending on them become static), and the guards that
/// refuse other values; `None` when no input is shape-like.
pub fn specialize(g: &Graph, inputs: &[Tensor]) -> Result<Option<(Graph, Vec<Guard>)>, CpuError> {
    let picked: Vec<usize> = (0..g.inputs.len().min(inputs.len()))
        .filter(|&i| shape_like(&inputs[i]))
        .collect();
    if picked.is_empty() {
        return Ok(None);
    }
    let mut s = g.clone();
    let mut guards = Vec::new();
    for &i in &picked {
        let id = g.inputs[i];
        let data = inputs[i]
            .to_data()
            .map_err(|e| CpuError::Compile(e.to_string()))?;
        let name = format!("{}.specialized", g.value(id).name);
        let c = s.add_const(name, data.clone());
        for n in &mut s.nodes {
            for x in n.inputs.iter_mut().flatten() {
                if *x == id {
                    *x = c;
                }
            }
        }
        guards.push(Guard {
            input: i,
            bytes: super::host::tensor_bytes(&inputs[i]).map_err(CpuError::Compile)?,
        });
    }
    let target =
        smelt_ir::target::Target::builtin("cpu").map_err(|e| CpuError::Compile(e.to_string()))?;
    let opts = smelt_passes::Options {
        passes: vec!["canon".to_string()],
        ..Default::default()
    };
    let (folded, _) = smelt_passes::optimize(&s, &target, &opts)
        .map_err(|e| CpuError::Compile(format!("specializing on input values: {e}")))?;
    Ok(Some((folded, guards)))
}
