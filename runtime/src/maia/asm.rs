//! The text form of a `.smx` artifact: `disasm` prints it, `assemble` reads
//! it back (assemble ∘ disasm = id). It lets tests and architects write
//! programs by hand before the backend exists. One directive or command per
//! line; `;` starts a comment.
//!
//! ```text
//! .smx version=1 devices=1
//! .hw {"clock_hz":1e9,...}                        ; HwConfig as JSON
//! .region name=x kind=input offset=0x0 bytes=256 dtype=f32 shape=8,8
//! .data x 0000803f...                              ; initial bytes, hex
//! t0.dma0   dma src=hbm[0x0] dst=sram.0[0x0] sdt=f32 ddt=bf16 rows=8 cols=8 sstride=8 dstride=8
//! t0.tensor matmul dt=bf16 m=8 n=8 k=8 a=0x0 b=0x80 c=0x100 acc=0
//! t0.vector exp dt=f32 rows=8 cols=8 dst=0x0 a=0x0
//! t0.vector sub dt=f32 rows=8 cols=8 dst=0x0 a=0x0 b=row:0x100
//! t0.ctrl   wait sem=0.1 n=1
//! ```

use super::Error;
use super::artifact::{Artifact, Io, OLDEST_VERSION, Region, RegionKind, VERSION};
use super::dtype::Dt;
use super::hw::HwConfig;
use super::isa::*;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn disasm(a: &Artifact) -> String {
    let mut s = String::new();
    let _ = writeln!(s, ".smx version={VERSION} devices={}", a.devices);
    let _ = writeln!(
        s,
        ".hw {}",
        serde_json::to_string(&a.hw).unwrap_or_default()
    );
    if a.io != Io::default() {
        let _ = writeln!(
            s,
            ".io {}",
            serde_json::to_string(&a.io).unwrap_or_default()
        );
    }
    for r in &a.regions {
        let shape: Vec<String> = r.shape.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(
            s,
            ".region name={} kind={} offset={:#x} bytes={} dtype={} shape={}",
            r.name,
            r.kind.name(),
            r.offset,
            r.bytes,
            r.dtype,
            shape.join(",")
        );
    }
    for r in &a.regions {
        if let Some(d) = &r.data {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            let _ = writeln!(s, ".data {} {hex}", r.name);
        }
    }
    for (i, c) in a.commands.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<10} {:<50} ; #{i}",
            c.queue.to_string(),
            command_text(&c.op)
        );
    }
    s
}

/// One command's text, without the queue.
pub fn command_text(op: &Op) -> String {
    match op {
        Op::Dma {
            src,
            dst,
            src_dt,
            dst_dt,
            rows,
            cols,
            src_stride,
            dst_stride,
            saturate,
        } => format!(
            "dma src={src} dst={dst} sdt={src_dt} ddt={dst_dt} rows={rows} cols={cols} sstride={src_stride} dstride={dst_stride}{}",
            if *saturate { "" } else { " sat=0" }
        ),
        Op::DmaGather {
            src,
            dst,
            idx,
            dt,
            idx_dt,
            rows,
            cols,
            src_stride,
            dst_stride,
            idx_stride,
            bound,
        } => format!(
            "dma.gather src={src} dst={dst} idx={idx} dt={dt} idt={idx_dt} rows={rows} cols={cols} sstride={src_stride} dstride={dst_stride} istride={idx_stride} bound={bound}"
        ),
        Op::DmaScatter {
            src,
            dst,
            idx,
            dt,
            idx_dt,
            red,
            rows,
            cols,
            src_stride,
            dst_stride,
            idx_stride,
            bound,
        } => format!(
            "dma.scatter src={src} dst={dst} idx={idx} dt={dt} idt={idx_dt} red={} rows={rows} cols={cols} sstride={src_stride} dstride={dst_stride} istride={idx_stride} bound={bound}",
            red.name()
        ),
        Op::Matmul {
            dt,
            m,
            n,
            k,
            a,
            b,
            c,
            acc,
        } => {
            format!(
                "matmul dt={dt} m={m} n={n} k={k} a={a:#x} b={b:#x} c={c:#x} acc={}",
                *acc as u8
            )
        }
        Op::Vector {
            op,
            dt,
            rows,
            cols,
            dst,
            a,
            b,
        } => {
            let mut t = format!(
                "{} dt={dt} rows={rows} cols={cols} dst={dst:#x} a={a:#x}",
                op.name()
            );
            match b {
                VSrc::None => {}
                VSrc::Full(x) => t += &format!(" b=full:{x:#x}"),
                VSrc::Row(x) => t += &format!(" b=row:{x:#x}"),
                VSrc::Col(x) => t += &format!(" b=col:{x:#x}"),
                VSrc::Imm(f) => t += &format!(" b=imm:{f:?}"),
            }
            t
        }
        Op::Reduce {
            op,
            dt,
            rows,
            cols,
            dst,
            src,
        } => {
            format!(
                "reduce.{} dt={dt} rows={rows} cols={cols} dst={dst:#x} src={src:#x}",
                op.name()
            )
        }
        Op::Convert {
            src_dt,
            dst_dt,
            n,
            dst,
            src,
        } => format!("cvt sdt={src_dt} ddt={dst_dt} n={n} dst={dst:#x} src={src:#x}"),
        Op::Signal { sem, n } => format!("signal sem={}.{} n={n}", sem.tile, sem.idx),
        Op::Wait { sem, n } => format!("wait sem={}.{} n={n}", sem.tile, sem.idx),
        Op::Barrier { id, count } => format!("barrier id={id} count={count}"),
        Op::AllReduce { dt, n, addr } => format!("allreduce dt={dt} n={n} addr={addr:#x}"),
        Op::AllGather { dt, n, src, dst } => {
            format!("allgather dt={dt} n={n} src={src:#x} dst={dst:#x}")
        }
    }
}

/// key=value fields of one line; each must be used exactly once.
struct Fields<'a> {
    line: usize,
    map: BTreeMap<&'a str, &'a str>,
}

impl<'a> Fields<'a> {
    fn new(line: usize, toks: &[&'a str]) -> Result<Fields<'a>, Error> {
        let mut map = BTreeMap::new();
        for t in toks {
            let (k, v) = t
                .split_once('=')
                .ok_or_else(|| err(line, format!("expected key=value, got `{t}`")))?;
            if map.insert(k, v).is_some() {
                return Err(err(line, format!("`{k}` given twice")));
            }
        }
        Ok(Fields { line, map })
    }
    fn str(&mut self, k: &str) -> Result<&'a str, Error> {
        self.map
            .remove(k)
            .ok_or_else(|| err(self.line, format!("missing `{k}=`")))
    }
    fn opt(&mut self, k: &str) -> Option<&'a str> {
        self.map.remove(k)
    }
    fn u64(&mut self, k: &str) -> Result<u64, Error> {
        let v = self.str(k)?;
        num(v).ok_or_else(|| err(self.line, format!("`{k}={v}` is not a number")))
    }
    fn u32(&mut self, k: &str) -> Result<u32, Error> {
        let v = self.u64(k)?;
        u32::try_from(v).map_err(|_| err(self.line, format!("`{k}={v}` does not fit 32 bits")))
    }
    fn u16(&mut self, k: &str) -> Result<u16, Error> {
        let v = self.u64(k)?;
        u16::try_from(v).map_err(|_| err(self.line, format!("`{k}={v}` does not fit 16 bits")))
    }
    fn dt(&mut self, k: &str) -> Result<Dt, Error> {
        let v = self.str(k)?;
        Dt::from_name(v).ok_or_else(|| err(self.line, format!("unknown dtype `{v}`")))
    }
    fn done(self) -> Result<(), Error> {
        match self.map.keys().next() {
            Some(k) => Err(err(self.line, format!("unknown field `{k}`"))),
            None => Ok(()),
        }
    }
}

fn err(line: usize, why: impl Into<String>) -> Error {
    Error::Asm {
        line,
        why: why.into(),
    }
}

fn num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_queue(line: usize, s: &str) -> Result<Queue, Error> {
    let bad = || {
        err(
            line,
            format!("bad queue `{s}` (expected tN.ctrl, tN.tensor, tN.vector, tN.dmaK or cN.dmaK)"),
        )
    };
    let (unit, eng) = s.split_once('.').ok_or_else(bad)?;
    let cluster = unit.starts_with('c');
    let unit: u16 = unit.get(1..).and_then(|u| u.parse().ok()).ok_or_else(bad)?;
    if !cluster && !unit_prefix_ok(s) {
        return Err(bad());
    }
    let (engine, lane) = match eng {
        "ctrl" if !cluster => (Engine::Ctrl, 0),
        "tensor" if !cluster => (Engine::Tensor, 0),
        "vector" if !cluster => (Engine::Vector, 0),
        e => {
            let lane: u8 = e
                .strip_prefix("dma")
                .and_then(|l| l.parse().ok())
                .ok_or_else(bad)?;
            (
                if cluster {
                    Engine::ClusterDma
                } else {
                    Engine::Dma
                },
                lane,
            )
        }
    };
    Ok(Queue { engine, unit, lane })
}

fn unit_prefix_ok(s: &str) -> bool {
    s.starts_with('t')
}

fn parse_loc(line: usize, s: &str) -> Result<Loc, Error> {
    let bad = || {
        err(
            line,
            format!("bad location `{s}` (expected hbm[OFF], l2.C[OFF] or sram.T[OFF])"),
        )
    };
    let (head, rest) = s.split_once('[').ok_or_else(bad)?;
    let offset = rest.strip_suffix(']').and_then(num).ok_or_else(bad)?;
    let space = if head == "hbm" {
        Space::Hbm
    } else if let Some(c) = head.strip_prefix("l2.") {
        Space::L2(c.parse().map_err(|_| bad())?)
    } else if let Some(t) = head.strip_prefix("sram.") {
        Space::Sram(t.parse().map_err(|_| bad())?)
    } else {
        return Err(bad());
    };
    Ok(Loc { space, offset })
}

fn parse_sem(line: usize, s: &str) -> Result<Sem, Error> {
    let bad = || err(line, format!("bad semaphore `{s}` (expected TILE.INDEX)"));
    let (t, i) = s.split_once('.').ok_or_else(bad)?;
    Ok(Sem {
        tile: t.parse().map_err(|_| bad())?,
        idx: i.parse().map_err(|_| bad())?,
    })
}

fn parse_op(line: usize, name: &str, mut f: Fields) -> Result<Op, Error> {
    let l = line;
    let op = match name {
        "dma" => Op::Dma {
            src: parse_loc(l, f.str("src")?)?,
            dst: parse_loc(l, f.str("dst")?)?,
            src_dt: f.dt("sdt")?,
            dst_dt: f.dt("ddt")?,
            rows: f.u32("rows")?,
            cols: f.u32("cols")?,
            src_stride: f.u32("sstride")?,
            dst_stride: f.u32("dstride")?,
            saturate: match f.opt("sat") {
                None | Some("1") => true,
                Some("0") => false,
                Some(s) => return Err(err(l, format!("bad `sat={s}` (0 or 1)"))),
            },
        },
        "dma.gather" => Op::DmaGather {
            src: parse_loc(l, f.str("src")?)?,
            dst: parse_loc(l, f.str("dst")?)?,
            idx: parse_loc(l, f.str("idx")?)?,
            dt: f.dt("dt")?,
            idx_dt: f.dt("idt")?,
            rows: f.u32("rows")?,
            cols: f.u32("cols")?,
            src_stride: f.u32("sstride")?,
            dst_stride: f.u32("dstride")?,
            idx_stride: f.u32("istride")?,
            bound: f.u32("bound")?,
        },
        "dma.scatter" => Op::DmaScatter {
            src: parse_loc(l, f.str("src")?)?,
            dst: parse_loc(l, f.str("dst")?)?,
            idx: parse_loc(l, f.str("idx")?)?,
            dt: f.dt("dt")?,
            idx_dt: f.dt("idt")?,
            red: {
                let r = f.str("red")?;
                SRed::ALL
                    .into_iter()
                    .find(|x| x.name() == r)
                    .ok_or_else(|| {
                        err(
                            l,
                            format!("unknown scatter reduction `{r}` (none, add, mul, max or min)"),
                        )
                    })?
            },
            rows: f.u32("rows")?,
            cols: f.u32("cols")?,
            src_stride: f.u32("sstride")?,
            dst_stride: f.u32("dstride")?,
            idx_stride: f.u32("istride")?,
            bound: f.u32("bound")?,
        },
        "matmul" => Op::Matmul {
            dt: f.dt("dt")?,
            m: f.u32("m")?,
            n: f.u32("n")?,
            k: f.u32("k")?,
            a: f.u32("a")?,
            b: f.u32("b")?,
            c: f.u32("c")?,
            acc: f.u32("acc")? != 0,
        },
        "cvt" => Op::Convert {
            src_dt: f.dt("sdt")?,
            dst_dt: f.dt("ddt")?,
            n: f.u32("n")?,
            dst: f.u32("dst")?,
            src: f.u32("src")?,
        },
        "signal" | "wait" => {
            let sem = parse_sem(l, f.str("sem")?)?;
            let n = f.u32("n")?;
            if name == "signal" {
                Op::Signal { sem, n }
            } else {
                Op::Wait { sem, n }
            }
        }
        "barrier" => Op::Barrier {
            id: f.u16("id")?,
            count: f.u16("count")?,
        },
        "allreduce" => Op::AllReduce {
            dt: f.dt("dt")?,
            n: f.u32("n")?,
            addr: f.u64("addr")?,
        },
        "allgather" => Op::AllGather {
            dt: f.dt("dt")?,
            n: f.u32("n")?,
            src: f.u64("src")?,
            dst: f.u64("dst")?,
        },
        r if r.starts_with("reduce.") => {
            let op = match &r[7..] {
                "sum" => ROp::Sum,
                "max" => ROp::Max,
                o => return Err(err(l, format!("unknown reduction `{o}`"))),
            };
            Op::Reduce {
                op,
                dt: f.dt("dt")?,
                rows: f.u32("rows")?,
                cols: f.u32("cols")?,
                dst: f.u32("dst")?,
                src: f.u32("src")?,
            }
        }
        v => {
            let op = VOp::ALL
                .into_iter()
                .find(|o| o.name() == v)
                .ok_or_else(|| err(l, format!("unknown command `{v}`")))?;
            let b = match f.opt("b") {
                None => VSrc::None,
                Some(b) => {
                    let (kind, x) = b
                        .split_once(':')
                        .ok_or_else(|| err(l, format!("bad operand `b={b}`")))?;
                    let addr = || {
                        num(x)
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| err(l, format!("bad address in `b={b}`")))
                    };
                    match kind {
                        "full" => VSrc::Full(addr()?),
                        "row" => VSrc::Row(addr()?),
                        "col" => VSrc::Col(addr()?),
                        "imm" => VSrc::Imm(
                            x.parse()
                                .map_err(|_| err(l, format!("bad immediate `{x}`")))?,
                        ),
                        _ => {
                            return Err(err(
                                l,
                                format!("bad operand kind `{kind}` (full, row, col or imm)"),
                            ));
                        }
                    }
                }
            };
            Op::Vector {
                op,
                dt: f.dt("dt")?,
                rows: f.u32("rows")?,
                cols: f.u32("cols")?,
                dst: f.u32("dst")?,
                a: f.u32("a")?,
                b,
            }
        }
    };
    f.done()?;
    Ok(op)
}

/// Reads the text form into an artifact and validates it against its hardware.
pub fn assemble(text: &str) -> Result<Artifact, Error> {
    let mut devices = None;
    let mut hw: Option<HwConfig> = None;
    let mut io = Io::default();
    let mut regions: Vec<Region> = Vec::new();
    let mut commands = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let body = raw.split(';').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        if let Some(json) = body.strip_prefix(".io ") {
            io = serde_json::from_str(json).map_err(|e| err(line, format!(".io: {e}")))?;
            continue;
        }
        if let Some(json) = body.strip_prefix(".hw ") {
            hw = Some(serde_json::from_str(json).map_err(|e| err(line, format!(".hw: {e}")))?);
            continue;
        }
        let toks: Vec<&str> = body.split_whitespace().collect();
        match toks[0] {
            ".smx" => {
                let mut f = Fields::new(line, &toks[1..])?;
                let v = f.u64("version")?;
                if !(OLDEST_VERSION as u64..=VERSION as u64).contains(&v) {
                    return Err(err(
                        line,
                        format!("version {v} is not supported (this build reads {VERSION})"),
                    ));
                }
                devices = Some(f.u32("devices")?);
                f.done()?;
            }
            ".region" => {
                let mut f = Fields::new(line, &toks[1..])?;
                let name = f.str("name")?.to_string();
                let kind = match f.str("kind")? {
                    "weight" => RegionKind::Weight,
                    "input" => RegionKind::Input,
                    "output" => RegionKind::Output,
                    "activation" => RegionKind::Activation,
                    "scratch" => RegionKind::Scratch,
                    k => return Err(err(line, format!("unknown region kind `{k}`"))),
                };
                let offset = f.u64("offset")?;
                let bytes = f.u64("bytes")?;
                let dtype = f.str("dtype")?.to_string();
                let shape_s = f.str("shape")?;
                let shape = if shape_s.is_empty() {
                    vec![]
                } else {
                    shape_s
                        .split(',')
                        .map(|d| {
                            d.parse()
                                .map_err(|_| err(line, format!("bad shape `{shape_s}`")))
                        })
                        .collect::<Result<_, _>>()?
                };
                f.done()?;
                regions.push(Region {
                    name,
                    kind,
                    offset,
                    bytes,
                    dtype,
                    shape,
                    init: false,
                    data: None,
                });
            }
            ".data" => {
                let (name, hex) = match toks.as_slice() {
                    [_, n, h] => (*n, *h),
                    _ => return Err(err(line, "expected `.data NAME HEX`")),
                };
                let bytes = (0..hex.len() / 2)
                    .map(|j| u8::from_str_radix(hex.get(2 * j..2 * j + 2).unwrap_or("zz"), 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .ok()
                    .filter(|_| hex.len() % 2 == 0)
                    .ok_or_else(|| err(line, "bad hex data"))?;
                let r = regions
                    .iter_mut()
                    .find(|r| r.name == name)
                    .ok_or_else(|| err(line, format!("no region `{name}`")))?;
                r.init = true;
                r.data = Some(bytes);
            }
            q => {
                let queue = parse_queue(line, q)?;
                let name = toks
                    .get(1)
                    .ok_or_else(|| err(line, "missing command after the queue"))?;
                let op = parse_op(line, name, Fields::new(line, &toks[2..])?)?;
                commands.push(Command { queue, op });
            }
        }
    }
    let a = Artifact {
        devices: devices.ok_or_else(|| err(1, "missing `.smx version=1 devices=N` line"))?,
        hw: hw.ok_or_else(|| err(1, "missing `.hw {...}` line"))?,
        regions,
        commands,
        io,
    };
    a.validate()?;
    Ok(a)
}
