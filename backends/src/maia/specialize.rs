//! Compiling for given input values: ops whose pads, axes, slice bounds or
//! shapes come from small integer inputs cannot be laid out in a command
//! stream until those values are known. As on the cpu target
//! (`crate::cpu::specialize`), the values become constants, and the program
//! records them as guards that refuse other values at run time.

use super::{Error, Options};
use smelt_ir::Graph;
use smelt_ir::interp::Tensor;
use smelt_runtime::maia::{Artifact, Guard, HwConfig};

/// Compiles `g` plainly when it can; otherwise, where it has small integer
/// inputs, specialized on their values in `inputs`. The plain compile's
/// error is returned when specializing does not help.
pub fn compile_for(
    g: &Graph,
    inputs: &[Tensor],
    hw: &HwConfig,
    target: &str,
    opts: &Options,
) -> Result<Artifact, Error> {
    let err = match super::compile(g, hw, target, opts) {
        Ok(a) => return Ok(a),
        Err(e) if e.is_unsupported() => e,
        Err(e) => return Err(e),
    };
    let Ok(Some((folded, guards))) = crate::cpu::specialize(g, inputs) else {
        return Err(err);
    };
    let mut art = super::compile(&folded, hw, target, opts).map_err(|_| err)?;
    art.io.guards = guards
        .into_iter()
        .map(|g| Guard {
            input: g.input,
            bytes: g.bytes,
        })
        .collect();
    Ok(art)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::DType;

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
}
