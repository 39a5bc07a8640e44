//! One scheduled kernel as a HIP `__global__` function. Every kernel-IR
//! construct maps to one C++ expression or statement with the semantics of
//! the LLVM emitter (`smelt_codegen::llvm`); where C++ differs (integer
//! promotion, division by zero, shifts, saturating casts, NaN-propagating
//! min/max, storage types) the printed code calls a prelude helper.

use super::names::Names;
use crate::gpu::GpuError;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Scheduled, Stmt, Ty, UnOp, Var};
use std::collections::HashSet;
use std::fmt::Write;

type R<T> = Result<T, GpuError>;

/// The C++ type a buffer of `t` holds.
pub fn storage_c(t: Ty) -> &'static str {
    match t {
        Ty::Bool | Ty::U8 | Ty::F8E8M0 => "uint8_t",
        Ty::F8E4M3FN | Ty::F8E4M3FNUZ | Ty::F8E5M2 | Ty::F8E5M2FNUZ => "uint8_t",
        Ty::I4 | Ty::U4 | Ty::I2 | Ty::U2 | Ty::F4E2M1 => "uint8_t",
        Ty::I8 => "int8_t",
        Ty::I16 => "int16_t",
        Ty::U16 | Ty::BF16 => "uint16_t",
        Ty::F16 => "_Float16",
        Ty::I32 => "int32_t",
        Ty::U32 => "uint32_t",
        Ty::I64 => "int64_t",
        Ty::U64 => "uint64_t",
        Ty::F32 => "float",
        Ty::F64 => "double",
    }
}

/// The C++ type values of `t` are computed in.
pub fn value_c(t: Ty) -> &'static str {
    match t.compute() {
        Ty::Bool => "bool",
        c => storage_c(c),
    }
}

/// Types C++ promotes to `int` in arithmetic: results are cast back so that
/// they wrap at their own width, as in the kernel IR.
fn narrow(t: Ty) -> bool {
    matches!(t, Ty::Bool | Ty::I8 | Ty::I16 | Ty::U8 | Ty::U16)
}

pub struct KernelPrinter<'a> {
    target: &'static str,
    k: &'a Kernel,
    names: Names,
    out: String,
    /// The parameter whose (single) store becomes the function's return
    /// value (`print_value_fn`).
    ret: Option<usize>,
}

impl<'a> KernelPrinter<'a> {
    pub fn print(target: &'static str, sk: &'a Scheduled) -> R<String> {
        let k = &sk.kernel;
        let mut p = KernelPrinter {
            target,
            k,
            names: Names::for_kernel(k),
            out: String::new(),
            ret: None,
        };
        if !super::names::is_ident(&k.name) {
            return Err(p.err(format!("kernel name {:?} is not a C identifier", k.name)));
        }
        p.header(sk)?;
        p.block(&sk.body, 1, false)?;
        p.out.push_str("}\n");
        Ok(p.out)
    }

    /// The per-point body of a flat-scheduled kernel (one parallel loop at
    /// the top, as `schedule::flat` makes it) as a `__device__` function
    /// `fn_name(params..., int64_t <loop var>)`: what one thread of the
    /// kernel does for one point, so that another kernel (a GEMM's store
    /// loop) can run it for the elements it produces. Parameters are not
    /// `__restrict__`: the caller may pass the same buffer under two names.
    pub fn print_point_fn(target: &'static str, sk: &'a Scheduled, fn_name: &str) -> R<String> {
        Self::point_fn(target, sk, fn_name, None)
    }

    /// `print_point_fn` for a kernel that stores exactly once per point
    /// into its parameter `ret` (a GEMM operand's loader, e.g. im2col):
    /// the function returns the stored value (in `ret`'s storage type)
    /// instead of storing it, so a GEMM can compute the operand's element
    /// `p` where it would load it. `ret`'s pointer stays in the parameter
    /// list (unused) so that callers pass the kernel's arguments unchanged.
    pub fn print_value_fn(
        target: &'static str,
        sk: &'a Scheduled,
        fn_name: &str,
        ret: usize,
    ) -> R<String> {
        Self::point_fn(target, sk, fn_name, Some(ret))
    }

    fn point_fn(
        target: &'static str,
        sk: &'a Scheduled,
        fn_name: &str,
        ret: Option<usize>,
    ) -> R<String> {
        let k = &sk.kernel;
        let mut p = KernelPrinter {
            target,
            k,
            names: Names::for_kernel(k),
            out: String::new(),
            ret,
        };
        for n in [fn_name, k.name.as_str()] {
            if !super::names::is_ident(n) {
                return Err(p.err(format!("name {n:?} is not a C identifier")));
            }
        }
        let (point, body) = match sk.body.as_slice() {
            [
                Stmt::Loop {
                    var,
                    kind: LoopKind::Parallel,
                    body,
                    ..
                },
            ] if !has_parallel(body) => (*var, body),
            _ => {
                return Err(p.err(
                    "not a flat-scheduled kernel (one parallel loop over its points)".into(),
                ));
            }
        };
        let point_name = p.var(point)?.to_string();
        let _ = writeln!(
            p.out,
            "// Kernel-IR kernel `{}` for one point `{point_name}` of its domain [{}]\n\
             // (row-major flat index).",
            k.name,
            k.domain
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let ret_c = match ret {
            Some(r) => {
                let prm = k
                    .params
                    .get(r)
                    .ok_or_else(|| p.err(format!("no parameter {r} to return")))?;
                if !matches!(prm.ty, Ty::F32 | Ty::F64 | Ty::F16 | Ty::BF16) {
                    return Err(p.err(format!("cannot return a {} element", prm.ty.name())));
                }
                storage_c(prm.ty)
            }
            None => "void",
        };
        let _ = writeln!(p.out, "SMELT_INLINE {ret_c} {fn_name}(");
        for (i, prm) in k.params.iter().enumerate() {
            let (c, dir) = if prm.access == Access::Read {
                ("const ", "in")
            } else {
                ("", "out")
            };
            let _ = writeln!(
                p.out,
                "    {c}{}* {}, // {dir} {}[{}]",
                storage_c(prm.ty),
                p.names.param(i),
                prm.ty.name(),
                prm.len
            );
        }
        let _ = writeln!(p.out, "    int64_t {point_name}) {{");
        p.block(body, 1, true)?;
        p.out.push_str("}\n");
        Ok(p.out)
    }

    fn err(&self, msg: String) -> GpuError {
        GpuError::Print {
            target: self.target,
            kernel: self.k.name.clone(),
            msg,
        }
    }

    fn header(&mut self, sk: &Scheduled) -> R<()> {
        let k = self.k;
        let dims: Vec<String> = k.domain.iter().map(u64::to_string).collect();
        let _ = writeln!(
            self.out,
            "// Kernel-IR kernel `{}`: domain [{}] = {} points, one thread per point\n\
             // (grid-stride loop over `total` = {} iterations).",
            k.name,
            dims.join(", "),
            k.points(),
            sk.parallel_extent
        );
        let _ = writeln!(
            self.out,
            "extern \"C\" __global__ void __launch_bounds__(SMELT_BLOCK) {}(",
            k.name
        );
        for (i, p) in k.params.iter().enumerate() {
            let c = if p.access == Access::Read {
                "const "
            } else {
                ""
            };
            let _ = writeln!(
                self.out,
                "    {c}{}* __restrict__ {}, // {} {}[{}]",
                storage_c(p.ty),
                self.names.param(i),
                if p.access == Access::Read {
                    "in"
                } else {
                    "out"
                },
                p.ty.name(),
                p.len
            );
        }
        self.out.push_str("    int64_t total) {\n");
        Ok(())
    }

    fn var(&self, v: Var) -> R<&str> {
        if (v.0 as usize) < self.k.vars.len() {
            Ok(self.names.var(v))
        } else {
            Err(self.err(format!("unknown variable {}", v.0)))
        }
    }

    fn var_ty(&self, v: Var) -> R<Ty> {
        self.k
            .vars
            .get(v.0 as usize)
            .map(|i| i.ty)
            .ok_or_else(|| self.err(format!("unknown variable {}", v.0)))
    }

    /// Prints `body`. In the block of a thread's work (`top`), accumulators
    /// that are not declared directly in it are declared up front (zero):
    /// the kernel IR lets a `Decl` in a nested block, or a `Set` alone,
    /// reach every later statement.
    fn block(&mut self, body: &[Stmt], depth: usize, top: bool) -> R<()> {
        let pad = "  ".repeat(depth);
        if top {
            let direct: HashSet<Var> = body
                .iter()
                .filter_map(|s| match s {
                    Stmt::Decl(v, _) => Some(*v),
                    _ => None,
                })
                .collect();
            for (i, info) in self.k.vars.iter().enumerate() {
                let v = Var(i as u32);
                if info.mutable && !direct.contains(&v) {
                    let n = self.var(v)?.to_string();
                    let _ = writeln!(self.out, "{pad}{} {n} = 0;", value_c(info.ty));
                }
            }
        }
        for s in body {
            self.stmt(s, depth, top)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, depth: usize, top: bool) -> R<()> {
        let pad = "  ".repeat(depth);
        match s {
            Stmt::Let(v, e) => {
                let t = self.var_ty(*v)?;
                let x = self.expr(e)?;
                let n = self.var(*v)?.to_string();
                let _ = writeln!(self.out, "{pad}const {} {n} = {x};", value_c(t));
            }
            Stmt::Decl(v, e) if top => {
                let t = self.var_ty(*v)?;
                let x = self.expr(e)?;
                let n = self.var(*v)?.to_string();
                let _ = writeln!(self.out, "{pad}{} {n} = {x};", value_c(t));
            }
            Stmt::Decl(v, e) | Stmt::Set(v, e) => {
                let x = self.expr(e)?;
                let n = self.var(*v)?.to_string();
                let _ = writeln!(self.out, "{pad}{n} = {x};");
            }
            Stmt::Store { buf, value, .. } if self.ret == Some(*buf) => {
                let line = self.returned(*buf, value)?;
                let _ = writeln!(self.out, "{pad}{line};");
            }
            Stmt::Store { buf, index, value } => {
                let line = self.store(*buf, index, value)?;
                let _ = writeln!(self.out, "{pad}{line};");
            }
            Stmt::Loop {
                var,
                extent,
                kind,
                body,
            } => {
                let name = self.var(*var)?.to_string();
                if *kind == LoopKind::Parallel {
                    if depth != 1 {
                        return Err(self.err("a parallel loop inside another loop".into()));
                    }
                    let _ = writeln!(
                        self.out,
                        "{pad}for (int64_t {name} = smelt_first_point(); {name} < total; {name} += smelt_grid_threads()) {{"
                    );
                    self.block(body, depth + 1, true)?;
                } else {
                    let ext = self.expr(extent)?;
                    let t = value_c(self.var_ty(*var)?);
                    let _ = writeln!(
                        self.out,
                        "{pad}for ({t} {name} = 0; {name} < {ext}; ++{name}) {{"
                    );
                    self.block(body, depth + 1, false)?;
                }
                let _ = writeln!(self.out, "{pad}}}");
            }
            Stmt::If { cond, then, els } => {
                let c = self.expr(cond)?;
                let _ = writeln!(self.out, "{pad}if ({c}) {{");
                self.block(then, depth + 1, false)?;
                if !els.is_empty() {
                    let _ = writeln!(self.out, "{pad}}} else {{");
                    self.block(els, depth + 1, false)?;
                }
                let _ = writeln!(self.out, "{pad}}}");
            }
        }
        Ok(())
    }

    fn ty(&self, e: &Expr) -> R<Ty> {
        self.k
            .type_of(e)
            .ok_or_else(|| self.err("ill-typed expression".into()))
    }

    fn param(&self, buf: usize) -> R<(&str, Ty)> {
        let p = self
            .k
            .params
            .get(buf)
            .ok_or_else(|| self.err(format!("no parameter {buf}")))?;
        Ok((self.names.param(buf), p.ty))
    }

    /// The store of `value` to `buf` as a `return` of what it would store.
    fn returned(&self, buf: usize, value: &Expr) -> R<String> {
        let (_, t) = self.param(buf)?;
        let vt = self.ty(value)?;
        let v = self.expr(value)?;
        Ok(match t {
            Ty::F16 => format!("return (_Float16)({v})"),
            Ty::BF16 if vt == Ty::F64 => format!("return smelt_f64_to_bf16({v})"),
            Ty::BF16 => format!("return smelt_f32_to_bf16({v})"),
            Ty::F32 => format!("return (float)({v})"),
            Ty::F64 => format!("return (double)({v})"),
            t => return Err(self.err(format!("cannot return a {} element", t.name()))),
        })
    }

    fn store(&self, buf: usize, index: &Expr, value: &Expr) -> R<String> {
        let (name, t) = self.param(buf)?;
        if self.k.params[buf].access == Access::Read {
            return Err(self.err(format!("store to input parameter {name}")));
        }
        let i = self.expr(index)?;
        let vt = self.ty(value)?;
        let v = self.expr(value)?;
        let as_f32 = |v: String| {
            if vt == Ty::F64 {
                format!("(float){v}")
            } else {
                v
            }
        };
        Ok(match t {
            Ty::I4 | Ty::U4 | Ty::I2 | Ty::U2 => {
                let bits = t.packed_bits().unwrap_or(4);
                format!("smelt_packed_store<{bits}>({name}, {i}, (uint32_t){v})")
            }
            Ty::F4E2M1 => format!(
                "smelt_packed_store<4>({name}, {i}, smelt_encode_f4e2m1({}))",
                as_f32(v)
            ),
            Ty::Bool => format!("{name}[{i}] = (uint8_t){v}"),
            Ty::F16 => format!("{name}[{i}] = (_Float16){v}"),
            Ty::BF16 if vt == Ty::F64 => format!("{name}[{i}] = smelt_f64_to_bf16({v})"),
            Ty::BF16 => format!("{name}[{i}] = smelt_f32_to_bf16({v})"),
            t if t.is_f8() => format!("{name}[{i}] = smelt_encode_{}({})", t.name(), as_f32(v)),
            _ => format!("{name}[{i}] = {v}"),
        })
    }

    fn load(&self, buf: usize, index: &Expr) -> R<String> {
        let (name, t) = self.param(buf)?;
        let i = self.expr(index)?;
        Ok(match t {
            Ty::I4 | Ty::I2 => {
                let bits = t.packed_bits().unwrap_or(4);
                format!("smelt_packed_signed<{bits}>({name}, {i})")
            }
            Ty::U4 | Ty::U2 => {
                let bits = t.packed_bits().unwrap_or(4);
                format!("(uint8_t)smelt_packed_code<{bits}>({name}, {i})")
            }
            Ty::F4E2M1 => format!("smelt_decode_f4e2m1(smelt_packed_code<4>({name}, {i}))"),
            Ty::Bool => format!("({name}[{i}] != 0)"),
            Ty::F16 => format!("(float){name}[{i}]"),
            Ty::BF16 => format!("smelt_bf16_to_f32({name}[{i}])"),
            t if t.is_f8() => format!("smelt_decode_{}({name}[{i}])", t.name()),
            _ => format!("{name}[{i}]"),
        })
    }

    pub fn expr(&self, e: &Expr) -> R<String> {
        Ok(match e {
            Expr::Int(n, t) => int_lit(*n, *t)
                .ok_or_else(|| self.err(format!("integer literal of type {}", t.name())))?,
            Expr::Float(x, t) => float_lit(*x, *t)
                .ok_or_else(|| self.err(format!("float literal of type {}", t.name())))?,
            Expr::Var(v) => self.var(*v)?.to_string(),
            Expr::Load(b, i) => self.load(*b, i)?,
            Expr::Cast(to, a) => {
                let from = self.ty(a)?.compute();
                let x = self.expr(a)?;
                self.cast(x, from, to.compute())
            }
            Expr::Un(op, a) => {
                let t = self.ty(a)?;
                let x = self.expr(a)?;
                self.unary(*op, t, x)?
            }
            // Index arithmetic divides by constants: plain C++ there (the
            // zero and -1 divisors that need the helper cannot occur).
            Expr::Bin(op @ (BinOp::Div | BinOp::Rem), a, b)
                if matches!(**b, Expr::Int(n, _) if n > 0)
                    && !self.ty(a)?.is_float()
                    && !narrow(self.ty(a)?) =>
            {
                let s = if *op == BinOp::Div { "/" } else { "%" };
                format!("({} {s} {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::Bin(op, a, b) => {
                let t = self.ty(a)?;
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.binary(*op, t, x, y)?
            }
            Expr::Cmp(op, a, b) => {
                // C++'s float comparisons are ordered except `!=`, as in
                // the kernel IR; integers compare in their own signedness.
                let _ = self.ty(a)?;
                let s = match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                format!("({} {s} {})", self.expr(a)?, self.expr(b)?)
            }
            Expr::Select(c, a, b) => {
                format!(
                    "({} ? {} : {})",
                    self.expr(c)?,
                    self.expr(a)?,
                    self.expr(b)?
                )
            }
        })
    }

    fn cast(&self, x: String, from: Ty, to: Ty) -> String {
        if from == to {
            return x;
        }
        let tc = value_c(to);
        match (from.is_float(), to.is_float()) {
            (true, false) if to == Ty::Bool => format!("({x} != 0)"),
            (true, false) => format!("smelt_sat<{tc}>({x})"),
            (false, false) if to == Ty::Bool => format!("({x} != 0)"),
            _ => format!("({tc}){x}"),
        }
    }

    fn unary(&self, op: UnOp, t: Ty, x: String) -> R<String> {
        if t.is_float() {
            let sfx = if t == Ty::F32 { "f" } else { "" };
            let b = |n: &str| format!("__builtin_{n}{sfx}({x})");
            let m = |n: &str| format!("smelt_{n}({x})");
            return Ok(match op {
                UnOp::Neg => format!("(-{x})"),
                UnOp::Abs => b("fabs"),
                UnOp::Sqrt => b("sqrt"),
                UnOp::Floor => b("floor"),
                UnOp::Ceil => b("ceil"),
                UnOp::Trunc => b("trunc"),
                // rint rounds half to even in the default rounding mode.
                UnOp::Round => b("rint"),
                UnOp::IsNan => format!("({x} != {x})"),
                UnOp::Not => return Err(self.err("not() of a float".into())),
                _ => m(op.name()),
            });
        }
        let tc = value_c(t);
        Ok(match op {
            UnOp::Neg if narrow(t) => format!("({tc})(-{x})"),
            UnOp::Neg => format!("(-{x})"),
            UnOp::Not if t == Ty::Bool => format!("(!{x})"),
            UnOp::Not if narrow(t) => format!("({tc})(~{x})"),
            UnOp::Not => format!("(~{x})"),
            UnOp::Abs if t.is_signed() => format!("smelt_iabs<{tc}>({x})"),
            UnOp::Abs | UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => x,
            UnOp::IsNan => "false".into(),
            _ => return Err(self.err(format!("{}() of an integer", op.name()))),
        })
    }

    fn binary(&self, op: BinOp, t: Ty, x: String, y: String) -> R<String> {
        if t.is_float() {
            return Ok(match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    format!("({x} {} {y})", op.name())
                }
                BinOp::Rem if t == Ty::F32 => format!("__builtin_fmodf({x}, {y})"),
                BinOp::Rem => format!("__builtin_fmod({x}, {y})"),
                BinOp::Min => format!("smelt_fmin({x}, {y})"),
                BinOp::Max => format!("smelt_fmax({x}, {y})"),
                BinOp::Pow => format!("smelt_pow({x}, {y})"),
                BinOp::Atan2 => format!("smelt_atan2({x}, {y})"),
                _ => return Err(self.err(format!("{} of floats", op.name()))),
            });
        }
        let tc = value_c(t);
        let infix = |s: &str| {
            if narrow(t) {
                format!("({tc})({x} {s} {y})")
            } else {
                format!("({x} {s} {y})")
            }
        };
        Ok(match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::And | BinOp::Or | BinOp::Xor => {
                infix(op.name())
            }
            BinOp::Div => format!("smelt_div<{tc}>({x}, {y})"),
            BinOp::Rem => format!("smelt_rem<{tc}>({x}, {y})"),
            BinOp::Min => format!("smelt_imin<{tc}>({x}, {y})"),
            BinOp::Max => format!("smelt_imax<{tc}>({x}, {y})"),
            BinOp::Shl => format!("smelt_shl<{tc}>({x}, {y})"),
            BinOp::Shr => format!("smelt_shr<{tc}>({x}, {y})"),
            // Integer power through double: exact below 2^53.
            BinOp::Pow => format!("smelt_sat<{tc}>(smelt_pow((double){x}, (double){y}))"),
            BinOp::Atan2 => return Err(self.err("atan2 of integers".into())),
        })
    }
}

fn has_parallel(body: &[Stmt]) -> bool {
    body.iter().any(|s| match s {
        Stmt::Loop { kind, body, .. } => *kind == LoopKind::Parallel || has_parallel(body),
        Stmt::If { then, els, .. } => has_parallel(then) || has_parallel(els),
        _ => false,
    })
}

fn neg_paren(s: String) -> String {
    if s.starts_with('-') {
        format!("({s})")
    } else {
        s
    }
}

fn int_lit(n: i64, t: Ty) -> Option<String> {
    Some(match t {
        Ty::Bool => (if n != 0 { "true" } else { "false" }).into(),
        Ty::I8 => format!("(int8_t){}", neg_paren((n as i8).to_string())),
        Ty::I16 => format!("(int16_t){}", neg_paren((n as i16).to_string())),
        Ty::U8 => format!("(uint8_t){}", n as u8),
        Ty::U16 => format!("(uint16_t){}", n as u16),
        Ty::I32 if n as i32 == i32::MIN => "(-2147483647 - 1)".into(),
        Ty::I32 => neg_paren((n as i32).to_string()),
        Ty::U32 => format!("{}u", n as u32),
        Ty::I64 if n == i64::MIN => "(-9223372036854775807LL - 1)".into(),
        Ty::I64 if i32::try_from(n).is_ok() => neg_paren(n.to_string()),
        Ty::I64 => neg_paren(format!("{n}LL")),
        Ty::U64 => format!("{}ull", n as u64),
        _ => return None,
    })
}

fn float_lit(x: f64, t: Ty) -> Option<String> {
    let (s, sfx) = match t {
        Ty::F32 => {
            let v = x as f32;
            if v.is_nan() {
                return Some("__builtin_nanf(\"\")".into());
            }
            if v.is_infinite() {
                return Some(
                    if v > 0.0 {
                        "__builtin_inff()"
                    } else {
                        "(-__builtin_inff())"
                    }
                    .into(),
                );
            }
            (format!("{v:?}"), "f")
        }
        Ty::F64 => {
            if x.is_nan() {
                return Some("__builtin_nan(\"\")".into());
            }
            if x.is_infinite() {
                return Some(
                    if x > 0.0 {
                        "__builtin_inf()"
                    } else {
                        "(-__builtin_inf())"
                    }
                    .into(),
                );
            }
            (format!("{x:?}"), "")
        }
        _ => return None,
    };
    Some(neg_paren(format!("{s}{sfx}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        assert_eq!(int_lit(-5, Ty::I64).unwrap(), "(-5)");
        assert_eq!(int_lit(1 << 40, Ty::I64).unwrap(), "1099511627776LL");
        assert_eq!(int_lit(-1, Ty::U32).unwrap(), "4294967295u");
        assert_eq!(int_lit(200, Ty::I8).unwrap(), "(int8_t)(-56)");
        assert_eq!(float_lit(0.1, Ty::F32).unwrap(), "0.1f");
        assert_eq!(float_lit(-1e-7, Ty::F32).unwrap(), "(-1e-7f)");
        assert_eq!(float_lit(3.0, Ty::F64).unwrap(), "3.0");
        assert_eq!(
            float_lit(f64::NEG_INFINITY, Ty::F32).unwrap(),
            "(-__builtin_inff())"
        );
        assert!(int_lit(1, Ty::F32).is_none());
    }
}
