//! Spatial rearrangements with arithmetic: Col2Im, AffineGrid.

use super::super::{Ctx, OpResult, TypeInput, input, operand, unknown_dims};
use super::{InferOut, KernelOut, Pair, checked_numel, cints, for_each_index, kints, sdims, tt};
use crate::interp::Tensor;
use crate::{Dim, Op, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    Some(match op {
        Op::Col2Im => (infer_col2im, k_col2im),
        Op::AffineGrid => (infer_affine, k_affine),
        _ => return None,
    })
}

fn infer_col2im(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let (Some(img), Some(blk)) = (cints(ins, 1), cints(ins, 2)) else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let k: i64 = blk.iter().product();
    let mut out = vec![Dim::Unknown, Dim::Unknown];
    if let Some(d) = x.ty.shape.dims() {
        out[0] = d[0].clone();
        if let Some(c) = d.get(1).and_then(Dim::as_static)
            && k > 0
        {
            out[1] = Dim::Static(c / k as u64);
        }
    }
    for &v in &img {
        out.push(Dim::Static(v.max(0) as u64));
    }
    Ok(vec![tt(dt, out)])
}

fn attr_or(ctx: &Ctx, name: &str, n: usize, dflt: i64) -> OpResult<Vec<i64>> {
    let v = ctx.ints(name)?.unwrap_or_else(|| vec![dflt; n]);
    Ok(v)
}

fn k_col2im(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let (Some(img), Some(blk)) = (kints(ins, 1)?, kints(ins, 2)?) else {
        op_bail!("Col2Im needs image_shape and block_shape");
    };
    let n = img.len();
    if blk.len() != n || x.rank() != 3 {
        op_bail!("Col2Im: input must be 3-D and shapes must agree");
    }
    let dil = attr_or(ctx, "dilations", n, 1)?;
    let st = attr_or(ctx, "strides", n, 1)?;
    let pads = attr_or(ctx, "pads", 2 * n, 0)?;
    if dil.len() != n || st.len() != n || pads.len() != 2 * n {
        op_bail!("Col2Im: attribute lengths do not match {n} spatial dims");
    }
    let k: i64 = blk.iter().product();
    let (b, ck, l) = (x.shape[0], x.shape[1], x.shape[2]);
    if k <= 0 || ck % k as usize != 0 {
        op_bail!("Col2Im: channels {ck} not divisible by kernel size {k}");
    }
    let c = ck / k as usize;
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let nb = (img[i] + pads[i] + pads[n + i] - (dil[i] * (blk[i] - 1) + 1)) / st[i] + 1;
        if nb < 1 {
            op_bail!("Col2Im: no sliding blocks along dim {i}");
        }
        blocks.push(nb as usize);
    }
    if blocks.iter().product::<usize>() != l {
        op_bail!("Col2Im: {l} blocks given, {blocks:?} expected");
    }
    let img_u: Vec<usize> = img.iter().map(|&v| v.max(0) as usize).collect();
    let mut shape = vec![b, c];
    shape.extend_from_slice(&img_u);
    let plane: usize = img_u.iter().product();
    let mut out = vec![0.0; checked_numel(&shape)?];
    let Some(v) = x.to_f64_vec() else {
        op_bail!("Col2Im: input must be numeric");
    };
    let kshape: Vec<usize> = blk.iter().map(|&v| v as usize).collect();
    for bi in 0..b {
        for ch in 0..c {
            let mut kk = 0;
            for_each_index(&kshape, |ko| {
                let row = ch * k as usize + kk;
                kk += 1;
                let mut li = 0;
                for_each_index(&blocks, |bo| {
                    let mut flat = 0usize;
                    let mut inside = true;
                    for i in 0..n {
                        let p = bo[i] as i64 * st[i] - pads[i] + ko[i] as i64 * dil[i];
                        if p < 0 || p >= img[i] {
                            inside = false;
                            break;
                        }
                        flat = flat * img_u[i] + p as usize;
                    }
                    if inside {
                        out[(bi * c + ch) * plane + flat] += v[(bi * ck + row) * l + li];
                    }
                    li += 1;
                });
            });
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, shape, out)])
}

fn infer_affine(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let t = input(ins, 0)?;
    let dt = t.ty.dtype;
    let Some(size) = cints(ins, 1) else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    if size.len() < 3 {
        op_bail!("AffineGrid: size must have 4 or 5 entries");
    }
    let mut out = vec![Dim::Static(size[0].max(0) as u64)];
    out.extend(sdims(
        &size[2..]
            .iter()
            .map(|&v| v.max(0) as usize)
            .collect::<Vec<_>>(),
    ));
    out.push(Dim::Static(size.len() as u64 - 2));
    Ok(vec![tt(dt, out)])
}

fn k_affine(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let t = operand(ins, 0)?;
    let Some(size) = kints(ins, 1)? else {
        op_bail!("AffineGrid needs a size input");
    };
    let nd = size.len().saturating_sub(2);
    if !(nd == 2 || nd == 3) || t.shape != [size[0].max(0) as usize, nd, nd + 1] {
        op_bail!(
            "AffineGrid: theta {:?} does not match size {size:?}",
            t.shape
        );
    }
    let align = ctx.int("align_corners", 0)? != 0;
    let Some(th) = t.to_f64_vec() else {
        op_bail!("AffineGrid: theta must be numeric");
    };
    let sp: Vec<usize> = size[2..].iter().map(|&v| v.max(0) as usize).collect();
    let coord = |i: usize, n: usize| {
        if align {
            if n == 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (n - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / n as f64
        }
    };
    let batch = t.shape[0];
    let mut shape = vec![batch];
    shape.extend_from_slice(&sp);
    shape.push(nd);
    let mut out = Vec::with_capacity(checked_numel(&shape)?);
    for b in 0..batch {
        for_each_index(&sp, |o| {
            // Homogeneous point, fastest spatial dim first (x, y[, z], 1).
            let mut p: Vec<f64> = (0..nd)
                .map(|j| coord(o[nd - 1 - j], sp[nd - 1 - j]))
                .collect();
            p.push(1.0);
            for r in 0..nd {
                let row = &th[(b * nd + r) * (nd + 1)..(b * nd + r + 1) * (nd + 1)];
                out.push(row.iter().zip(&p).map(|(a, x)| a * x).sum());
            }
        });
    }
    Ok(vec![Tensor::from_f64(t.dtype, shape, out)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn col2im() {
        // 1 channel, 2x2 kernel over a 3x3 image: 4 blocks; each column of
        // ones adds 1 per covering block -> coverage counts
        // [[1,2,1],[2,4,2],[1,2,1]]
        let x = f32t(&[1, 4, 4], &[1.0; 16]);
        let y = run(
            Op::Col2Im,
            &[],
            &[
                Some(&x),
                Some(&i64t(&[2], &[3, 3])),
                Some(&i64t(&[2], &[2, 2])),
            ],
        );
        assert_eq!(y.shape, vec![1, 1, 3, 3]);
        assert_eq!(fvals(&y), vec![1., 2., 1., 2., 4., 2., 1., 2., 1.]);
    }

    #[test]
    fn affine_grid() {
        // identity theta, 1x1x2x2, align_corners=1: grid corners (x, y)
        let th = f32t(&[1, 2, 3], &[1., 0., 0., 0., 1., 0.]);
        let y = run(
            Op::AffineGrid,
            &[("align_corners", Attr::Int(1))],
            &[Some(&th), Some(&i64t(&[4], &[1, 1, 2, 2]))],
        );
        assert_eq!(y.shape, vec![1, 2, 2, 2]);
        assert_eq!(fvals(&y), vec![-1., -1., 1., -1., -1., 1., 1., 1.]);
        // align_corners=0 on 2 points: +-0.5
        let y = run(
            Op::AffineGrid,
            &[],
            &[Some(&th), Some(&i64t(&[4], &[1, 1, 1, 2]))],
        );
        assert_eq!(fvals(&y), vec![-0.5, 0., 0.5, 0.]);
    }
}
