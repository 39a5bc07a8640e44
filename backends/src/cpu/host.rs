//! Host steps: nodes with no kernel lowering run on the reference
//! implementation (the interpreter's kernels), on the same buffers. The
//! artifact carries each such node as a one-node IR text graph.

use smelt_ir::data::{Bytes, Payload, TensorData};
use smelt_ir::interp::Tensor;
use smelt_ir::{DType, Graph};
use smelt_runtime::cpu::{HostOps, HostTensor};
use std::collections::HashMap;
use std::sync::Mutex;

/// Runs host steps with smelt's reference interpreter; parsed graphs are
/// cached by their text.
#[derive(Default)]
pub struct IrHost {
    cache: Mutex<HashMap<String, std::sync::Arc<Graph>>>,
}

pub fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>, String> {
    let d = t.to_data().map_err(|e| e.to_string())?;
    match &d.payload {
        Payload::Raw(b) => Ok(b.as_ref().to_vec()),
        Payload::Strings(_) => Err("string tensors have no byte form".into()),
    }
}

pub fn bytes_tensor(dtype: &str, shape: &[u64], bytes: Vec<u8>) -> Result<Tensor, String> {
    let d: DType = dtype
        .parse()
        .map_err(|_| format!("unknown dtype {dtype}"))?;
    let shape: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
    let data = TensorData::new(d, shape, Payload::Raw(Bytes::from_vec(bytes)))
        .map_err(|e| e.to_string())?;
    Tensor::from_data(&data).map_err(|e| e.to_string())
}

impl HostOps for IrHost {
    fn run(
        &self,
        op: &str,
        inputs: &[Option<HostTensor>],
        outputs: &[Option<(&str, &[u64])>],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        let g = {
            let mut c = self.cache.lock().map_err(|_| "host op cache poisoned")?;
            match c.get(op) {
                Some(g) => g.clone(),
                None => {
                    let g = std::sync::Arc::new(
                        smelt_ir::text::parse(op).map_err(|e| format!("host op: {e}"))?,
                    );
                    c.insert(op.to_string(), g.clone());
                    g
                }
            }
        };
        let ins = inputs
            .iter()
            .flatten()
            .map(|t| bytes_tensor(t.dtype, t.shape, t.bytes.to_vec()))
            .collect::<Result<Vec<_>, _>>()?;
        let outs = smelt_ir::interp::run(&g, ins).map_err(|e| e.to_string())?;
        let mut it = outs.into_iter();
        outputs
            .iter()
            .map(|o| match o {
                None => Ok(None),
                Some(_) => {
                    let t = it.next().ok_or("host op produced too few outputs")?;
                    tensor_bytes(&t).map(Some)
                }
            })
            .collect()
    }
}
