//! Unit tests. Expected values come from numpy / the ONNX reference
//! evaluator (the expression is quoted next to each) or from math facts.

use super::{erf, format_float_py, lookup};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::semantics::{Ctx, TypeInput};
use crate::{Attr, DType, Dim, Node, Op, Shape, TensorType};

fn node(op: Op, attrs: &[(&str, Attr)]) -> Node {
    Node {
        op,
        name: String::new(),
        inputs: vec![],
        outputs: vec![],
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn run_opt(op: Op, attrs: &[(&str, Attr)], ins: &[Option<&Tensor>]) -> Vec<Tensor> {
    let n = node(op, attrs);
    let imp = lookup(op).expect("op is implemented");
    (imp.kernel)(&Ctx::new(&n), ins).expect("kernel succeeds")
}

fn run(op: Op, attrs: &[(&str, Attr)], ins: &[&Tensor]) -> Vec<Tensor> {
    let v: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
    run_opt(op, attrs, &v)
}

fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
}

fn it(d: DType, shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(d, shape.to_vec(), v.to_vec())
}

fn ut(d: DType, shape: &[usize], v: &[u64]) -> Tensor {
    Tensor::from_u64(d, shape.to_vec(), v.to_vec())
}

fn floats(t: &Tensor) -> Vec<f64> {
    match &t.data {
        Storage::F(v) => v.clone(),
        d => panic!("expected floats, got {d:?}"),
    }
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= 1e-6 * w.abs().max(1.0);
        assert!(ok, "got {got:?}, want {want:?}");
    }
}

#[test]
fn erf_values() {
    assert_eq!(erf(0.0), 0.0);
    assert_eq!(erf(-0.0), 0.0);
    // Reference values from Abramowitz & Stegun table 7.1.
    for (x, e) in [
        (0.5, 0.520_499_877_8),
        (1.0, 0.842_700_792_9),
        (2.0, 0.995_322_265_0),
        (3.0, 0.999_977_909_5),
    ] {
        assert!((erf(x) - e).abs() < 1e-9, "erf({x}) = {}", erf(x));
        assert!((erf(-x) + e).abs() < 1e-9);
    }
}

#[test]
fn int_mod_and_div() {
    let x = it(DType::I64, &[6], &[-4, 7, 5, 4, -7, 8]);
    let y = it(DType::I64, &[6], &[2, -3, 8, -2, 3, 5]);
    // np.mod(x, y) / np.fmod(x, y)
    let m = run(Op::Mod, &[], &[&x, &y]);
    assert_eq!(m[0].data, Storage::I(vec![0, -2, 5, 0, 2, 3]));
    let m = run(Op::Mod, &[("fmod", Attr::Int(1))], &[&x, &y]);
    assert_eq!(m[0].data, Storage::I(vec![0, 1, 5, 0, -1, 3]));
    // C-style truncating division: 7/2=3, -7/2=-3, 7/-2=-3, -7/-2=3.
    let a = it(DType::I32, &[4], &[7, -7, 7, -7]);
    let b = it(DType::I32, &[4], &[2, 2, -2, -2]);
    let q = run(Op::Div, &[], &[&a, &b]);
    assert_eq!(q[0].data, Storage::I(vec![3, -3, -3, 3]));
}

#[test]
fn float_mod_follows_numpy() {
    // np.mod(np.float32([-4.3,7.2,5,4.3,-7.2,8]), np.float32([2.1,-3.4,8,-2.1,3.4,5]))
    let x = f32t(&[6], &[-4.3, 7.2, 5.0, 4.3, -7.2, 8.0]);
    let y = f32t(&[6], &[2.1, -3.4, 8.0, -2.1, 3.4, 5.0]);
    let m = run(Op::Mod, &[], &[&x, &y]);
    assert_close(
        &floats(&m[0]),
        &[
            1.999_999_523_162_841_8,
            -3.000_000_476_837_158,
            5.0,
            -1.999_999_523_162_841_8,
            3.000_000_476_837_158,
            3.0,
        ],
    );
    // np.mod of zeros takes the divisor's sign; x mod ±inf per numpy.
    let x = Tensor::from_f64(DType::F64, vec![4], vec![0.0, -0.0, -3.0, 1.0]);
    let y = Tensor::from_f64(
        DType::F64,
        vec![4],
        vec![-2.0, 2.0, f64::INFINITY, f64::NEG_INFINITY],
    );
    let m = floats(&run(Op::Mod, &[], &[&x, &y])[0]);
    assert!(m[0] == 0.0 && m[0].is_sign_negative());
    assert!(m[1] == 0.0 && m[1].is_sign_positive());
    assert_eq!(m[2], f64::INFINITY);
    assert_eq!(m[3], f64::NEG_INFINITY);
}

#[test]
fn pow_mixed_dtypes() {
    // np.power(np.int32([1,2,3]), np.float32([4,5,6])).astype(np.int32) == [1,32,729]
    let x = it(DType::I32, &[3], &[1, 2, 3]);
    let y = f32t(&[3], &[4.0, 5.0, 6.0]);
    assert_eq!(
        run(Op::Pow, &[], &[&x, &y])[0].data,
        Storage::I(vec![1, 32, 729])
    );
    // np.power(np.int64([2,3]), np.int64([10,3])) == [1024, 27]
    let x = it(DType::I64, &[2], &[2, 3]);
    let y = it(DType::I64, &[2], &[10, 3]);
    assert_eq!(
        run(Op::Pow, &[], &[&x, &y])[0].data,
        Storage::I(vec![1024, 27])
    );
    // np.power(np.float32([1.5,2]), np.int64([2,-1])) == [2.25, 0.5]
    let x = f32t(&[2], &[1.5, 2.0]);
    let y = it(DType::I64, &[2], &[2, -1]);
    let r = run(Op::Pow, &[], &[&x, &y]);
    assert_eq!(r[0].dtype, DType::F32);
    assert_eq!(floats(&r[0]), vec![2.25, 0.5]);
}

#[test]
fn bitshift_edges() {
    let right = [("direction", Attr::String("RIGHT".into()))];
    let left = [("direction", Attr::String("LEFT".into()))];
    // Reference op_bitshift: int8 [-8,-1,-128] >> 1 == [-4,-1,-64].
    let x = it(DType::I8, &[3], &[-8, -1, -128]);
    let one = it(DType::I8, &[3], &[1, 1, 1]);
    assert_eq!(
        run(Op::BitShift, &right, &[&x, &one])[0].data,
        Storage::I(vec![-4, -1, -64])
    );
    // int8 [64,1,-64] << [1,7,1] == [-128,-128,-128] (overflow wraps).
    let x = it(DType::I8, &[3], &[64, 1, -64]);
    let s = it(DType::I8, &[3], &[1, 7, 1]);
    assert_eq!(
        run(Op::BitShift, &left, &[&x, &s])[0].data,
        Storage::I(vec![-128; 3])
    );
    // Shifts < 0 or >= width: left gives 0, right gives the sign fill.
    let x = it(DType::I32, &[3], &[-5, 5, 7]);
    let s = it(DType::I32, &[3], &[32, -1, 40]);
    assert_eq!(
        run(Op::BitShift, &right, &[&x, &s])[0].data,
        Storage::I(vec![-1, 0, 0])
    );
    assert_eq!(
        run(Op::BitShift, &left, &[&x, &s])[0].data,
        Storage::I(vec![0, 0, 0])
    );
    let x = ut(DType::U8, &[3], &[16, 4, 1]);
    let s = ut(DType::U8, &[3], &[1, 2, 3]);
    assert_eq!(
        run(Op::BitShift, &left, &[&x, &s])[0].data,
        Storage::U(vec![32, 16, 8])
    );
}

#[test]
fn compare_where_and_variadic() {
    let a = f32t(&[2, 2], &[1.0, f64::NAN, 3.0, 4.0]);
    let b = f32t(&[2], &[1.0, 2.0]);
    let eq = run(Op::Equal, &[], &[&a, &b]);
    assert_eq!(eq[0].data, Storage::B(vec![true, false, false, false]));
    let ge = run(Op::GreaterOrEqual, &[], &[&a, &b]);
    assert_eq!(ge[0].data, Storage::B(vec![true, false, true, true]));
    // np.maximum propagates NaN.
    let mx = run(Op::Max, &[], &[&a, &b]);
    assert!(floats(&mx[0])[1].is_nan());
    assert_eq!(floats(&mx[0])[2], 3.0);
    let mean = run(Op::Mean, &[], &[&b, &b, &f32t(&[2], &[4.0, 5.0])]);
    assert_eq!(floats(&mean[0]), vec![2.0, 3.0]);
    let s = |v: &[&str]| Tensor {
        dtype: DType::String,
        shape: vec![v.len()],
        data: Storage::S(v.iter().map(|x| x.to_string()).collect()),
    };
    let c = Tensor::from_bool(vec![2], vec![true, false]);
    let w = run(Op::Where, &[], &[&c, &s(&["a", "b"]), &s(&["c", "d"])]);
    assert_eq!(w[0].data, Storage::S(vec!["a".into(), "d".into()]));
    let e = run(Op::Equal, &[], &[&s(&["a", "b"]), &s(&["a"])]);
    assert_eq!(e[0].data, Storage::B(vec![true, false]));
}

#[test]
fn unary_math() {
    // np.round half to even; np.sign.
    let x = f32t(&[5], &[0.5, 1.5, 2.5, -2.5, -0.4]);
    assert_eq!(
        floats(&run(Op::Round, &[], &[&x])[0]),
        vec![0.0, 2.0, 2.0, -2.0, -0.0]
    );
    assert_eq!(
        floats(&run(Op::Sign, &[], &[&x])[0]),
        vec![1.0, 1.0, 1.0, -1.0, -1.0]
    );
    // Gelu(1.0) = 0.5*(1+erf(1/sqrt(2))) = 0.8413447460685429 (scipy.stats.norm.cdf(1));
    // tanh form 0.5*(1+tanh(sqrt(2/pi)*(1+0.044715))) = 0.8411919906082768.
    let one = Tensor::from_f64(DType::F64, vec![1], vec![1.0]);
    assert_close(
        &floats(&run(Op::Gelu, &[], &[&one])[0]),
        &[0.841_344_746_068_542_9],
    );
    let t = [("approximate", Attr::String("tanh".into()))];
    assert_close(
        &floats(&run(Op::Gelu, &t, &[&one])[0]),
        &[0.841_191_990_608_276_8],
    );
    // Clip with min > max gives max (np.clip); int8 bounds.
    let x = it(DType::I8, &[3], &[-100, 5, 100]);
    let lo = it(DType::I8, &[], &[10]);
    let hi = it(DType::I8, &[], &[2]);
    let c = run_opt(Op::Clip, &[], &[Some(&x), Some(&lo), Some(&hi)]);
    assert_eq!(c[0].data, Storage::I(vec![2, 2, 2]));
    let c = run_opt(Op::Clip, &[], &[Some(&x), None, Some(&lo)]);
    assert_eq!(c[0].data, Storage::I(vec![-100, 5, 10]));
    let inf = f32t(&[3], &[f64::INFINITY, f64::NEG_INFINITY, 1.0]);
    let r = run(Op::IsInf, &[("detect_negative", Attr::Int(0))], &[&inf]);
    assert_eq!(r[0].data, Storage::B(vec![true, false, false]));
    // Abs of int8 -128 wraps like numpy.
    let x = it(DType::I8, &[1], &[-128]);
    assert_eq!(run(Op::Abs, &[], &[&x])[0].data, Storage::I(vec![-128]));
}

fn cast(x: &Tensor, to: i64, sat: i64) -> Tensor {
    let a = [("to", Attr::Int(to)), ("saturate", Attr::Int(sat))];
    run(Op::Cast, &a, &[x]).remove(0)
}

#[test]
fn cast_to_fp8() {
    let x = f32t(
        &[9],
        &[
            0.478_925_47,
            1e6,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e6,
            1.0625,
            300.0,
        ],
    );
    // onnx.numpy_helper.saturate_cast(x, ml_dtypes.float8_e4m3fn) and x.astype(...)
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    assert_close(
        &floats(&cast(&x, 17, 1)),
        &[0.46875, 448.0, 0.0, nan, 448.0, -448.0, -448.0, 1.0, 288.0],
    );
    assert_close(
        &floats(&cast(&x, 17, 0)),
        &[0.46875, nan, 0.0, nan, nan, nan, nan, 1.0, 288.0],
    );
    // float8_e5m2
    assert_close(
        &floats(&cast(&x, 19, 1)),
        &[
            0.5, 57344.0, 0.0, nan, 57344.0, -57344.0, -57344.0, 1.0, 320.0,
        ],
    );
    assert_close(
        &floats(&cast(&x, 19, 0)),
        &[0.5, inf, 0.0, nan, inf, -inf, -inf, 1.0, 320.0],
    );
    // float8_e4m3fnuz, not saturating
    assert_close(
        &floats(&cast(&x, 18, 0)),
        &[0.46875, nan, 0.0, nan, nan, nan, nan, 1.0, nan],
    );
}

#[test]
fn cast_to_small_types() {
    // np.float32([...]).astype(ml_dtypes.float4_e2m1fn)
    let x = f32t(
        &[10],
        &[0.48, 0.25, 1.05, -3.5, -8.0, 9.0, 1e6, -4.0, 0.01, 2.5],
    );
    assert_eq!(
        floats(&cast(&x, 23, 1)),
        vec![0.5, 0.0, 1.0, -4.0, -6.0, 6.0, 6.0, -4.0, 0.0, 2.0]
    );
    // np.arange(-9, 16).astype(np.float32).astype(ml_dtypes.int4 / uint4)
    let v: Vec<f64> = (-9..16).map(f64::from).collect();
    let x = f32t(&[25], &v);
    let i4 = [
        7, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1,
    ];
    assert_eq!(cast(&x, 22, 1).data, Storage::I(i4.to_vec()));
    let u4 = [
        7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    ];
    assert_eq!(cast(&x, 21, 1).data, Storage::U(u4.to_vec()));
    // onnx.numpy_helper.to_float8e8m0(np.float32([0.124,1.1,3,0]), True, mode)
    let x = f32t(&[4], &[0.124, 1.1, 3.0, 0.0]);
    let e8 = |mode: &str| {
        let a = [
            ("to", Attr::Int(24)),
            ("round_mode", Attr::String(mode.into())),
        ];
        floats(&run(Op::Cast, &a, &[&x])[0])
    };
    let tiny = 2f64.powi(-127);
    assert_eq!(e8("up"), vec![0.125, 2.0, 4.0, tiny]);
    assert_eq!(e8("nearest"), vec![0.125, 1.0, 4.0, tiny]);
    assert_eq!(e8("down"), vec![0.0625, 1.0, 2.0, tiny]);
    // CastLike takes the dtype of its second input; float -> int truncates.
    let x = f32t(&[3], &[1.9, -1.9, 300.0]);
    let like = it(DType::I16, &[1], &[0]);
    let r = run(Op::CastLike, &[], &[&x, &like]);
    assert_eq!(r[0].data, Storage::I(vec![1, -1, 300]));
    assert_eq!(r[0].dtype, DType::I16);
}

#[test]
fn cast_strings() {
    // np.float32([...]).astype(np.str_)
    let v = [
        0.478_925_47,
        1e-7,
        1e6,
        f64::NAN,
        f64::NEG_INFINITY,
        -0.0,
        1.5,
        1e16,
        123_456_789.0,
        1e-4,
        325_000.0,
    ];
    let want = [
        "0.47892547",
        "1e-07",
        "1e+06",
        "nan",
        "-inf",
        "-0.0",
        "1.5",
        "1e+16",
        "1.2345679e+08",
        "1e-04",
        "325000.0",
    ];
    let x = f32t(&[v.len()], &v);
    let s = cast(&x, 8, 1);
    assert_eq!(
        s.data,
        Storage::S(want.iter().map(|s| s.to_string()).collect())
    );
    // np.float64([0.1, 1e-5, 1e22, 2/3]).astype(np.str_)
    assert_eq!(format_float_py(0.1, DType::F64), "0.1");
    assert_eq!(format_float_py(1e-5, DType::F64), "1e-05");
    assert_eq!(format_float_py(1e22, DType::F64), "1e+22");
    assert_eq!(format_float_py(2.0 / 3.0, DType::F64), "0.6666666666666666");
    // np.array(["1.5","-INF","nan","+2e3"]).astype(np.float32)
    let strs = Tensor {
        dtype: DType::String,
        shape: vec![4],
        data: Storage::S(
            ["1.5", "-INF", "nan", "+2e3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    };
    assert_close(
        &floats(&cast(&strs, 1, 1)),
        &[1.5, f64::NEG_INFINITY, f64::NAN, 2000.0],
    );
}

#[test]
fn bitcast_reinterprets() {
    // np.float32([1.0, -2.0]).view(np.int32) == [1065353216, -1073741824]
    let x = f32t(&[2], &[1.0, -2.0]);
    let r = run(Op::BitCast, &[("to", Attr::Int(6))], &[&x]);
    assert_eq!(r[0].data, Storage::I(vec![1_065_353_216, -1_073_741_824]));
}

#[test]
fn quantize_linear() {
    let x = f32t(
        &[2, 6],
        &[
            0.0, 2.0, 3.0, 1000.0, -254.0, -1000.0, 1.0, 2.5, 3.5, -2.5, 4.0, -4.0,
        ],
    );
    // ReferenceEvaluator QuantizeLinear(x, 2.0f, uint8(128))
    let r = run(
        Op::QuantizeLinear,
        &[],
        &[&x, &f32t(&[], &[2.0]), &ut(DType::U8, &[], &[128])],
    );
    assert_eq!(
        r[0].data,
        Storage::U(vec![128, 129, 130, 255, 1, 0, 128, 129, 130, 127, 130, 126])
    );
    // axis=0, scale [2,4], zero point int8 [0,1]
    let r = run(
        Op::QuantizeLinear,
        &[("axis", Attr::Int(0))],
        &[&x, &f32t(&[2], &[2.0, 4.0]), &it(DType::I8, &[2], &[0, 1])],
    );
    assert_eq!(
        r[0].data,
        Storage::I(vec![0, 1, 2, 127, -127, -128, 1, 2, 2, 0, 2, 0])
    );
    // axis=1, block_size=3, scale [[1,2],[3,0.5]], zero point int8 [[0,1],[2,3]]
    let r = run(
        Op::QuantizeLinear,
        &[("axis", Attr::Int(1)), ("block_size", Attr::Int(3))],
        &[
            &x,
            &f32t(&[2, 2], &[1.0, 2.0, 3.0, 0.5]),
            &it(DType::I8, &[2, 2], &[0, 1, 2, 3]),
        ],
    );
    assert_eq!(
        r[0].data,
        Storage::I(vec![0, 2, 3, 127, -126, -128, 2, 3, 3, -2, 11, -5])
    );
    // scale 0.5, zero point float8e4m3fn 0
    let z = Tensor::from_f64(DType::F8E4M3FN, vec![], vec![0.0]);
    let r = run(Op::QuantizeLinear, &[], &[&x, &f32t(&[], &[0.5]), &z]);
    assert_eq!(
        floats(&r[0]),
        vec![
            0.0, 4.0, 6.0, 448.0, -448.0, -448.0, 2.0, 5.0, 7.0, -5.0, 8.0, -8.0
        ]
    );
    // scale 1, zero point int4 1
    let r = run(
        Op::QuantizeLinear,
        &[],
        &[&x, &f32t(&[], &[1.0]), &it(DType::I4, &[], &[1])],
    );
    assert_eq!(
        r[0].data,
        Storage::I(vec![1, 3, 4, 7, -8, -8, 2, 3, 5, -1, 5, -3])
    );
}

#[test]
fn dequantize_and_dynamic() {
    // ReferenceEvaluator DequantizeLinear(uint8 x, [2,0.5], uint8 [128,1], axis=0)
    let x = ut(DType::U8, &[2, 4], &[0, 3, 128, 255, 1, 2, 250, 7]);
    let r = run(
        Op::DequantizeLinear,
        &[("axis", Attr::Int(0))],
        &[
            &x,
            &f32t(&[2], &[2.0, 0.5]),
            &ut(DType::U8, &[2], &[128, 1]),
        ],
    );
    assert_eq!(
        floats(&r[0]),
        vec![-256.0, -250.0, 0.0, 254.0, 0.0, 0.5, 124.5, 3.0]
    );
    // ReferenceEvaluator DynamicQuantizeLinear(np.float32([0,2,-3,-2.5,1.34,0.5]))
    let x = f32t(&[6], &[0.0, 2.0, -3.0, -2.5, 1.34, 0.5]);
    let r = run(Op::DynamicQuantizeLinear, &[], &[&x]);
    assert_eq!(r[0].data, Storage::U(vec![153, 255, 0, 26, 221, 179]));
    assert_close(&floats(&r[1]), &[0.019_607_843_831_181_526]);
    assert_eq!(r[2].data, Storage::U(vec![153]));
}

#[test]
fn type_rules() {
    let n = node(Op::Less, &[]);
    let a = TensorType::new(
        DType::F32,
        Shape(Some(vec![Dim::Sym("N".into()), Dim::Static(1)])),
    );
    let b = TensorType::of_static(DType::F32, &[3]);
    let ins = [
        Some(TypeInput {
            ty: &a,
            value: None,
        }),
        Some(TypeInput {
            ty: &b,
            value: None,
        }),
    ];
    let out = (lookup(Op::Less).unwrap().infer)(&Ctx::new(&n), &ins).unwrap();
    assert_eq!(
        out[0],
        TensorType::new(
            DType::Bool,
            Shape(Some(vec![Dim::Sym("N".into()), Dim::Static(3)]))
        )
    );
    let c = TensorType::of_static(DType::I64, &[3]);
    let bad = [
        Some(TypeInput {
            ty: &a,
            value: None,
        }),
        Some(TypeInput {
            ty: &c,
            value: None,
        }),
    ];
    let n = node(Op::Add, &[]);
    assert!((lookup(Op::Add).unwrap().infer)(&Ctx::new(&n), &bad).is_err());
    let n = node(Op::Cast, &[("to", Attr::Int(10))]);
    let out = (lookup(Op::Cast).unwrap().infer)(&Ctx::new(&n), &ins[..1]).unwrap();
    assert_eq!(out[0].dtype, DType::F16);
}

#[test]
fn logic_type_rule_wants_bool() {
    let f = TensorType::of_static(DType::F32, &[2]);
    let b = TensorType::of_static(DType::Bool, &[2, 1]);
    let n = node(Op::And, &[]);
    let infer = lookup(Op::And).unwrap().infer;
    let bad = [
        Some(TypeInput {
            ty: &f,
            value: None,
        }),
        Some(TypeInput {
            ty: &f,
            value: None,
        }),
    ];
    assert!(infer(&Ctx::new(&n), &bad).is_err());
    let good = [
        Some(TypeInput {
            ty: &b,
            value: None,
        }),
        Some(TypeInput {
            ty: &b,
            value: None,
        }),
    ];
    assert_eq!(
        infer(&Ctx::new(&n), &good).unwrap()[0],
        TensorType::of_static(DType::Bool, &[2, 1])
    );
}

#[test]
fn bad_inputs_are_errors() {
    let n = node(Op::QuantizeLinear, &[]);
    let k = lookup(Op::QuantizeLinear).unwrap().kernel;
    let x = f32t(&[2], &[1.0, 2.0]);
    let s = f32t(&[], &[1.0]);
    let z = Tensor {
        dtype: DType::String,
        shape: vec![],
        data: Storage::S(vec!["0".into()]),
    };
    assert!(k(&Ctx::new(&n), &[Some(&x), Some(&s), Some(&z)]).is_err());
    // Per-axis scale whose length does not match the axis.
    let s3 = f32t(&[3], &[1.0, 1.0, 1.0]);
    let x2 = f32t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    assert!(k(&Ctx::new(&n), &[Some(&x2), Some(&s3), None]).is_err());
    let n = node(Op::Div, &[]);
    let k = lookup(Op::Div).unwrap().kernel;
    let a = it(DType::I32, &[1], &[1]);
    let b = it(DType::I32, &[1], &[0]);
    assert!(k(&Ctx::new(&n), &[Some(&a), Some(&b)]).is_err());
    let c = f32t(&[1], &[0.0]);
    assert!(k(&Ctx::new(&n), &[Some(&a), Some(&c)]).is_err());
}
