//! Random generators: RandomUniform(Like), RandomNormal(Like), Bernoulli.
//!
//! ONNX leaves the generator unspecified (the backend tests' expected values
//! come from numpy's global RNG and no implementation can reproduce them), so
//! the interpreter only promises the right dtype, shape and distribution, and
//! is deterministic: the stream is SplitMix64 (Steele, Lea & Flood 2014)
//! seeded with the `seed` attribute's integer part (0 when absent). Uniforms
//! take the top 53 bits of each draw as a fraction in [0, 1); normals use the
//! Box-Muller transform on two uniforms.

use crate::interp::Tensor;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DClass, DType, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    use Op::*;
    let (infer, kernel): (crate::semantics::InferFn, crate::semantics::KernelFn) = match op {
        RandomUniform | RandomNormal => (infer_random, k_random),
        RandomUniformLike | RandomNormalLike | Bernoulli => (infer_like, k_like),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn from_ctx(ctx: &Ctx) -> OpResult<Self> {
        let seed = ctx.float("seed", 0.0)?;
        let s = if seed.is_finite() { seed as i64 } else { 0 };
        Ok(SplitMix64(s as u64))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the log is finite.
        let (u1, u2) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn float_dtype(ctx: &Ctx, default: DType) -> OpResult<DType> {
    let d = ctx.dtype("dtype")?.unwrap_or(default);
    if d.class() != DClass::Float {
        op_bail!("{} produces floats, not {d}", ctx.node.op);
    }
    Ok(d)
}

fn shape_attr(ctx: &Ctx) -> OpResult<Vec<usize>> {
    let Some(s) = ctx.ints("shape")? else {
        op_bail!("{} needs a `shape` attribute", ctx.node.op);
    };
    s.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dim {d} in `shape`").into()))
        .collect()
}

/// The output dtype of the *Like ops and Bernoulli: `dtype` or the input's.
fn like_dtype(ctx: &Ctx, x: DType) -> OpResult<DType> {
    let d = ctx.dtype("dtype")?.unwrap_or(x);
    let ok = match ctx.node.op {
        // Bernoulli's outputs are 0/1 and may be any numeric or bool type.
        Op::Bernoulli => !matches!(d.class(), DClass::String | DClass::Block),
        _ => d.class() == DClass::Float,
    };
    if !ok {
        op_bail!("{} cannot produce {d}", ctx.node.op);
    }
    Ok(d)
}

fn infer_random(ctx: &Ctx, _: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    Ok(vec![TensorType::of_static(
        float_dtype(ctx, DType::F32)?,
        &shape_attr(ctx)?,
    )])
}

fn infer_like(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    if ctx.node.op == Op::Bernoulli && x.dtype.class() != DClass::Float {
        op_bail!("Bernoulli needs float probabilities, found {}", x.dtype);
    }
    let shape: Shape = x.shape.clone();
    Ok(vec![TensorType::new(like_dtype(ctx, x.dtype)?, shape)])
}

fn draw(ctx: &Ctx, n: usize) -> OpResult<Vec<f64>> {
    let mut rng = SplitMix64::from_ctx(ctx)?;
    Ok(match ctx.node.op {
        Op::RandomUniform | Op::RandomUniformLike => {
            let (lo, hi) = (
                ctx.float("low", 0.0)? as f64,
                ctx.float("high", 1.0)? as f64,
            );
            (0..n).map(|_| lo + (hi - lo) * rng.uniform()).collect()
        }
        _ => {
            let (m, s) = (
                ctx.float("mean", 0.0)? as f64,
                ctx.float("scale", 1.0)? as f64,
            );
            (0..n).map(|_| m + s * rng.normal()).collect()
        }
    })
}

fn k_random(ctx: &Ctx, _: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let d = float_dtype(ctx, DType::F32)?;
    let shape = shape_attr(ctx)?;
    let n = crate::shape::checked_numel(&shape).ok_or("`shape` is too large")?;
    Ok(vec![Tensor::from_f64(d, shape, draw(ctx, n)?)])
}

fn k_like(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let d = like_dtype(ctx, x.dtype)?;
    let shape = x.shape.clone();
    if ctx.node.op != Op::Bernoulli {
        return Ok(vec![Tensor::from_f64(d, shape, draw(ctx, x.numel())?)]);
    }
    let p = x
        .to_f64_vec()
        .ok_or("Bernoulli needs numeric probabilities")?;
    let mut rng = SplitMix64::from_ctx(ctx)?;
    let hits: Vec<bool> = p.iter().map(|&p| rng.uniform() < p).collect();
    Ok(vec![match d.class() {
        DClass::Float => Tensor::from_f64(
            d,
            shape,
            hits.iter().map(|&b| f64::from(u8::from(b))).collect(),
        ),
        DClass::Signed => Tensor::from_i64(d, shape, hits.iter().map(|&b| i64::from(b)).collect()),
        DClass::Unsigned => {
            Tensor::from_u64(d, shape, hits.iter().map(|&b| u64::from(b)).collect())
        }
        DClass::Bool => Tensor::from_bool(shape, hits),
        _ => op_bail!("Bernoulli cannot produce {d}"),
    }])
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;
    use crate::semantics::reduce::tests::{f32t, floats, run};
    use crate::{Attr, DType, Op};

    #[test]
    fn splitmix_reference_stream() {
        // First output of SplitMix64 from state 0, as in the authors'
        // reference implementation (also Vigna's splitmix64.c).
        assert_eq!(SplitMix64(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn shapes_dtypes_ranges() {
        let attrs = [
            ("shape", Attr::Ints(vec![3, 4])),
            ("low", Attr::Float(-2.0)),
            ("high", Attr::Float(5.0)),
            ("dtype", Attr::Int(11)),
            ("seed", Attr::Float(7.0)),
        ];
        let a = run(Op::RandomUniform, &attrs, &[], 1);
        assert_eq!((a[0].dtype, a[0].shape.clone()), (DType::F64, vec![3, 4]));
        assert!(floats(&a[0]).iter().all(|&v| (-2.0..5.0).contains(&v)));
        // Same seed, same values.
        assert_eq!(a, run(Op::RandomUniform, &attrs, &[], 1));
        let x = f32t(&[2, 5], &[0.0; 10]);
        let n = run(
            Op::RandomNormalLike,
            &[("mean", Attr::Float(3.0))],
            &[Some(&x)],
            1,
        );
        assert_eq!((n[0].dtype, n[0].shape.clone()), (DType::F32, vec![2, 5]));
        assert!(floats(&n[0]).iter().all(|v| v.is_finite()));
        // Probabilities 0 and 1 are certain.
        let p = f32t(&[4], &[0.0, 1.0, 0.0, 1.0]);
        let b = run(Op::Bernoulli, &[], &[Some(&p)], 1);
        assert_eq!(floats(&b[0]), vec![0.0, 1.0, 0.0, 1.0]);
        let b = run(Op::Bernoulli, &[("dtype", Attr::Int(9))], &[Some(&p)], 1);
        assert_eq!(b[0].dtype, DType::Bool);
    }
}
