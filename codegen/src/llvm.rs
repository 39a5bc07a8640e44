//! Scheduled kernels -> LLVM IR. Target-independent: the same module builder
//! serves the host JIT and, with a GPU schedule, the NVPTX/AMDGPU paths.
//!
//! Each kernel becomes an internal body function whose buffers are separate
//! `noalias` pointer parameters (so LLVM may vectorize without runtime alias
//! checks) and an exported entry `name(ptr args, i64 start, i64 end)` that
//! unpacks the argument array: one calling convention for every kernel.

use crate::Error;
use crate::f8;
use inkwell::builder::Builder;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::module::{Linkage, Module};
use inkwell::types::{BasicMetadataTypeEnum, BasicType, BasicTypeEnum};
use inkwell::values::{
    BasicMetadataValueEnum, BasicValueEnum, FloatValue, FunctionValue, IntValue, PointerValue,
};
use inkwell::{AddressSpace, FloatPredicate, IntPredicate};
use smelt_kernel::{BinOp, CmpOp, Expr, LoopKind, Scheduled, Stmt, Ty, UnOp, Var};
use std::collections::HashMap;

type R<T> = Result<T, Error>;

fn be<E: std::fmt::Display>(e: E) -> Error {
    Error::Llvm(e.to_string())
}

/// Adds every kernel of `kernels` to a new module named `name`.
pub fn module<'c>(ctx: &'c Context, name: &str, kernels: &[Scheduled]) -> R<Module<'c>> {
    let m = ctx.create_module(name);
    for k in kernels {
        emit(ctx, &m, k)?;
    }
    m.verify()
        .map_err(|e| Error::Llvm(format!("module {name}: {e}")))?;
    Ok(m)
}

fn storage_type<'c>(ctx: &'c Context, t: Ty) -> BasicTypeEnum<'c> {
    match t {
        Ty::Bool | Ty::I8 | Ty::U8 | Ty::F8E8M0 => ctx.i8_type().into(),
        Ty::F8E4M3FN | Ty::F8E4M3FNUZ | Ty::F8E5M2 | Ty::F8E5M2FNUZ => ctx.i8_type().into(),
        // Packed: the byte holding the element.
        Ty::I4 | Ty::U4 | Ty::I2 | Ty::U2 | Ty::F4E2M1 => ctx.i8_type().into(),
        Ty::I16 | Ty::U16 => ctx.i16_type().into(),
        Ty::I32 | Ty::U32 => ctx.i32_type().into(),
        Ty::I64 | Ty::U64 => ctx.i64_type().into(),
        Ty::F16 => ctx.f16_type().into(),
        Ty::BF16 => ctx.bf16_type().into(),
        Ty::F32 => ctx.f32_type().into(),
        Ty::F64 => ctx.f64_type().into(),
    }
}

fn value_type<'c>(ctx: &'c Context, t: Ty) -> BasicTypeEnum<'c> {
    match t.compute() {
        Ty::Bool => ctx.bool_type().into(),
        t => storage_type(ctx, t),
    }
}

struct Emitter<'a, 'c> {
    ctx: &'c Context,
    m: &'a Module<'c>,
    b: Builder<'c>,
    k: &'a smelt_kernel::Kernel,
    f: FunctionValue<'c>,
    bufs: Vec<PointerValue<'c>>,
    vals: HashMap<Var, BasicValueEnum<'c>>,
    slots: HashMap<Var, PointerValue<'c>>,
    range: (IntValue<'c>, IntValue<'c>),
}

fn emit<'c>(ctx: &'c Context, m: &Module<'c>, sk: &Scheduled) -> R<()> {
    let k = &sk.kernel;
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let mut ptypes: Vec<BasicMetadataTypeEnum> = vec![ptr.into(); k.params.len()];
    ptypes.push(i64t.into());
    ptypes.push(i64t.into());
    let body_fn = m.add_function(
        &format!("{}.body", k.name),
        ctx.void_type().fn_type(&ptypes, false),
        Some(Linkage::Internal),
    );
    // Kind ids are looked up by name; an unknown name gives id 0, which
    // LLVM would crash on, so only attributes that exist in LLVM 22 are used.
    let attr = |name: &str| {
        let id = inkwell::attributes::Attribute::get_named_enum_kind_id(name);
        debug_assert!(id != 0, "LLVM has no attribute {name}");
        ctx.create_enum_attribute(id, 0)
    };
    for i in 0..k.params.len() {
        body_fn.add_attribute(
            inkwell::attributes::AttributeLoc::Param(i as u32),
            attr("noalias"),
        );
    }
    body_fn.add_attribute(
        inkwell::attributes::AttributeLoc::Function,
        attr("alwaysinline"),
    );
    body_fn.add_attribute(
        inkwell::attributes::AttributeLoc::Function,
        attr("nounwind"),
    );

    let entry_fn = m.add_function(
        &k.name,
        ctx.void_type()
            .fn_type(&[ptr.into(), i64t.into(), i64t.into()], false),
        None,
    );
    entry_fn.add_attribute(
        inkwell::attributes::AttributeLoc::Function,
        attr("nounwind"),
    );
    {
        let b = ctx.create_builder();
        let bb = ctx.append_basic_block(entry_fn, "entry");
        b.position_at_end(bb);
        let args = entry_fn
            .get_nth_param(0)
            .ok_or(Error::Internal("args"))?
            .into_pointer_value();
        let mut call_args: Vec<BasicMetadataValueEnum> = Vec::new();
        for i in 0..k.params.len() {
            // SAFETY of the GEP: the runtime passes one pointer per parameter.
            let slot = unsafe {
                b.build_in_bounds_gep(ptr, args, &[i64t.const_int(i as u64, false)], "slot")
            }
            .map_err(be)?;
            let p = b.build_load(ptr, slot, &k.params[i].name).map_err(be)?;
            call_args.push(p.into());
        }
        call_args.push(
            entry_fn
                .get_nth_param(1)
                .ok_or(Error::Internal("start"))?
                .into(),
        );
        call_args.push(
            entry_fn
                .get_nth_param(2)
                .ok_or(Error::Internal("end"))?
                .into(),
        );
        b.build_call(body_fn, &call_args, "").map_err(be)?;
        b.build_return(None).map_err(be)?;
    }

    let b = ctx.create_builder();
    let entry = ctx.append_basic_block(body_fn, "entry");
    b.position_at_end(entry);
    let bufs = (0..k.params.len())
        .map(|i| {
            body_fn
                .get_nth_param(i as u32)
                .map(|p| p.into_pointer_value())
                .ok_or(Error::Internal("param"))
        })
        .collect::<R<Vec<_>>>()?;
    let n = k.params.len() as u32;
    let start = body_fn
        .get_nth_param(n)
        .ok_or(Error::Internal("start"))?
        .into_int_value();
    let end = body_fn
        .get_nth_param(n + 1)
        .ok_or(Error::Internal("end"))?
        .into_int_value();
    let mut e = Emitter {
        ctx,
        m,
        b,
        k,
        f: body_fn,
        bufs,
        vals: HashMap::new(),
        slots: HashMap::new(),
        range: (start, end),
    };
    // Accumulators live in entry-block allocas; mem2reg makes them registers.
    for (i, v) in k.vars.iter().enumerate() {
        if v.mutable {
            let slot =
                e.b.build_alloca(value_type(ctx, v.ty), &v.name)
                    .map_err(be)?;
            e.slots.insert(Var(i as u32), slot);
        }
    }
    e.stmts(&sk.body)?;
    e.b.build_return(None).map_err(be)?;
    Ok(())
}

impl<'a, 'c> Emitter<'a, 'c> {
    fn ty(&self, e: &Expr) -> R<Ty> {
        self.k
            .type_of(e)
            .ok_or_else(|| Error::Kernel(format!("{}: ill-typed expression", self.k.name)))
    }

    fn stmts(&mut self, body: &[Stmt]) -> R<()> {
        for s in body {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::Let(v, e) => {
                let x = self.expr(e)?;
                self.vals.insert(*v, x);
            }
            Stmt::Decl(v, e) | Stmt::Set(v, e) => {
                let x = self.expr(e)?;
                let slot = *self.slots.get(v).ok_or_else(|| {
                    Error::Kernel(format!("{}: assignment to immutable variable", self.k.name))
                })?;
                self.b.build_store(slot, x).map_err(be)?;
            }
            Stmt::Store { buf, index, value } if self.k.params[*buf].ty.packed_bits().is_some() => {
                self.store_packed(*buf, index, value)?;
            }
            Stmt::Store { buf, index, value } => {
                let p = self.elem_ptr(*buf, index)?;
                let x = self.expr(value)?;
                let t = self.k.params[*buf].ty;
                let x = self.to_storage(x, t)?;
                self.b.build_store(p, x).map_err(be)?;
            }
            Stmt::Loop {
                var,
                extent,
                kind,
                body,
            } => {
                let (lo, hi) = if *kind == LoopKind::Parallel {
                    self.range
                } else {
                    let hi = self.expr(extent)?.into_int_value();
                    (self.ctx.i64_type().const_zero(), hi)
                };
                self.emit_loop(*var, lo, hi, body)?;
            }
            Stmt::If { cond, then, els } => {
                let c = self.expr(cond)?.into_int_value();
                let t_bb = self.ctx.append_basic_block(self.f, "then");
                let e_bb = self.ctx.append_basic_block(self.f, "else");
                let j_bb = self.ctx.append_basic_block(self.f, "endif");
                self.b.build_conditional_branch(c, t_bb, e_bb).map_err(be)?;
                self.b.position_at_end(t_bb);
                self.stmts(then)?;
                self.b.build_unconditional_branch(j_bb).map_err(be)?;
                self.b.position_at_end(e_bb);
                self.stmts(els)?;
                self.b.build_unconditional_branch(j_bb).map_err(be)?;
                self.b.position_at_end(j_bb);
            }
        }
        Ok(())
    }

    fn emit_loop(&mut self, var: Var, lo: IntValue<'c>, hi: IntValue<'c>, body: &[Stmt]) -> R<()> {
        let i64t = self.ctx.i64_type();
        let pre = self.b.get_insert_block().ok_or(Error::Internal("block"))?;
        let head = self.ctx.append_basic_block(self.f, "loop");
        let bodyb = self.ctx.append_basic_block(self.f, "body");
        let exit = self.ctx.append_basic_block(self.f, "exit");
        self.b.build_unconditional_branch(head).map_err(be)?;
        self.b.position_at_end(head);
        let phi = self.b.build_phi(i64t, "i").map_err(be)?;
        phi.add_incoming(&[(&lo, pre)]);
        let iv = phi.as_basic_value().into_int_value();
        let c = self
            .b
            .build_int_compare(IntPredicate::SLT, iv, hi, "cond")
            .map_err(be)?;
        self.b
            .build_conditional_branch(c, bodyb, exit)
            .map_err(be)?;
        self.b.position_at_end(bodyb);
        self.vals.insert(var, iv.into());
        self.stmts(body)?;
        let next = self
            .b
            .build_int_nsw_add(iv, i64t.const_int(1, false), "next")
            .map_err(be)?;
        let latch = self.b.get_insert_block().ok_or(Error::Internal("block"))?;
        phi.add_incoming(&[(&next, latch)]);
        self.b.build_unconditional_branch(head).map_err(be)?;
        self.b.position_at_end(exit);
        Ok(())
    }

    fn elem_ptr(&mut self, buf: usize, index: &Expr) -> R<PointerValue<'c>> {
        let p = *self
            .bufs
            .get(buf)
            .ok_or_else(|| Error::Kernel(format!("{}: no parameter {buf}", self.k.name)))?;
        let i = self.expr(index)?.into_int_value();
        let et = storage_type(self.ctx, self.k.params[buf].ty);
        // SAFETY of the GEP: lowerings index within `len` (checked by the
        // interpreter-vs-JIT conformance tests, not at run time).
        unsafe { self.b.build_in_bounds_gep(et, p, &[i], "p") }.map_err(be)
    }

    fn to_storage(&self, x: BasicValueEnum<'c>, t: Ty) -> R<BasicValueEnum<'c>> {
        Ok(match t {
            Ty::Bool => self
                .b
                .build_int_z_extend(x.into_int_value(), self.ctx.i8_type(), "b8")
                .map_err(be)?
                .into(),
            Ty::F16 | Ty::BF16 => self
                .b
                .build_float_trunc(
                    x.into_float_value(),
                    storage_type(self.ctx, t).into_float_type(),
                    "h",
                )
                .map_err(be)?
                .into(),
            t if t.is_f8() => self.f8_encode(x.into_float_value(), t)?.into(),
            _ => x,
        })
    }

    /// An FP8 code as its value: a lookup in the format's 256-entry table
    /// (a module-private constant, one per format).
    fn f8_decode(&self, code: IntValue<'c>, t: Ty) -> R<BasicValueEnum<'c>> {
        let f = f8::format(t).ok_or(Error::Internal("f8 format"))?;
        let f32t = self.ctx.f32_type();
        let arr = f32t.array_type(256);
        let name = format!("smelt.decode.{}", t.name());
        let g = match self.m.get_global(&name) {
            Some(g) => g,
            None => {
                let vals: Vec<FloatValue> = (0..=255u8)
                    .map(|c| f32t.const_float(f64::from(f.decode(c))))
                    .collect();
                let g = self.m.add_global(arr, None, &name);
                g.set_initializer(&f32t.const_array(&vals));
                g.set_constant(true);
                g.set_linkage(Linkage::Private);
                g
            }
        };
        let i64t = self.ctx.i64_type();
        let i = self.b.build_int_z_extend(code, i64t, "code").map_err(be)?;
        // SAFETY of the GEP: a zero-extended byte indexes a 256-entry table.
        let p = unsafe {
            self.b
                .build_in_bounds_gep(arr, g.as_pointer_value(), &[i64t.const_zero(), i], "dec")
        }
        .map_err(be)?;
        self.b.build_load(f32t, p, "f8").map_err(be)
    }

    /// Rounds `x` to nearest even in FP8 format `t`; beyond the largest
    /// finite value it gives inf where the format has one, else NaN. The
    /// normal range rounds the f32 bit pattern (a carry moves to the next
    /// binade by itself); the subnormal range scales by a power of two,
    /// which is exact, and rounds to an integer code.
    fn f8_encode(&self, x: FloatValue<'c>, t: Ty) -> R<IntValue<'c>> {
        let f = f8::format(t).ok_or(Error::Internal("f8 format"))?;
        let (b, ctx) = (&self.b, self.ctx);
        let (i32t, f32t) = (ctx.i32_type(), ctx.f32_type());
        let c = |n: i64| i32t.const_int(n as u64, true);
        let x = if x.get_type() == f32t {
            x
        } else {
            b.build_float_cast(x, f32t, "x32").map_err(be)?
        };
        let bits = b
            .build_bit_cast(x, i32t, "bits")
            .map_err(be)?
            .into_int_value();
        let abits = b.build_and(bits, c(0x7fff_ffff), "abits").map_err(be)?;
        let a = b
            .build_bit_cast(abits, f32t, "a")
            .map_err(be)?
            .into_float_value();
        let man = i64::from(f.man_bits);
        let sh = 23 - man;
        let lsb = b
            .build_right_shift(abits, c(sh), false, "lsb")
            .map_err(be)?;
        let lsb = b.build_and(lsb, c(1), "lsb1").map_err(be)?;
        let r = b
            .build_int_add(abits, c((1 << (sh - 1)) - 1), "r0")
            .map_err(be)?;
        let r = b.build_int_add(r, lsb, "r1").map_err(be)?;
        let r = b.build_right_shift(r, c(sh), false, "r2").map_err(be)?;
        let normal = b
            .build_int_sub(r, c((127 - i64::from(f.bias)) << man), "norm")
            .map_err(be)?;
        let scaled = b
            .build_float_mul(
                a,
                f32t.const_float(2f64.powi(f.bias - 1 + f.man_bits as i32)),
                "sc",
            )
            .map_err(be)?;
        let q = self
            .intrinsic("llvm.roundeven", &[f32t.into()], &[scaled.into()])?
            .into_float_value();
        let q = b.build_float_to_signed_int(q, i32t, "q").map_err(be)?;
        let small = b
            .build_float_compare(
                FloatPredicate::OLT,
                a,
                f32t.const_float(f64::from(f.min_normal())),
                "small",
            )
            .map_err(be)?;
        let code = b
            .build_select(small, q, normal, "code")
            .map_err(be)?
            .into_int_value();
        let over = b
            .build_int_compare(IntPredicate::SGT, code, c(i64::from(f.max_code())), "over")
            .map_err(be)?;
        let neg = b
            .build_float_compare(FloatPredicate::OLT, x, f32t.const_zero(), "neg")
            .map_err(be)?;
        let sign = b
            .build_select(neg, c(i64::from(f.sign_bit())), c(0), "sign")
            .map_err(be)?
            .into_int_value();
        let nan = c(i64::from(f.nan_code()));
        // FNUZ has no negative zero: a tiny negative value rounds to +0.
        let signed_code = if f.uz {
            let nz = b
                .build_int_compare(IntPredicate::NE, code, c(0), "nz")
                .map_err(be)?;
            let s = b
                .build_select(nz, sign, c(0), "s")
                .map_err(be)?
                .into_int_value();
            b.build_or(code, s, "sc").map_err(be)?
        } else {
            b.build_or(code, sign, "sc").map_err(be)?
        };
        let over_code = match f.inf_code() {
            _ if f.always_saturates() => b
                .build_or(c(i64::from(f.max_code())), sign, "max")
                .map_err(be)?,
            Some(i) => b.build_or(c(i64::from(i)), sign, "inf").map_err(be)?,
            None => nan,
        };
        let res = b
            .build_select(over, over_code, signed_code, "ov")
            .map_err(be)?
            .into_int_value();
        let isnan = b
            .build_float_compare(FloatPredicate::UNO, x, x, "isnan")
            .map_err(be)?;
        let res = b
            .build_select(isnan, nan, res, "nn")
            .map_err(be)?
            .into_int_value();
        b.build_int_truncate(res, ctx.i8_type(), "f8").map_err(be)
    }

    /// The byte holding packed element `index` of `buf`, and the element's
    /// bit offset in it (an i8).
    fn packed_at(&mut self, buf: usize, index: &Expr) -> R<(PointerValue<'c>, IntValue<'c>)> {
        let t = self.k.params[buf].ty;
        let bits = t.packed_bits().ok_or(Error::Internal("packed"))?;
        let p = *self
            .bufs
            .get(buf)
            .ok_or_else(|| Error::Kernel(format!("{}: no parameter {buf}", self.k.name)))?;
        let i = self.expr(index)?.into_int_value();
        let i64t = self.ctx.i64_type();
        let per = u64::from(8 / bits);
        let byte = self
            .b
            .build_right_shift(
                i,
                i64t.const_int(per.trailing_zeros().into(), false),
                false,
                "byte",
            )
            .map_err(be)?;
        let slot = self
            .b
            .build_and(i, i64t.const_int(per - 1, false), "slot")
            .map_err(be)?;
        let sh = self
            .b
            .build_int_mul(slot, i64t.const_int(bits.into(), false), "sh")
            .map_err(be)?;
        let sh = self
            .b
            .build_int_truncate(sh, self.ctx.i8_type(), "sh8")
            .map_err(be)?;
        // SAFETY of the GEP: as for `elem_ptr`, lowerings index within `len`.
        let ptr = unsafe {
            self.b
                .build_in_bounds_gep(self.ctx.i8_type(), p, &[byte], "pb")
        }
        .map_err(be)?;
        Ok((ptr, sh))
    }

    fn load_packed(&mut self, buf: usize, index: &Expr) -> R<BasicValueEnum<'c>> {
        let t = self.k.params[buf].ty;
        let bits = t.packed_bits().ok_or(Error::Internal("packed"))?;
        let (p, sh) = self.packed_at(buf, index)?;
        let i8t = self.ctx.i8_type();
        let byte = self
            .b
            .build_load(i8t, p, "pk")
            .map_err(be)?
            .into_int_value();
        let v = self.b.build_right_shift(byte, sh, false, "v").map_err(be)?;
        let v = self
            .b
            .build_and(v, i8t.const_int((1 << bits) - 1, false), "code")
            .map_err(be)?;
        Ok(match t {
            Ty::I4 | Ty::I2 => {
                let k = i8t.const_int(u64::from(8 - bits), false);
                let v = self.b.build_left_shift(v, k, "hi").map_err(be)?;
                self.b
                    .build_right_shift(v, k, true, "sx")
                    .map_err(be)?
                    .into()
            }
            Ty::F4E2M1 => self.f8_decode(v, t)?,
            _ => v.into(),
        })
    }

    /// Replaces only this element's bits, with two atomic read-modify-writes
    /// (clear, then set): threads may write the other elements of the byte.
    fn store_packed(&mut self, buf: usize, index: &Expr, value: &Expr) -> R<()> {
        let t = self.k.params[buf].ty;
        let bits = t.packed_bits().ok_or(Error::Internal("packed"))?;
        let (p, sh) = self.packed_at(buf, index)?;
        let x = self.expr(value)?;
        let i8t = self.ctx.i8_type();
        let code = if t == Ty::F4E2M1 {
            self.f8_encode(x.into_float_value(), t)?
        } else {
            x.into_int_value()
        };
        let mask = i8t.const_int((1 << bits) - 1, false);
        let code = self.b.build_and(code, mask, "c").map_err(be)?;
        let code = self.b.build_left_shift(code, sh, "cs").map_err(be)?;
        let m = self.b.build_left_shift(mask, sh, "ms").map_err(be)?;
        let keep = self.b.build_not(m, "keep").map_err(be)?;
        use inkwell::AtomicOrdering::Monotonic;
        use inkwell::AtomicRMWBinOp;
        self.b
            .build_atomicrmw(AtomicRMWBinOp::And, p, keep, Monotonic)
            .map_err(be)?;
        self.b
            .build_atomicrmw(AtomicRMWBinOp::Or, p, code, Monotonic)
            .map_err(be)?;
        Ok(())
    }

    fn intrinsic(
        &self,
        name: &str,
        tys: &[BasicTypeEnum<'c>],
        args: &[BasicValueEnum<'c>],
    ) -> R<BasicValueEnum<'c>> {
        let i = Intrinsic::find(name).ok_or_else(|| Error::Llvm(format!("no intrinsic {name}")))?;
        let f = i
            .get_declaration(self.m, tys)
            .ok_or_else(|| Error::Llvm(format!("cannot declare {name}")))?;
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        self.b
            .build_call(f, &args, name)
            .map_err(be)?
            .try_as_basic_value()
            .basic()
            .ok_or_else(|| Error::Llvm(format!("{name} returns nothing")))
    }

    /// A C math library function (`tanhf` for f32, `tanh` for f64).
    fn libm(&self, base: &str, t: Ty, args: &[BasicValueEnum<'c>]) -> R<BasicValueEnum<'c>> {
        let name = if t == Ty::F32 {
            format!("{base}f")
        } else {
            base.to_string()
        };
        let ft = value_type(self.ctx, t);
        let f = self.m.get_function(&name).unwrap_or_else(|| {
            let ps: Vec<BasicMetadataTypeEnum> = args.iter().map(|_| ft.into()).collect();
            self.m
                .add_function(&name, ft.fn_type(&ps, false), Some(Linkage::External))
        });
        let args: Vec<BasicMetadataValueEnum> = args.iter().map(|a| (*a).into()).collect();
        let call = self.b.build_call(f, &args, &name).map_err(be)?;
        // No errno, no side effects at this call (as with -fno-math-errno):
        // lets the vectorizer use the SIMD variants of the vector library.
        let loc = inkwell::attributes::AttributeLoc::Function;
        for (kind, val) in [("memory", 0u64), ("nounwind", 0), ("willreturn", 0)] {
            let id = inkwell::attributes::Attribute::get_named_enum_kind_id(kind);
            call.add_attribute(loc, self.ctx.create_enum_attribute(id, val));
        }
        call.try_as_basic_value()
            .basic()
            .ok_or_else(|| Error::Llvm(format!("{name} returns nothing")))
    }

    fn expr(&mut self, e: &Expr) -> R<BasicValueEnum<'c>> {
        let ctx = self.ctx;
        Ok(match e {
            Expr::Int(n, t) => match value_type(ctx, *t) {
                BasicTypeEnum::IntType(it) => it.const_int(*n as u64, t.is_signed()).into(),
                _ => {
                    return Err(Error::Kernel(format!(
                        "{}: integer literal of type {}",
                        self.k.name,
                        t.name()
                    )));
                }
            },
            Expr::Float(x, t) => match value_type(ctx, *t) {
                BasicTypeEnum::FloatType(ft) => ft.const_float(*x).into(),
                _ => {
                    return Err(Error::Kernel(format!(
                        "{}: float literal of type {}",
                        self.k.name,
                        t.name()
                    )));
                }
            },
            Expr::Var(v) => {
                if let Some(slot) = self.slots.get(v) {
                    let t = self.k.var_info(*v).ty;
                    self.b
                        .build_load(value_type(ctx, t), *slot, "acc")
                        .map_err(be)?
                } else {
                    *self.vals.get(v).ok_or_else(|| {
                        Error::Kernel(format!(
                            "{}: variable {} used before it is bound",
                            self.k.name,
                            self.k.var_info(*v).name
                        ))
                    })?
                }
            }
            Expr::Load(buf, index) if self.k.params[*buf].ty.packed_bits().is_some() => {
                self.load_packed(*buf, index)?
            }
            Expr::Load(buf, index) => {
                let p = self.elem_ptr(*buf, index)?;
                let t = self.k.params[*buf].ty;
                let x = self
                    .b
                    .build_load(storage_type(ctx, t), p, "ld")
                    .map_err(be)?;
                match t {
                    Ty::Bool => self
                        .b
                        .build_int_compare(
                            IntPredicate::NE,
                            x.into_int_value(),
                            ctx.i8_type().const_zero(),
                            "b",
                        )
                        .map_err(be)?
                        .into(),
                    Ty::F16 | Ty::BF16 => self
                        .b
                        .build_float_ext(x.into_float_value(), ctx.f32_type(), "f")
                        .map_err(be)?
                        .into(),
                    t if t.is_f8() => self.f8_decode(x.into_int_value(), t)?,
                    _ => x,
                }
            }
            Expr::Cast(to, a) => {
                let from = self.ty(a)?;
                let x = self.expr(a)?;
                self.cast(x, from, *to)?
            }
            Expr::Un(op, a) => {
                let t = self.ty(a)?;
                let x = self.expr(a)?;
                self.unary(*op, t, x)?
            }
            Expr::Bin(op, a, b) => {
                let t = self.ty(a)?;
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.binary(*op, t, x, y)?
            }
            Expr::Cmp(op, a, b) => {
                let t = self.ty(a)?;
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                if t.is_float() {
                    let p = match op {
                        CmpOp::Eq => FloatPredicate::OEQ,
                        CmpOp::Ne => FloatPredicate::UNE,
                        CmpOp::Lt => FloatPredicate::OLT,
                        CmpOp::Le => FloatPredicate::OLE,
                        CmpOp::Gt => FloatPredicate::OGT,
                        CmpOp::Ge => FloatPredicate::OGE,
                    };
                    self.b
                        .build_float_compare(p, x.into_float_value(), y.into_float_value(), "c")
                        .map_err(be)?
                        .into()
                } else {
                    let s = t.is_signed();
                    let p = match (op, s) {
                        (CmpOp::Eq, _) => IntPredicate::EQ,
                        (CmpOp::Ne, _) => IntPredicate::NE,
                        (CmpOp::Lt, true) => IntPredicate::SLT,
                        (CmpOp::Le, true) => IntPredicate::SLE,
                        (CmpOp::Gt, true) => IntPredicate::SGT,
                        (CmpOp::Ge, true) => IntPredicate::SGE,
                        (CmpOp::Lt, false) => IntPredicate::ULT,
                        (CmpOp::Le, false) => IntPredicate::ULE,
                        (CmpOp::Gt, false) => IntPredicate::UGT,
                        (CmpOp::Ge, false) => IntPredicate::UGE,
                    };
                    self.b
                        .build_int_compare(p, x.into_int_value(), y.into_int_value(), "c")
                        .map_err(be)?
                        .into()
                }
            }
            Expr::Select(c, a, b) => {
                let c = self.expr(c)?.into_int_value();
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.b.build_select(c, x, y, "sel").map_err(be)?
            }
        })
    }

    fn cast(&self, x: BasicValueEnum<'c>, from: Ty, to: Ty) -> R<BasicValueEnum<'c>> {
        let ctx = self.ctx;
        let to = to.compute();
        let from = from.compute();
        if from == to {
            return Ok(x);
        }
        let dst = value_type(ctx, to);
        Ok(match (from.is_float(), to.is_float()) {
            (true, true) => self
                .b
                .build_float_cast(x.into_float_value(), dst.into_float_type(), "fc")
                .map_err(be)?
                .into(),
            (false, true) => {
                let xi = x.into_int_value();
                if from.is_signed() {
                    self.b
                        .build_signed_int_to_float(xi, dst.into_float_type(), "sf")
                        .map_err(be)?
                        .into()
                } else {
                    self.b
                        .build_unsigned_int_to_float(xi, dst.into_float_type(), "uf")
                        .map_err(be)?
                        .into()
                }
            }
            (true, false) => {
                if to == Ty::Bool {
                    let fx = x.into_float_value();
                    let z = fx.get_type().const_zero();
                    self.b
                        .build_float_compare(FloatPredicate::UNE, fx, z, "fb")
                        .map_err(be)?
                        .into()
                } else {
                    let name = if to.is_signed() {
                        "llvm.fptosi.sat"
                    } else {
                        "llvm.fptoui.sat"
                    };
                    self.intrinsic(name, &[dst, x.get_type()], &[x])?
                }
            }
            (false, false) => {
                let xi = x.into_int_value();
                if to == Ty::Bool {
                    self.b
                        .build_int_compare(IntPredicate::NE, xi, xi.get_type().const_zero(), "ib")
                        .map_err(be)?
                        .into()
                } else {
                    self.b
                        .build_int_cast_sign_flag(xi, dst.into_int_type(), from.is_signed(), "ic")
                        .map_err(be)?
                        .into()
                }
            }
        })
    }

    fn unary(&self, op: UnOp, t: Ty, x: BasicValueEnum<'c>) -> R<BasicValueEnum<'c>> {
        let vt = value_type(self.ctx, t);
        if t.is_float() {
            let fx: FloatValue = x.into_float_value();
            let intr = |n: &str| self.intrinsic(n, &[vt], &[x]);
            return match op {
                UnOp::Neg => Ok(self.b.build_float_neg(fx, "neg").map_err(be)?.into()),
                UnOp::Abs => intr("llvm.fabs"),
                UnOp::Sqrt => intr("llvm.sqrt"),
                UnOp::Exp => intr("llvm.exp"),
                UnOp::Log => intr("llvm.log"),
                UnOp::Sin => intr("llvm.sin"),
                UnOp::Cos => intr("llvm.cos"),
                UnOp::Floor => intr("llvm.floor"),
                UnOp::Ceil => intr("llvm.ceil"),
                UnOp::Round => intr("llvm.roundeven"),
                UnOp::Trunc => intr("llvm.trunc"),
                UnOp::Tan => self.libm("tan", t, &[x]),
                UnOp::Asin => self.libm("asin", t, &[x]),
                UnOp::Acos => self.libm("acos", t, &[x]),
                UnOp::Atan => self.libm("atan", t, &[x]),
                UnOp::Sinh => self.libm("sinh", t, &[x]),
                UnOp::Cosh => self.libm("cosh", t, &[x]),
                UnOp::Tanh => self.libm("tanh", t, &[x]),
                UnOp::Asinh => self.libm("asinh", t, &[x]),
                UnOp::Acosh => self.libm("acosh", t, &[x]),
                UnOp::Atanh => self.libm("atanh", t, &[x]),
                UnOp::Erf => self.libm("erf", t, &[x]),
                UnOp::IsNan => Ok(self
                    .b
                    .build_float_compare(FloatPredicate::UNO, fx, fx, "nan")
                    .map_err(be)?
                    .into()),
                UnOp::Not => Err(Error::Kernel(format!("{}: not() of a float", self.k.name))),
            };
        }
        let ix = x.into_int_value();
        let it = ix.get_type();
        Ok(match op {
            UnOp::Neg => self.b.build_int_neg(ix, "neg").map_err(be)?.into(),
            UnOp::Not => self.b.build_not(ix, "not").map_err(be)?.into(),
            UnOp::Abs if t.is_signed() => self.intrinsic(
                "llvm.abs",
                &[vt],
                &[x, self.ctx.bool_type().const_zero().into()],
            )?,
            UnOp::Abs | UnOp::Floor | UnOp::Ceil | UnOp::Round | UnOp::Trunc => x,
            UnOp::IsNan => self.ctx.bool_type().const_zero().into(),
            _ => {
                let _ = it;
                return Err(Error::Kernel(format!(
                    "{}: {}() of an integer",
                    self.k.name,
                    op.name()
                )));
            }
        })
    }

    fn binary(
        &self,
        op: BinOp,
        t: Ty,
        x: BasicValueEnum<'c>,
        y: BasicValueEnum<'c>,
    ) -> R<BasicValueEnum<'c>> {
        let vt = value_type(self.ctx, t);
        let b = &self.b;
        if t.is_float() {
            let (fx, fy) = (x.into_float_value(), y.into_float_value());
            return Ok(match op {
                BinOp::Add => b.build_float_add(fx, fy, "add").map_err(be)?.into(),
                BinOp::Sub => b.build_float_sub(fx, fy, "sub").map_err(be)?.into(),
                BinOp::Mul => b.build_float_mul(fx, fy, "mul").map_err(be)?.into(),
                BinOp::Div => b.build_float_div(fx, fy, "div").map_err(be)?.into(),
                BinOp::Rem => b.build_float_rem(fx, fy, "rem").map_err(be)?.into(),
                BinOp::Min => self.intrinsic("llvm.minimum", &[vt], &[x, y])?,
                BinOp::Max => self.intrinsic("llvm.maximum", &[vt], &[x, y])?,
                BinOp::Pow => self.intrinsic("llvm.pow", &[vt], &[x, y])?,
                BinOp::Atan2 => self.libm("atan2", t, &[x, y])?,
                _ => {
                    return Err(Error::Kernel(format!(
                        "{}: {} of floats",
                        self.k.name,
                        op.name()
                    )));
                }
            });
        }
        let (ix, iy) = (x.into_int_value(), y.into_int_value());
        let it = ix.get_type();
        let s = t.is_signed();
        let zero = it.const_zero();
        // Division by zero traps on x86; ONNX leaves it undefined, smelt
        // gives 0 rather than a crash.
        let guarded = |f: &dyn Fn(IntValue<'c>) -> R<IntValue<'c>>| -> R<BasicValueEnum<'c>> {
            let is0 = b
                .build_int_compare(IntPredicate::EQ, iy, zero, "z")
                .map_err(be)?;
            let safe = b
                .build_select(is0, it.const_int(1, false), iy, "d")
                .map_err(be)?
                .into_int_value();
            let r = f(safe)?;
            b.build_select(is0, zero, r, "q").map_err(be)
        };
        Ok(match op {
            BinOp::Add => b.build_int_add(ix, iy, "add").map_err(be)?.into(),
            BinOp::Sub => b.build_int_sub(ix, iy, "sub").map_err(be)?.into(),
            BinOp::Mul => b.build_int_mul(ix, iy, "mul").map_err(be)?.into(),
            BinOp::Div if s => guarded(&|d| b.build_int_signed_div(ix, d, "div").map_err(be))?,
            BinOp::Div => guarded(&|d| b.build_int_unsigned_div(ix, d, "div").map_err(be))?,
            BinOp::Rem if s => guarded(&|d| b.build_int_signed_rem(ix, d, "rem").map_err(be))?,
            BinOp::Rem => guarded(&|d| b.build_int_unsigned_rem(ix, d, "rem").map_err(be))?,
            BinOp::Min => {
                self.intrinsic(if s { "llvm.smin" } else { "llvm.umin" }, &[vt], &[x, y])?
            }
            BinOp::Max => {
                self.intrinsic(if s { "llvm.smax" } else { "llvm.umax" }, &[vt], &[x, y])?
            }
            BinOp::And => b.build_and(ix, iy, "and").map_err(be)?.into(),
            BinOp::Or => b.build_or(ix, iy, "or").map_err(be)?.into(),
            BinOp::Xor => b.build_xor(ix, iy, "xor").map_err(be)?.into(),
            BinOp::Shl | BinOp::Shr => {
                // Shifting by the width or more is poison in LLVM; ONNX's
                // BitShift then gives 0.
                let bits = it.const_int(it.get_bit_width() as u64, false);
                let big = b
                    .build_int_compare(IntPredicate::UGE, iy, bits, "big")
                    .map_err(be)?;
                let r = if op == BinOp::Shl {
                    b.build_left_shift(ix, iy, "shl").map_err(be)?
                } else {
                    b.build_right_shift(ix, iy, s, "shr").map_err(be)?
                };
                // An arithmetic right shift that far fills with the sign.
                let empty = if op == BinOp::Shr && s {
                    let neg = b
                        .build_int_compare(IntPredicate::SLT, ix, zero, "neg")
                        .map_err(be)?;
                    b.build_select(neg, it.const_all_ones(), zero, "fill")
                        .map_err(be)?
                        .into_int_value()
                } else {
                    zero
                };
                b.build_select(big, empty, r, "sh").map_err(be)?
            }
            BinOp::Pow => {
                // Integer power through f64: exact for results below 2^53.
                let f = self.ctx.f64_type();
                let cv = |v: IntValue<'c>| -> R<FloatValue<'c>> {
                    if s {
                        b.build_signed_int_to_float(v, f, "pf").map_err(be)
                    } else {
                        b.build_unsigned_int_to_float(v, f, "pf").map_err(be)
                    }
                };
                let (fx, fy) = (cv(ix)?, cv(iy)?);
                let r = self.intrinsic("llvm.pow", &[f.into()], &[fx.into(), fy.into()])?;
                let n = if s {
                    "llvm.fptosi.sat"
                } else {
                    "llvm.fptoui.sat"
                };
                self.intrinsic(n, &[vt, f.into()], &[r])?
            }
            BinOp::Atan2 => {
                return Err(Error::Kernel(format!("{}: atan2 of integers", self.k.name)));
            }
        })
    }
}
