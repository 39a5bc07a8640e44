//! Test harness for expansions: a one-node graph is expanded, the op must
//! be gone, and the expanded graph must give the expected values both on
//! the interpreter and compiled for a (tiny) Maia-style chip.

use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, Bytes, DType, Graph, Node, Op, Payload, TensorData, TensorType, ValueId};
use smelt_runtime::maia::HwConfig;
use smelt_runtime::maia::sim::{Options as SimOptions, Sim};

/// A graph under construction: run-time inputs, constants, one node.
pub struct One {
    pub g: Graph,
    feeds: Vec<Tensor>,
}

impl One {
    pub fn new() -> One {
        One {
            g: Graph::new("t"),
            feeds: Vec::new(),
        }
    }

    /// A run-time input fed with `t`.
    pub fn input(&mut self, name: &str, t: Tensor) -> ValueId {
        let ty = TensorType::of_static(t.dtype, &t.shape);
        let v = self.g.add_value(name, ty);
        self.g.inputs.push(v);
        self.feeds.push(t);
        v
    }

    pub fn constant(&mut self, name: &str, t: &Tensor) -> ValueId {
        self.g.add_const(name, t.to_data().unwrap())
    }

    /// Adds `op` with these inputs and attributes, its output typed by
    /// the op's rule, and makes that output the graph's.
    pub fn node(&mut self, op: Op, inputs: &[Option<ValueId>], attrs: &[(&str, Attr)]) {
        let mut b = super::Builder::new(std::mem::take(&mut self.g));
        let outs = b.node(op, inputs, attrs).unwrap();
        self.g = b.finish();
        self.g.outputs = outs;
    }

    /// Expands, then checks both the interpreter and the chip against
    /// `want` (flat, in f64) within `tol`.
    pub fn check(&self, want: &[f64], tol: f64) {
        let ops: Vec<Op> = self.g.nodes.iter().map(|n| n.op).collect();
        let e = super::run(&self.g, &|n: &Node| ops.contains(&n.op)).unwrap();
        for n in &e.nodes {
            assert!(!ops.contains(&n.op), "{} was not expanded", n.op);
        }
        let got = smelt_ir::interp::run(&e, self.feeds.clone()).unwrap();
        close(&got[0], want, tol, "interpreter");
        let got = self.on_chip();
        close(&got, want, tol, "chip");
    }

    fn on_chip(&self) -> Tensor {
        let opts = crate::maia::Options::default();
        let art = crate::maia::compile(&self.g, &HwConfig::tiny(), "tiny-npu", &opts).unwrap();
        let art = smelt_runtime::maia::Artifact::from_bytes(&art.to_bytes()).unwrap();
        let mut sim = Sim::new(&art, SimOptions::default());
        for (b, t) in art.io.inputs.iter().zip(&self.feeds) {
            let d = t.to_data().unwrap();
            sim.write_region_bytes(0, &b.region, d.raw().unwrap())
                .unwrap();
        }
        sim.run().unwrap();
        let b = &art.io.outputs[0];
        let bytes = sim.read_region_bytes(0, &b.region).unwrap();
        let dtype: DType = b.dtype.parse().unwrap();
        let shape = b.shape.iter().map(|&d| d as usize).collect();
        let data = TensorData::new(dtype, shape, Payload::Raw(Bytes::from_vec(bytes))).unwrap();
        Tensor::from_data(&data).unwrap()
    }
}

fn close(got: &Tensor, want: &[f64], tol: f64, what: &str) {
    let g = got.to_f64_vec().unwrap();
    assert_eq!(g.len(), want.len(), "{what}: {g:?}");
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol,
            "{what}: element {i}: {a} vs {b} ({g:?})"
        );
    }
}

pub fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
}

pub fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, shape.to_vec(), v.to_vec())
}

pub fn s(x: &str) -> Attr {
    Attr::String(x.to_string())
}
