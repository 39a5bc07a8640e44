//! JIT smoke tests on hand-built kernels; the full check is conformance
//! (every op lowered and run against the ONNX test data) in tests/.

use crate::Jit;
use smelt_kernel::ir::build::*;
use smelt_kernel::schedule::{self, CpuSchedule};
use smelt_kernel::{Access, BinOp, Kernel, Stmt, Ty, UnOp};

fn run(k: &Kernel, bufs: &mut [Vec<u8>]) {
    let sk = schedule::cpu(k, CpuSchedule::default());
    let jit = Jit::compile(std::slice::from_ref(&sk)).expect("compile");
    let f = jit.get(&k.name).expect("kernel");
    let ptrs: Vec<*mut u8> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
    // SAFETY: each buffer holds `len` elements of its parameter's type.
    unsafe { f(ptrs.as_ptr(), 0, sk.parallel_extent as i64) };
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn broadcast_add_tanh() {
    // y[i, j] = tanh(a[i, j] + b[j]) over a 3x5 domain.
    let mut k = Kernel::new("add_tanh", vec![3, 5]);
    let a = k.param("a", Ty::F32, 15, Access::Read);
    let b = k.param("b", Ty::F32, 5, Access::Read);
    let y = k.param("y", Ty::F32, 15, Access::Write);
    let i = flat(&[k.index(0), k.index(1)], &[3, 5]);
    k.body.push(Stmt::Store {
        buf: y,
        index: i.clone(),
        value: un(UnOp::Tanh, add(load(a, i), load(b, k.index(1)))),
    });
    let av: Vec<f32> = (0..15).map(|x| x as f32 * 0.1 - 0.7).collect();
    let bv: Vec<f32> = (0..5).map(|x| x as f32 * 0.05).collect();
    let mut bufs = vec![f32s(&av), f32s(&bv), vec![0; 60]];
    run(&k, &mut bufs);
    let got = to_f32(&bufs[2]);
    for r in 0..3 {
        for c in 0..5 {
            let want = (av[r * 5 + c] + bv[c]).tanh();
            assert!((got[r * 5 + c] - want).abs() < 1e-6, "{r},{c}");
        }
    }
}

#[test]
fn row_sum_and_int_division_by_zero() {
    // s[i] = sum_j x[i, j]; q[i] = 7 / d[i] with d = [0, 2, -3].
    let mut k = Kernel::new("rows", vec![3]);
    let x = k.param("x", Ty::F32, 12, Access::Read);
    let d = k.param("d", Ty::I32, 3, Access::Read);
    let s = k.param("s", Ty::F32, 3, Access::Write);
    let q = k.param("q", Ty::I32, 3, Access::Write);
    let acc = k.var("acc", Ty::F32, true);
    let j = k.var("j", Ty::I64, false);
    k.body = vec![
        Stmt::Decl(acc, f32(0.0)),
        Stmt::Loop {
            var: j,
            extent: idx(4),
            kind: smelt_kernel::LoopKind::Serial,
            body: vec![Stmt::Set(
                acc,
                add(var(acc), load(x, add(mul(k.index(0), idx(4)), var(j)))),
            )],
        },
        Stmt::Store {
            buf: s,
            index: k.index(0),
            value: var(acc),
        },
        Stmt::Store {
            buf: q,
            index: k.index(0),
            value: bin(BinOp::Div, lit(7.0, Ty::I32), load(d, k.index(0))),
        },
    ];
    let xv: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let dv: Vec<u8> = [0i32, 2, -3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut bufs = vec![f32s(&xv), dv, vec![0; 12], vec![0; 12]];
    run(&k, &mut bufs);
    assert_eq!(to_f32(&bufs[2]), vec![6.0, 22.0, 38.0]);
    let qv: Vec<i32> = bufs[3]
        .chunks(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(qv, vec![0, 3, -2]);
}

#[test]
fn f16_storage_rounds_to_nearest_even() {
    // 1 + 2^-11 is halfway between two f16 values: ties go to even (1.0).
    let mut k = Kernel::new("h", vec![2]);
    let x = k.param("x", Ty::F32, 2, Access::Read);
    let y = k.param("y", Ty::F16, 2, Access::Write);
    k.body.push(Stmt::Store {
        buf: y,
        index: k.index(0),
        value: load(x, k.index(0)),
    });
    let mut bufs = vec![
        f32s(&[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11)]),
        vec![0; 4],
    ];
    run(&k, &mut bufs);
    let h: Vec<u16> = bufs[1]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    // 0x3c00 = 1.0, 0x3c02 = 1 + 2^-9 (the even neighbour of 1 + 3*2^-11).
    assert_eq!(h, vec![0x3c00, 0x3c02]);
}
