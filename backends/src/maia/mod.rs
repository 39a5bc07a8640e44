//! The Maia-style backend: lowers an optimized graph with static shapes to
//! a command stream (`smelt_runtime::maia`), packaged as a `.smx` artifact.
//!
//! Shape of the lowering:
//! - every value lives in HBM (`program.rs`): weights and folded constants
//!   as initialized regions, graph inputs and outputs in their own regions,
//!   everything else in an arena planned by liveness, so buffers are reused;
//! - each op becomes one or more phases; a phase spreads its work over all
//!   tiles of the chip and runs double-buffered pipelines (`pipeline.rs`);
//!   phases are ordered by barriers;
//! - matmuls (`matmul.rs`) are tiled on the tensor unit with sizes chosen
//!   from the accelerator description (`tiling.rs`), with fused epilogues
//!   on the vector unit; elementwise ops (`elementwise.rs`), row ops such
//!   as softmax, norms and reductions (`rows.rs`) run on the vector unit;
//!   data movement (`movement.rs`) is strided DMA; convolutions and pools
//!   (`conv.rs`) become strided-DMA windows plus matmuls or row reductions;
//!   attention (`attention.rs`) becomes matmuls and a softmax; losses
//!   (`loss.rs`) gather at run-time targets with `dma.gather`.
//!
//! Every size (tiles, chunks, buffers) follows from the hardware
//! description; nothing about a particular chip is written here.

mod attention;
mod cast;
mod conv;
mod elementwise;
mod loss;
mod lower;
mod matmul;
mod movement;
mod pipeline;
mod program;
mod rows;
mod scatter;
mod specialize;
mod tiling;
mod unary;

pub use lower::compile;
pub use specialize::compile_for;
pub use tiling::{MatmulTiling, choose_matmul_tiling};

/// How f32 matmuls run on a tensor unit without an f32 rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Round operands to bf16 (one pass; what accelerators do by default).
    #[default]
    Bf16,
    /// f32-accurate: split each operand into bf16 high and low parts and
    /// accumulate three products (hi·hi + hi·lo + lo·hi).
    F32,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bf16" => Ok(Precision::Bf16),
            "f32" => Ok(Precision::F32),
            _ => Err(format!("unknown matmul precision `{s}` (bf16 or f32)")),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub precision: Precision,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The lowering has no way to run this op (or this form of it).
    #[error("unsupported on {target}: {}", unsupported_text(.op, .why))]
    Unsupported {
        target: String,
        op: String,
        why: String,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("target: {0}")]
    Target(String),
    #[error("{0}")]
    Graph(String),
}

/// "op X (why)", or just the reason where no op is to blame (a value's
/// shape or dtype).
fn unsupported_text(op: &str, why: &str) -> String {
    match (op.is_empty(), why.is_empty()) {
        (true, _) => why.to_string(),
        (false, true) => format!("op {op}"),
        (false, false) => format!("op {op} ({why})"),
    }
}

impl Error {
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }
}

/// Chooses the lowering of one node.
/// Whether `n` is rewritten into other ops (`crate::expand`) before
/// lowering: ops the command stream has no lowering of its own for.
fn expands(n: &smelt_ir::Node) -> bool {
    use smelt_ir::Op;
    matches!(
        n.op,
        // Only in training mode or with run-time statistics.
        Op::BatchNormalization
            | Op::Adagrad
            | Op::Adam
            | Op::Momentum
            | Op::Swish
            | Op::SwiGLU
            | Op::Compress
            | Op::Dropout
            | Op::ArrayFeatureExtractor
            | Op::Binarizer
            | Op::QuantizeLinear
            | Op::DequantizeLinear
            | Op::DynamicQuantizeLinear
            | Op::MatMulInteger
            | Op::QLinearMatMul
            | Op::ConvInteger
            | Op::QLinearConv
            // ScatterND's expansion declines single-component indices,
            // which `scatter.rs` lowers natively.
            | Op::ScatterND
            | Op::TensorScatter
            | Op::RNN
            | Op::GRU
            | Op::LSTM
            | Op::RotaryEmbedding
            | Op::CausalConvWithState
            | Op::LinearAttention
            // Only masking variants; the rest declines and stays native.
            | Op::Attention
            | Op::CumSum
            | Op::CumProd
            | Op::Resize
            | Op::GridSample
            | Op::EyeLike
            | Op::CenterCropPad
            | Op::OneHot
            | Op::ReverseSequence
            | Op::GatherND
            | Op::MaxUnpool
            | Op::Col2Im
            | Op::LRN
            | Op::Einsum
            | Op::AffineGrid
            | Op::DFT
    )
}

fn dispatch(lw: &mut lower::Lw, n: &smelt_ir::Node) -> Result<(), Error> {
    use smelt_ir::Op;
    match n.op {
        Op::MatMul | Op::Gemm | Op::FusedMatMul | Op::MatMulNT => matmul::lower(lw, n),
        Op::Softmax
        | Op::LogSoftmax
        | Op::Hardmax
        | Op::LpNormalization
        | Op::ArgMax
        | Op::ArgMin
        | Op::InstanceNormalization
        | Op::GroupNormalization
        | Op::MeanVarianceNormalization
        | Op::LayerNormalization
        | Op::RMSNormalization
        | Op::ReduceSum
        | Op::ReduceMean
        | Op::ReduceMax
        | Op::ReduceMin
        | Op::ReduceL1
        | Op::ReduceL2
        | Op::ReduceSumSquare
        | Op::ReduceProd
        | Op::ReduceLogSum
        | Op::ReduceLogSumExp => rows::lower(lw, n),
        Op::Reshape
        | Op::Flatten
        | Op::Squeeze
        | Op::Unsqueeze
        | Op::Identity
        | Op::Transpose
        | Op::Expand
        | Op::Concat
        | Op::Split
        | Op::Slice
        | Op::Gather
        | Op::GatherElements
        | Op::BitCast
        | Op::Tile
        | Op::DepthToSpace
        | Op::SpaceToDepth
        | Op::Pad
        | Op::Trilu => movement::lower(lw, n),
        Op::Conv
        | Op::FusedConv
        | Op::ConvTranspose
        | Op::MaxPool
        | Op::AveragePool
        | Op::LpPool
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::BatchNormalization => conv::lower(lw, n),
        Op::Attention => attention::lower(lw, n),
        Op::Cast | Op::CastLike => cast::lower(lw, n),
        Op::ScatterElements | Op::ScatterND => scatter::lower(lw, n),
        Op::NegativeLogLikelihoodLoss | Op::SoftmaxCrossEntropyLoss => loss::lower(lw, n),
        _ => elementwise::lower(lw, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_runtime::maia::HwConfig;
    use smelt_runtime::maia::sim::{Options as SimOptions, Sim};

    /// Compiles IR text for tiny-npu and runs it on given f32 inputs.
    fn run(text: &str, inputs: &[(&str, Vec<f32>)], output: &str) -> Vec<f32> {
        let g = smelt_ir::text::parse(text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        let art = smelt_runtime::maia::Artifact::from_bytes(&art.to_bytes()).unwrap();
        let mut sim = Sim::new(&art, SimOptions::default());
        for (name, v) in inputs {
            sim.write_region(0, &format!("in.{name}"), v).unwrap();
        }
        sim.run().unwrap();
        sim.read_region(0, &format!("out.{output}")).unwrap()
    }

    #[test]
    fn broadcast_add_relu_and_row_softmax() {
        // y = relu(x + b) with b broadcast over rows; s = softmax(y) per row.
        let text = r#"graph "g"(%x: f32[4,3], %b: f32[3]) {
  %a: f32[4,3] = Add(%x, %b)
  %y: f32[4,3] = Relu(%a)
  %s: f32[4,3] = Softmax(%y) {axis=-1}
  return %y, %s
}"#;
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 6.0).collect();
        let b = vec![1.0, -1.0, 0.5];
        let want: Vec<f32> = (0..12).map(|i| (x[i] + b[i % 3]).max(0.0)).collect();
        let y = run(text, &[("x", x.clone()), ("b", b.clone())], "y");
        assert_eq!(y, want);
        let s = run(text, &[("x", x), ("b", b)], "s");
        for r in 0..4 {
            let row = &want[3 * r..3 * r + 3];
            let z: f32 = row.iter().map(|v| v.exp()).sum();
            for c in 0..3 {
                let e = row[c].exp() / z;
                assert!((s[3 * r + c] - e).abs() < 1e-6, "{} vs {e}", s[3 * r + c]);
            }
        }
    }

    /// Compiles IR text for tiny-npu and runs it on raw input bytes.
    fn run_bytes(text: &str, inputs: &[(&str, Vec<u8>)], output: &str) -> Vec<u8> {
        let g = smelt_ir::text::parse(text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        let art = smelt_runtime::maia::Artifact::from_bytes(&art.to_bytes()).unwrap();
        let mut sim = Sim::new(&art, SimOptions::default());
        for (name, v) in inputs {
            sim.write_region_bytes(0, &format!("in.{name}"), v).unwrap();
        }
        sim.run().unwrap();
        sim.read_region_bytes(0, &format!("out.{output}")).unwrap()
    }

    fn le64(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn integer_arithmetic_is_exact() {
        // Values beyond f32's 24-bit mantissa: a float path would round them.
        let text = r#"graph "g"(%a: i64[4], %b: i64[4], %c: u8[4], %d: u8[4]) {
  %s: i64[4] = Add(%a, %b)
  %q: i64[4] = Div(%a, %b)
  %l: bool[4] = Less(%a, %b)
  %m: u8[4] = Max(%c, %d)
  %w: u8[4] = Add(%c, %d)
  return %s, %q, %l, %m, %w
}"#;
        let a = [(1i64 << 40) + 1, -7, 9_007_199_254_740_993, i64::MAX];
        let b = [3i64, 2, -1, 1];
        let (c, d) = (vec![200u8, 1, 255, 0], vec![100u8, 2, 255, 0]);
        let ins = [
            ("a", le64(&a)),
            ("b", le64(&b)),
            ("c", c.clone()),
            ("d", d.clone()),
        ];
        // Integer semantics (two's complement, division truncating toward
        // zero, u8 wrapping at 256), written out by hand.
        let s = [(1i64 << 40) + 4, -5, 9_007_199_254_740_992, i64::MIN];
        let q = [366_503_875_925, -3, -9_007_199_254_740_993, i64::MAX];
        assert_eq!(run_bytes(text, &ins, "s"), le64(&s));
        assert_eq!(run_bytes(text, &ins, "q"), le64(&q));
        assert_eq!(run_bytes(text, &ins, "l"), vec![0, 1, 0, 0]);
        assert_eq!(run_bytes(text, &ins, "m"), vec![200, 2, 255, 0]);
        assert_eq!(run_bytes(text, &ins, "w"), vec![44, 3, 254, 0]);
    }

    #[test]
    fn bit_shifts_and_not_follow_integer_semantics() {
        let text = r#"graph "g"(%x: i8[4], %s: i8[4], %u: u8[4]) {
  %r: i8[4] = BitShift(%x, %s) {direction="RIGHT"}
  %l: i8[4] = BitShift(%x, %s) {direction="LEFT"}
  %n: u8[4] = BitwiseNot(%u)
  return %r, %l, %n
}"#;
        let ins = [
            ("x", [-128i8, 64, -1, 5].map(|v| v as u8).to_vec()),
            ("s", vec![9u8, 1, 0, 2]),
            ("u", vec![0u8, 255, 15, 200]),
        ];
        // Arithmetic right shift, sign fill once the shift reaches the
        // width; left shifts wrap at 8 bits; ~x = 255 - x for u8.
        let r = [-1i8, 32, -1, 1].map(|v| v as u8).to_vec();
        let l = [0i8, -128, -1, 20].map(|v| v as u8).to_vec();
        assert_eq!(run_bytes(text, &ins, "r"), r);
        assert_eq!(run_bytes(text, &ins, "l"), l);
        assert_eq!(run_bytes(text, &ins, "n"), vec![255, 0, 240, 55]);
    }

    #[test]
    fn integer_mod_takes_the_sign_the_attribute_says() {
        let text = r#"graph "g"(%x: i32[4], %y: i32[4]) {
  %p: i32[4] = Mod(%x, %y) {fmod=0}
  %c: i32[4] = Mod(%x, %y) {fmod=1}
  return %p, %c
}"#;
        let le = |v: [i32; 4]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let ins = [("x", le([-7, 7, -7, 6])), ("y", le([3, -3, -3, 3]))];
        // Python's % (divisor's sign) and C's fmod (dividend's sign).
        assert_eq!(run_bytes(text, &ins, "p"), le([2, -2, -1, 0]));
        assert_eq!(run_bytes(text, &ins, "c"), le([-1, 1, -1, 0]));
    }

    #[test]
    fn integer_pow_is_exact_and_wraps() {
        let text = r#"graph "g"(%x: i32[5], %e: i32[5], %a: i64[1], %b: i64[1]) {
  %p: i32[5] = Pow(%x, %e)
  %q: i64[1] = Pow(%a, %b)
  return %p, %q
}"#;
        let le = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let ins = [
            ("x", le(&[3, -1, 2, 5, -1])),
            ("e", le(&[4, -3, 31, -1, 0])),
            ("a", le64(&[3])),
            ("b", le64(&[40])),
        ];
        // 3^4; (-1)^-3 = -1; 2^31 wraps to i32::MIN; 5^-1 truncates to 0;
        // x^0 = 1. 3^40 mod 2^64 read as an i64 (Python: 3**40 - 2**64).
        assert_eq!(run_bytes(text, &ins, "p"), le(&[81, -1, i32::MIN, 0, 1]));
        assert_eq!(
            run_bytes(text, &ins, "q"),
            le64(&[-6_289_078_614_652_622_815])
        );
    }

    #[test]
    fn u64_order_is_unsigned() {
        let text = r#"graph "g"(%u: u64[4], %v: u64[4]) {
  %l: bool[4] = Less(%u, %v)
  %g: bool[4] = GreaterOrEqual(%u, %v)
  %m: u64[4] = Max(%u, %v)
  return %l, %g, %m
}"#;
        let le = |v: &[u64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (u, v) = ([1u64 << 63, 1, u64::MAX, 5], [1u64, 1 << 63, 3, 5]);
        let ins = [("u", le(&u)), ("v", le(&v))];
        // Values at and above 2^63 are the largest, not negative.
        assert_eq!(run_bytes(text, &ins, "l"), vec![0, 1, 0, 0]);
        assert_eq!(run_bytes(text, &ins, "g"), vec![1, 0, 1, 1]);
        assert_eq!(
            run_bytes(text, &ins, "m"),
            le(&[1 << 63, 1 << 63, u64::MAX, 5])
        );
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn scatter_elements_writes_and_combines_in_order() {
        let text = r#"graph "g"(%x: f32[3,3], %i: i64[2,3], %u: f32[2,3], %j: i64[2,3]) {
  %y: f32[3,3] = ScatterElements(%x, %i, %u) {axis=0}
  %s: f32[3,3] = ScatterElements(%x, %j, %u) {axis=0, reduction="add"}
  return %y, %s
}"#;
        let u = [1.0, 1.5, 1.25, 2.0, 2.5, 2.25];
        let ins = [
            ("x", f32s(&[0.0; 9])),
            ("i", le64(&[1, 0, 2, 0, 2, 1])),
            ("u", f32s(&u)),
            ("j", le64(&[1, 1, -2, 1, 1, 1])),
        ];
        // ONNX's ScatterElements example (axis 0): y[i[r][c]][c] = u[r][c].
        assert_eq!(
            run_bytes(text, &ins, "y"),
            f32s(&[2.0, 1.5, 0.0, 1.0, 0.0, 2.25, 0.0, 2.5, 1.25])
        );
        // Every update lands on row 1 (-2 counts from 3): summed.
        assert_eq!(
            run_bytes(text, &ins, "s"),
            f32s(&[0.0, 0.0, 0.0, 3.0, 4.0, 3.5, 0.0, 0.0, 0.0])
        );
    }

    #[test]
    fn scatter_nd_with_index_tuples_and_bad_indices() {
        let text = r#"graph "g"(%x: f32[2,2], %i: i64[2,2], %u: f32[2]) {
  %y: f32[2,2] = ScatterND(%x, %i, %u)
  %m: f32[2,2] = ScatterND(%x, %i, %u) {reduction="max"}
  return %y, %m
}"#;
        let ins = |i: &[i64]| {
            [
                ("x", f32s(&[1.0, 2.0, 3.0, 4.0])),
                ("i", le64(i)),
                ("u", f32s(&[9.0, 0.5])),
            ]
        };
        // (-1, 0) is (1, 0), (0, 1) is (0, 1).
        assert_eq!(
            run_bytes(text, &ins(&[-1, 0, 0, 1]), "y"),
            f32s(&[1.0, 0.5, 9.0, 4.0])
        );
        assert_eq!(
            run_bytes(text, &ins(&[-1, 0, 0, 1]), "m"),
            f32s(&[1.0, 2.0, 9.0, 4.0])
        );
        // (0, 2) is out of range even though row-major 0·2 + 2 is not:
        // the scatter stops instead of writing x[1, 0].
        let g = smelt_ir::text::parse(text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        let mut sim = Sim::new(&art, SimOptions::default());
        for (name, v) in ins(&[0, 2, 0, 1]) {
            sim.write_region_bytes(0, &format!("in.{name}"), &v)
                .unwrap();
        }
        let e = sim.run().unwrap_err().to_string();
        assert!(e.contains("dma.scatter index"), "{e}");
    }

    #[test]
    fn nll_loss_gathers_run_time_targets_and_skips_ignored_ones() {
        let text = r#"graph "g"(%x: f32[2,3], %t: i64[2], %w: f32[3]) {
  %m: f32[] = NegativeLogLikelihoodLoss(%x, %t, %w) {reduction="mean", ignore_index=1}
  %n: f32[2] = NegativeLogLikelihoodLoss(%x, %t, %w) {reduction="none", ignore_index=1}
  return %m, %n
}"#;
        let f = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let ins = [
            ("x", f(&[0.5, 0.25, 0.75, 0.5, 0.25, 0.125])),
            ("t", le64(&[2, 1])),
            ("w", f(&[1.0, 2.0, 3.0])),
        ];
        // Sample 0: -x[0, 2]·w[2] = -2.25; sample 1 has the ignored target
        // 1: loss 0, and its weight is left out of the mean's divisor (3).
        assert_eq!(run_bytes(text, &ins, "n"), f(&[-2.25, 0.0]));
        assert_eq!(run_bytes(text, &ins, "m"), f(&[-0.75]));
    }

    /// `%name: f32[shape] = const hex"..."` for the given values.
    fn const_f32(name: &str, shape: &str, v: &[f32]) -> String {
        let hex: String = v
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("  %{name}: f32[{shape}] = const hex\"{hex}\"\n")
    }

    #[test]
    fn sibling_matmuls_on_one_activation_run_as_one_phase() {
        // Q/K/V-like projections of x (with a reshape between them, as
        // attention graphs have): one with a bias, one with a bias and a
        // residual, one with a bias and Relu. Small integers keep every
        // product exact in bf16 operands with f32 sums, so the expected
        // values are plain integer arithmetic.
        let (m, k, n) = (32usize, 48usize, 16usize);
        let w = |s: usize| -> Vec<f32> {
            (0..k * n)
                .map(|i| ((i * 7 + s * 3) % 5) as f32 - 2.0)
                .collect()
        };
        let bias = |s: usize| -> Vec<f32> { (0..n).map(|j| (j + s) as f32 - 8.0).collect() };
        let mut text = format!("graph \"g\"(%x: f32[{m},{k}], %r: f32[{m},{n}]) {{\n");
        for s in 0..3 {
            text += &const_f32(&format!("w{s}"), &format!("{k},{n}"), &w(s));
            text += &const_f32(&format!("b{s}"), &format!("{n}"), &bias(s));
        }
        text += &format!(
            "  %shape: i64[2] = const hex\"{}\"\n",
            [n as i64, m as i64]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        text += &format!(
            "  %q: f32[{m},{n}] = FusedMatMul(%x, %w0, %b0, _)
  %qr: f32[{n},{m}] = Reshape(%q, %shape)
  %k: f32[{m},{n}] = FusedMatMul(%x, %w1, %b1, %r)
  %v: f32[{m},{n}] = FusedMatMul(%x, %w2, %b2, _) {{activation=\"Relu\"}}
  return %qr, %k, %v
}}"
        );
        let g = smelt_ir::text::parse(&text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        // Phases are barrier to barrier on every queue: count those with
        // tensor-unit work.
        let mut phase: std::collections::HashMap<_, u32> = Default::default();
        let mut with_matmul = std::collections::BTreeSet::new();
        for c in &art.commands {
            match c.op {
                smelt_runtime::maia::Op::Barrier { .. } => *phase.entry(c.queue).or_default() += 1,
                smelt_runtime::maia::Op::Matmul { .. } => {
                    with_matmul.insert(phase.get(&c.queue).copied().unwrap_or(0));
                }
                _ => {}
            }
        }
        assert_eq!(with_matmul.len(), 1, "{with_matmul:?}");
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
        let r: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32).collect();
        let ins = [("x", x.clone()), ("r", r.clone())];
        let prod = |s: usize| -> Vec<f32> {
            let (ws, bs) = (w(s), bias(s));
            (0..m * n)
                .map(|o| {
                    let (i, j) = (o / n, o % n);
                    bs[j] + (0..k).map(|l| x[i * k + l] * ws[l * n + j]).sum::<f32>()
                })
                .collect()
        };
        assert_eq!(run(&text, &ins, "qr"), prod(0));
        let want_k: Vec<f32> = prod(1).iter().zip(&r).map(|(a, b)| a + b).collect();
        assert_eq!(run(&text, &ins, "k"), want_k);
        let want_v: Vec<f32> = prod(2).iter().map(|a| a.max(0.0)).collect();
        assert_eq!(run(&text, &ins, "v"), want_v);
    }

    #[test]
    fn matmul_read_only_by_a_matmul_is_stored_in_bf16() {
        // h = x·w0 + b0 holds integers beyond bf16's 8-bit significand; the
        // second matmul takes h in bf16 either way, so y = bf16(h)·w1 with
        // round-to-nearest-even, whether h is stored in f32 or in bf16.
        let (m, k, n) = (16usize, 32usize, 16usize);
        let w0: Vec<f32> = (0..k * n).map(|i| ((i * 7) % 9) as f32).collect();
        let b0: Vec<f32> = (0..n).map(|j| (j * 3) as f32 + 1.0).collect();
        let w1: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 3) as f32 - 1.0).collect();
        let mut text = format!("graph \"g\"(%x: f32[{m},{k}]) {{\n");
        text += &const_f32("w0", &format!("{k},{n}"), &w0);
        text += &const_f32("b0", &format!("{n}"), &b0);
        text += &const_f32("w1", &format!("{n},{n}"), &w1);
        text += &format!(
            "  %h: f32[{m},{n}] = FusedMatMul(%x, %w0, %b0, _)
  %y: f32[{m},{n}] = MatMul(%h, %w1)
  return %y
}}"
        );
        let g = smelt_ir::text::parse(&text).unwrap();
        let art = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap();
        let cvt = art.commands.iter().any(|c| {
            matches!(
                c.op,
                smelt_runtime::maia::Op::Convert {
                    dst_dt: smelt_runtime::maia::Dt::BF16,
                    ..
                }
            )
        });
        assert!(cvt, "h is narrowed in SRAM before its store");
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 3) % 7) as f32).collect();
        // bf16 keeps the top 16 bits of an f32, rounding to nearest even.
        let bf16 = |v: f32| {
            let b = v.to_bits();
            f32::from_bits((b + 0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
        };
        let h: Vec<f32> = (0..m * n)
            .map(|o| {
                let (i, j) = (o / n, o % n);
                b0[j] + (0..k).map(|l| x[i * k + l] * w0[l * n + j]).sum::<f32>()
            })
            .collect();
        assert!(h.iter().any(|&v| bf16(v) != v), "some h rounds in bf16");
        let want: Vec<f32> = (0..m * n)
            .map(|o| {
                let (i, j) = (o / n, o % n);
                (0..n)
                    .map(|l| bf16(h[i * n + l]) * w1[l * n + j])
                    .sum::<f32>()
            })
            .collect();
        assert_eq!(run(&text, &[("x", x)], "y"), want);
    }

    #[test]
    fn unsupported_op_is_named() {
        let g = smelt_ir::text::parse(
            r#"graph "g"(%x: f32[2,2]) {
  %y: f32[] = Det(%x)
  return %y
}"#,
        )
        .unwrap();
        let e = compile(&g, &HwConfig::tiny(), "tiny-npu", &Options::default()).unwrap_err();
        assert!(e.is_unsupported());
        assert_eq!(e.to_string(), "unsupported on tiny-npu: op Det");
    }
}
