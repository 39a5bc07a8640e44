//! Byte encoding of the command stream (little endian). Each command is
//! `opcode u8, engine u8, unit u16, lane u8` followed by the opcode's
//! fields; docs/command-stream.md lists them.

use super::Error;
use super::dtype::Dt;
use super::isa::*;

/// Set in a DMA's destination dtype byte: convert without saturating.
const NOSAT: u8 = 0x80;

pub fn encode(cmds: &[Command]) -> Vec<u8> {
    let mut w = Vec::with_capacity(cmds.len() * 24);
    for c in cmds {
        w.push(c.op.opcode());
        w.push(c.queue.engine as u8);
        w.extend_from_slice(&c.queue.unit.to_le_bytes());
        w.push(c.queue.lane);
        match &c.op {
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
            } => {
                loc(&mut w, src);
                loc(&mut w, dst);
                w.push(src_dt.code());
                // Dtype codes stay below 0x80: the top bit of the
                // destination's is the non-saturating conversion flag.
                w.push(dst_dt.code() | if *saturate { 0 } else { NOSAT });
                for x in [rows, cols, src_stride, dst_stride] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
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
            } => {
                loc(&mut w, src);
                loc(&mut w, dst);
                loc(&mut w, idx);
                w.push(dt.code());
                w.push(idx_dt.code());
                for x in [rows, cols, src_stride, dst_stride, idx_stride, bound] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
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
            } => {
                loc(&mut w, src);
                loc(&mut w, dst);
                loc(&mut w, idx);
                w.push(dt.code());
                w.push(idx_dt.code());
                w.push(*red as u8);
                for x in [rows, cols, src_stride, dst_stride, idx_stride, bound] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
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
                w.push(dt.code());
                w.push(*acc as u8);
                for x in [m, n, k, a, b, c] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
            Op::Vector {
                op: _,
                dt,
                rows,
                cols,
                dst,
                a,
                b,
            } => {
                w.push(dt.code());
                for x in [rows, cols, dst, a] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
                let (kind, v) = match *b {
                    VSrc::None => (0u8, 0u32),
                    VSrc::Full(x) => (1, x),
                    VSrc::Row(x) => (2, x),
                    VSrc::Col(x) => (3, x),
                    VSrc::Imm(f) => (4, f.to_bits()),
                };
                w.push(kind);
                w.extend_from_slice(&v.to_le_bytes());
            }
            Op::Reduce {
                op: _,
                dt,
                rows,
                cols,
                dst,
                src,
            } => {
                w.push(dt.code());
                for x in [rows, cols, dst, src] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
            Op::Convert {
                src_dt,
                dst_dt,
                n,
                dst,
                src,
            } => {
                w.push(src_dt.code());
                w.push(dst_dt.code());
                for x in [n, dst, src] {
                    w.extend_from_slice(&x.to_le_bytes());
                }
            }
            Op::Signal { sem, n } | Op::Wait { sem, n } => {
                w.extend_from_slice(&sem.tile.to_le_bytes());
                w.extend_from_slice(&sem.idx.to_le_bytes());
                w.extend_from_slice(&n.to_le_bytes());
            }
            Op::Barrier { id, count } => {
                w.extend_from_slice(&id.to_le_bytes());
                w.extend_from_slice(&count.to_le_bytes());
            }
            Op::AllReduce { dt, n, addr } => {
                w.push(dt.code());
                w.extend_from_slice(&n.to_le_bytes());
                w.extend_from_slice(&addr.to_le_bytes());
            }
            Op::AllGather { dt, n, src, dst } => {
                w.push(dt.code());
                w.extend_from_slice(&n.to_le_bytes());
                w.extend_from_slice(&src.to_le_bytes());
                w.extend_from_slice(&dst.to_le_bytes());
            }
        }
    }
    w
}

fn loc(w: &mut Vec<u8>, l: &Loc) {
    let (s, i) = match l.space {
        Space::Hbm => (0u8, 0u16),
        Space::L2(c) => (1, c),
        Space::Sram(t) => (2, t),
    };
    w.push(s);
    w.extend_from_slice(&i.to_le_bytes());
    w.extend_from_slice(&l.offset.to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    /// Index and start offset of the command being read, for errors.
    cmd: usize,
    start: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let end = self.pos + N;
        match self.b.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                let mut a = [0u8; N];
                a.copy_from_slice(s);
                Ok(a)
            }
            None => Err(Error::Truncated {
                index: self.cmd,
                offset: self.start,
                need: end - self.b.len(),
            }),
        }
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn dt(&mut self) -> Result<Dt, Error> {
        let c = self.u8()?;
        Dt::from_code(c).ok_or_else(|| self.bad(format!("unknown dtype code {c}")))
    }
    fn loc(&mut self) -> Result<Loc, Error> {
        let s = self.u8()?;
        let i = self.u16()?;
        let offset = self.u64()?;
        let space = match s {
            0 => Space::Hbm,
            1 => Space::L2(i),
            2 => Space::Sram(i),
            _ => return Err(self.bad(format!("unknown memory space {s}"))),
        };
        Ok(Loc { space, offset })
    }
    fn bad(&self, why: String) -> Error {
        Error::Malformed {
            index: self.cmd,
            why,
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Command>, Error> {
    let mut r = Reader {
        b: bytes,
        pos: 0,
        cmd: 0,
        start: 0,
    };
    let mut out = Vec::with_capacity(bytes.len() / 24);
    while r.pos < bytes.len() {
        r.start = r.pos;
        let opcode = r.u8()?;
        let e = r.u8()?;
        let engine = *Engine::ALL
            .get(e as usize)
            .ok_or_else(|| r.bad(format!("unknown engine {e}")))?;
        let unit = r.u16()?;
        let lane = r.u8()?;
        let op = match opcode {
            0x01 => {
                let src = r.loc()?;
                let dst = r.loc()?;
                let src_dt = r.dt()?;
                let d = r.u8()?;
                let dst_dt = Dt::from_code(d & !NOSAT)
                    .ok_or_else(|| r.bad(format!("unknown dtype code {d}")))?;
                Op::Dma {
                    src,
                    dst,
                    src_dt,
                    dst_dt,
                    rows: r.u32()?,
                    cols: r.u32()?,
                    src_stride: r.u32()?,
                    dst_stride: r.u32()?,
                    saturate: d & NOSAT == 0,
                }
            }
            0x02 => {
                let src = r.loc()?;
                let dst = r.loc()?;
                let idx = r.loc()?;
                let dt = r.dt()?;
                let idx_dt = r.dt()?;
                Op::DmaGather {
                    src,
                    dst,
                    idx,
                    dt,
                    idx_dt,
                    rows: r.u32()?,
                    cols: r.u32()?,
                    src_stride: r.u32()?,
                    dst_stride: r.u32()?,
                    idx_stride: r.u32()?,
                    bound: r.u32()?,
                }
            }
            0x03 => {
                let src = r.loc()?;
                let dst = r.loc()?;
                let idx = r.loc()?;
                let dt = r.dt()?;
                let idx_dt = r.dt()?;
                let code = r.u8()?;
                let red = SRed::from_code(code)
                    .ok_or_else(|| r.bad(format!("unknown scatter reduction {code}")))?;
                Op::DmaScatter {
                    src,
                    dst,
                    idx,
                    dt,
                    idx_dt,
                    red,
                    rows: r.u32()?,
                    cols: r.u32()?,
                    src_stride: r.u32()?,
                    dst_stride: r.u32()?,
                    idx_stride: r.u32()?,
                    bound: r.u32()?,
                }
            }
            0x10 => {
                let dt = r.dt()?;
                let acc = r.u8()? != 0;
                Op::Matmul {
                    dt,
                    acc,
                    m: r.u32()?,
                    n: r.u32()?,
                    k: r.u32()?,
                    a: r.u32()?,
                    b: r.u32()?,
                    c: r.u32()?,
                }
            }
            0x20..=0x3f | 0x70..=0x8f => {
                let op = VOp::from_opcode(opcode).ok_or(Error::UnknownOpcode {
                    index: r.cmd,
                    opcode,
                })?;
                let dt = r.dt()?;
                let (rows, cols, dst, a) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
                let kind = r.u8()?;
                let v = r.u32()?;
                let b = match kind {
                    0 => VSrc::None,
                    1 => VSrc::Full(v),
                    2 => VSrc::Row(v),
                    3 => VSrc::Col(v),
                    4 => VSrc::Imm(f32::from_bits(v)),
                    _ => return Err(r.bad(format!("unknown vector operand kind {kind}"))),
                };
                Op::Vector {
                    op,
                    dt,
                    rows,
                    cols,
                    dst,
                    a,
                    b,
                }
            }
            0x40 | 0x41 => {
                let op = if opcode == 0x40 { ROp::Sum } else { ROp::Max };
                let dt = r.dt()?;
                Op::Reduce {
                    op,
                    dt,
                    rows: r.u32()?,
                    cols: r.u32()?,
                    dst: r.u32()?,
                    src: r.u32()?,
                }
            }
            0x48 => {
                let src_dt = r.dt()?;
                let dst_dt = r.dt()?;
                Op::Convert {
                    src_dt,
                    dst_dt,
                    n: r.u32()?,
                    dst: r.u32()?,
                    src: r.u32()?,
                }
            }
            0x50 | 0x51 => {
                let sem = Sem {
                    tile: r.u16()?,
                    idx: r.u16()?,
                };
                let n = r.u32()?;
                if opcode == 0x50 {
                    Op::Signal { sem, n }
                } else {
                    Op::Wait { sem, n }
                }
            }
            0x52 => Op::Barrier {
                id: r.u16()?,
                count: r.u16()?,
            },
            0x60 => {
                let dt = r.dt()?;
                Op::AllReduce {
                    dt,
                    n: r.u32()?,
                    addr: r.u64()?,
                }
            }
            0x61 => {
                let dt = r.dt()?;
                Op::AllGather {
                    dt,
                    n: r.u32()?,
                    src: r.u64()?,
                    dst: r.u64()?,
                }
            }
            _ => {
                return Err(Error::UnknownOpcode {
                    index: r.cmd,
                    opcode,
                });
            }
        };
        out.push(Command {
            queue: Queue { engine, unit, lane },
            op,
        });
        r.cmd += 1;
    }
    Ok(out)
}
