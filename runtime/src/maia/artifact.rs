//! The `.smx` artifact: a versioned container of the hardware description,
//! the HBM memory layout, initial data and the encoded command stream.
//!
//! Layout (little endian): magic `SMX\0`, version u16, section count u16,
//! CRC-32 u32 of every byte after it, then the section table (tag [u8; 4],
//! offset u64, length u64 each), then the sections: `META` (JSON: devices,
//! hardware, regions), `CODE` (the stream, see `encode`) and `DATA` (the
//! initial bytes of each region with `init`, in region order). Unknown tags
//! are skipped so that later versions can add sections.

use super::Error;
use super::dtype::Dt;
use super::encode;
use super::hw::HwConfig;
use super::isa::*;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 4] = b"SMX\0";
/// Version 2 added `io` to META (the graph's inputs and outputs: names,
/// graph dtypes and shapes, so `smelt run` can feed and read a program).
/// Version 1 files still load, with no bindings. Version 3 added `guards`
/// to `io` (inputs whose values the program was specialized on); a reader
/// that ignored them would run a program on inputs it was not built for.
pub const VERSION: u16 = 3;
pub const OLDEST_VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegionKind {
    Weight,
    Input,
    Output,
    Activation,
    Scratch,
}

impl RegionKind {
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Weight => "weight",
            RegionKind::Input => "input",
            RegionKind::Output => "output",
            RegionKind::Activation => "activation",
            RegionKind::Scratch => "scratch",
        }
    }
}

/// A named range of HBM (per device).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    pub kind: RegionKind,
    pub offset: u64,
    pub bytes: u64,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Whether DATA holds this region's initial bytes.
    #[serde(default)]
    pub init: bool,
    #[serde(skip)]
    pub data: Option<Vec<u8>>,
}

/// One graph input or output and the region that holds it. `dtype` is the
/// graph's dtype name (i64, bool, f32, ...); the region may store it in a
/// command-stream dtype of the same width (an i64 as two i32 words).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoBinding {
    pub name: String,
    pub region: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Io {
    pub inputs: Vec<IoBinding>,
    pub outputs: Vec<IoBinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
}

/// The program was compiled for this value of input `input` (shapes or
/// constants folded from it, as TensorRT does with shape tensors): any other
/// value is refused. `bytes` is the input's little-endian storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    pub input: usize,
    pub bytes: Vec<u8>,
}

impl Io {
    /// Refuses `inputs` (each input's bytes, in order) that differ from a
    /// value the program was specialized on.
    pub fn check_guards(&self, inputs: &[Vec<u8>]) -> Result<(), String> {
        for g in &self.guards {
            let name = self.inputs.get(g.input).map_or("?", |b| b.name.as_str());
            match inputs.get(g.input) {
                Some(b) if *b == g.bytes => {}
                _ => {
                    return Err(format!(
                        "input \"{name}\": this program was specialized on another value of it (shapes or constants depend on it); compile again for this value"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    /// Devices running the program (SPMD: each runs the same stream).
    pub devices: u32,
    pub hw: HwConfig,
    pub regions: Vec<Region>,
    pub commands: Vec<Command>,
    /// The graph's inputs and outputs (empty for hand-written programs).
    pub io: Io,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    devices: u32,
    hw: HwConfig,
    regions: Vec<Region>,
    #[serde(default)]
    io: Io,
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), written here
/// because the workspace has no checksum crate and ten lines do not justify
/// one; a table makes it fast enough for multi-megabyte artifacts.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

impl Artifact {
    /// Bytes of HBM the layout uses per device (end of the last region).
    pub fn hbm_used(&self) -> u64 {
        self.regions
            .iter()
            .map(|r| r.offset + r.bytes)
            .max()
            .unwrap_or(0)
    }

    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut regions = self.regions.clone();
        for r in &mut regions {
            r.init = r.data.is_some();
        }
        let meta = Meta {
            devices: self.devices,
            hw: self.hw.clone(),
            regions,
            io: self.io.clone(),
        };
        // Serializing plain data structs to JSON cannot fail.
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let code = encode::encode(&self.commands);
        let data: Vec<u8> = self
            .regions
            .iter()
            .filter_map(|r| r.data.as_deref())
            .flatten()
            .copied()
            .collect();
        let sections: [(&[u8; 4], &[u8]); 3] =
            [(b"META", &meta), (b"CODE", &code), (b"DATA", &data)];
        let mut out = Vec::with_capacity(12 + 60 + meta.len() + code.len() + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(sections.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        let mut off = (12 + 20 * sections.len()) as u64;
        for (tag, s) in &sections {
            out.extend_from_slice(*tag);
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            off += s.len() as u64;
        }
        for (_, s) in &sections {
            out.extend_from_slice(s);
        }
        let crc = crc32(&out[12..]);
        out[8..12].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Artifact, Error> {
        if b.len() < 12 {
            return Err(if b.len() >= 4 && &b[..4] != MAGIC {
                Error::BadMagic
            } else {
                Error::TruncatedFile(format!("{} bytes, the header alone is 12", b.len()))
            });
        }
        if &b[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(Error::Version {
                found: version,
                supported: VERSION,
            });
        }
        let count = u16::from_le_bytes([b[6], b[7]]) as usize;
        let table_end = 12 + 20 * count;
        if b.len() < table_end {
            return Err(Error::TruncatedFile(format!(
                "section table needs {table_end} bytes, file has {}",
                b.len()
            )));
        }
        let mut sections: Vec<([u8; 4], u64, u64)> = Vec::with_capacity(count);
        for i in 0..count {
            let e = &b[12 + 20 * i..32 + 20 * i];
            let mut tag = [0u8; 4];
            tag.copy_from_slice(&e[..4]);
            let off = u64::from_le_bytes(e[4..12].try_into().unwrap_or([0; 8]));
            let len = u64::from_le_bytes(e[12..20].try_into().unwrap_or([0; 8]));
            sections.push((tag, off, len));
        }
        // Truncation is reported before the checksum so a cut-off file says so.
        for (tag, off, len) in &sections {
            if off.checked_add(*len).is_none_or(|end| end > b.len() as u64) {
                return Err(Error::TruncatedFile(format!(
                    "section {} ends at byte {}, file has {}",
                    String::from_utf8_lossy(tag),
                    off.saturating_add(*len),
                    b.len()
                )));
            }
        }
        let expected = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let found = crc32(&b[12..]);
        if expected != found {
            return Err(Error::Checksum { expected, found });
        }
        let get = |t: &[u8; 4]| {
            sections
                .iter()
                .find(|s| &s.0 == t)
                .map(|&(_, o, l)| &b[o as usize..(o + l) as usize])
        };
        let meta = get(b"META").ok_or_else(|| Error::Meta("no META section".into()))?;
        let code = get(b"CODE").ok_or_else(|| Error::Meta("no CODE section".into()))?;
        let data = get(b"DATA").unwrap_or(&[]);
        let meta: Meta =
            serde_json::from_slice(meta).map_err(|e| Error::Meta(format!("META: {e}")))?;
        let commands = encode::decode(code)?;
        let mut regions = meta.regions;
        let mut at = 0usize;
        for r in &mut regions {
            if r.init {
                let end = at + r.bytes as usize;
                let d = data.get(at..end).ok_or_else(|| {
                    Error::TruncatedFile(format!(
                        "DATA ends before region `{}`'s {} bytes",
                        r.name, r.bytes
                    ))
                })?;
                r.data = Some(d.to_vec());
                at = end;
            }
        }
        let a = Artifact {
            devices: meta.devices,
            hw: meta.hw,
            regions,
            commands,
            io: meta.io,
        };
        a.validate()?;
        Ok(a)
    }

    /// Checks the layout and every command's queue, dtypes and addresses
    /// against the hardware.
    pub fn validate(&self) -> Result<(), Error> {
        if self.devices == 0 {
            return Err(Error::Meta("devices must be at least 1".into()));
        }
        for r in &self.regions {
            if Dt::from_name(&r.dtype).is_none() {
                return Err(Error::Meta(format!(
                    "region `{}`: unknown dtype `{}`",
                    r.name, r.dtype
                )));
            }
            if r.offset
                .checked_add(r.bytes)
                .is_none_or(|e| e > self.hw.hbm.bytes)
            {
                return Err(Error::Meta(format!(
                    "region `{}` [{:#x}, +{}) exceeds HBM ({} bytes)",
                    r.name, r.offset, r.bytes, self.hw.hbm.bytes
                )));
            }
            if let Some(d) = &r.data
                && d.len() as u64 != r.bytes
            {
                return Err(Error::Meta(format!(
                    "region `{}`: {} data bytes for {} bytes",
                    r.name,
                    d.len(),
                    r.bytes
                )));
            }
        }
        let lim = Limits::new(&self.hw, self.hbm_used(), self.devices);
        for (i, c) in self.commands.iter().enumerate() {
            lim.check(i, c)?;
        }
        Ok(())
    }
}

/// Memory sizes and unit counts that commands are checked against.
pub struct Limits {
    tiles: u64,
    clusters: u64,
    tile_dma: u64,
    cluster_dma: u64,
    sems: u64,
    sram: u64,
    l2: u64,
    hbm: u64,
    devices: u64,
}

fn span(dt: Dt, rows: u32, cols: u32, stride: u32) -> u64 {
    if rows == 0 || cols == 0 {
        return 0;
    }
    dt.bytes((rows as u64 - 1) * stride as u64) + dt.bytes(cols as u64)
}

impl Limits {
    pub fn new(hw: &HwConfig, hbm_used: u64, devices: u32) -> Limits {
        Limits {
            tiles: hw.tiles() as u64,
            clusters: hw.clusters as u64,
            tile_dma: hw.tile.dma.engines as u64,
            cluster_dma: hw.cluster.dma.engines as u64,
            sems: hw.tile.semaphores as u64,
            sram: hw.tile.sram_bytes,
            l2: hw.cluster.l2_bytes,
            hbm: hbm_used,
            devices: devices as u64,
        }
    }

    /// The checks `dma.gather` and `dma.scatter` share: integer indices
    /// (one per moved row), and the source and destination ranges, each
    /// given as (rows, stride) — the indexed side spans `bound` rows.
    #[allow(clippy::too_many_arguments)]
    fn indexed(
        &self,
        i: usize,
        what: &str,
        (dt, idx_dt): (Dt, Dt),
        [src, dst, idx]: [&Loc; 3],
        [(src_rows, src_stride), (dst_rows, dst_stride)]: [(u32, u32); 2],
        cols: u32,
        (moved, idx_stride): (u32, u32),
    ) -> Result<(), Error> {
        if !matches!(idx_dt, Dt::I32 | Dt::I64) {
            return Err(Error::Malformed {
                index: i,
                why: format!("{what} indices must be i32 or i64, not {idx_dt}"),
            });
        }
        self.range(
            i,
            src.space,
            src.offset,
            span(dt, src_rows, cols, src_stride),
        )?;
        self.range(
            i,
            dst.space,
            dst.offset,
            span(dt, dst_rows, cols, dst_stride),
        )?;
        self.range(i, idx.space, idx.offset, span(idx_dt, moved, 1, idx_stride))
    }

    fn range(&self, i: usize, space: Space, off: u64, len: u64) -> Result<(), Error> {
        let (name, size, unit, units) = match space {
            Space::Hbm => ("HBM (memory layout)".to_string(), self.hbm, 0, 1),
            Space::L2(c) => (
                format!("L2 of cluster {c}"),
                self.l2,
                c as u64,
                self.clusters,
            ),
            Space::Sram(t) => (format!("SRAM of tile {t}"), self.sram, t as u64, self.tiles),
        };
        if unit >= units {
            return Err(Error::OutOfRange {
                index: i,
                why: format!("{name} does not exist ({units} on the chip)"),
            });
        }
        if off.checked_add(len).is_none_or(|e| e > size) {
            return Err(Error::OutOfRange {
                index: i,
                why: format!(
                    "[{off:#x}, {:#x}) is outside {name} ({size} bytes)",
                    off.saturating_add(len)
                ),
            });
        }
        Ok(())
    }

    fn mx_aligned(i: usize, dt: Dt, what: &str, n: u64) -> Result<(), Error> {
        if dt.is_mx() && !n.is_multiple_of(32) {
            return Err(Error::Malformed {
                index: i,
                why: format!("{what} = {n} is not a multiple of the MX block (32) for {dt}"),
            });
        }
        Ok(())
    }

    pub fn check(&self, i: usize, c: &Command) -> Result<(), Error> {
        let q = c.queue;
        let (units, lanes) = match q.engine {
            Engine::ClusterDma => (self.clusters, self.cluster_dma),
            Engine::Dma => (self.tiles, self.tile_dma),
            _ => (self.tiles, 1),
        };
        if q.unit as u64 >= units || q.lane as u64 >= lanes {
            return Err(Error::OutOfRange {
                index: i,
                why: format!("queue {q} does not exist on this chip"),
            });
        }
        if !c.op.runs_on(q.engine) {
            return Err(Error::Malformed {
                index: i,
                why: format!("queue {q} cannot execute this command"),
            });
        }
        let sram = Space::Sram(q.unit);
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
                if !saturate && !dst_dt.has_overflow_mode() {
                    return Err(Error::Malformed {
                        index: i,
                        why: format!(
                            "sat=0 applies to conversions to fp8 and e8m0, not to {dst_dt}"
                        ),
                    });
                }
                for (dt, s) in [(src_dt, src_stride), (dst_dt, dst_stride)] {
                    Self::mx_aligned(i, *dt, "cols", *cols as u64)?;
                    Self::mx_aligned(i, *dt, "stride", *s as u64)?;
                    // Packed rows after the first must start on a byte.
                    let bits = dt.bits() as u64;
                    let whole = (*cols as u64 * bits).is_multiple_of(8)
                        && (*s as u64 * bits).is_multiple_of(8);
                    if dt.is_packed() && *rows > 1 && !whole {
                        return Err(Error::Malformed {
                            index: i,
                            why: format!(
                                "{rows} rows of packed {dt}: cols and stride must fill whole bytes"
                            ),
                        });
                    }
                }
                self.range(
                    i,
                    src.space,
                    src.offset,
                    span(*src_dt, *rows, *cols, *src_stride),
                )?;
                self.range(
                    i,
                    dst.space,
                    dst.offset,
                    span(*dst_dt, *rows, *cols, *dst_stride),
                )?;
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
                if dt.is_mx() {
                    return Err(Error::Unsupported {
                        index: i,
                        why: format!("dma.gather moves whole elements; {dt} is blocked"),
                    });
                }
                // Every row the indices may name lies inside the source.
                let (s, d) = ((*bound, *src_stride), (*rows, *dst_stride));
                let (dts, ix) = ((*dt, *idx_dt), (*rows, *idx_stride));
                self.indexed(i, "dma.gather", dts, [src, dst, idx], [s, d], *cols, ix)?;
            }
            Op::DmaScatter {
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
                ..
            } => {
                if dt.is_mx() || dt.is_packed() {
                    return Err(Error::Unsupported {
                        index: i,
                        why: format!("dma.scatter writes whole elements of bytes; {dt} is not"),
                    });
                }
                // Every row the indices may name lies inside the destination.
                let (s, d) = ((*rows, *src_stride), (*bound, *dst_stride));
                let (dts, ix) = ((*dt, *idx_dt), (*rows, *idx_stride));
                self.indexed(i, "dma.scatter", dts, [src, dst, idx], [s, d], *cols, ix)?;
            }
            Op::Matmul {
                dt,
                m,
                n,
                k,
                a,
                b,
                c,
                ..
            } => {
                Self::mx_aligned(i, *dt, "k", *k as u64)?;
                let (m, n, k) = (*m as u64, *n as u64, *k as u64);
                self.range(i, sram, *a as u64, dt.bytes(m * k))?;
                self.range(i, sram, *b as u64, dt.bytes(n * k))?;
                self.range(i, sram, *c as u64, 4 * m * n)?;
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
                if dt.is_mx() {
                    return Err(Error::Unsupported {
                        index: i,
                        why: format!("vector ops do not compute in {dt}; convert first"),
                    });
                }
                if op.integer_only() && !dt.is_int() {
                    return Err(Error::Unsupported {
                        index: i,
                        why: format!("vector {} is defined on integers only, not {dt}", op.name()),
                    });
                }
                if dt.is_int() && !op.integer() {
                    return Err(Error::Unsupported {
                        index: i,
                        why: format!("vector {} is not defined on {dt}", op.name()),
                    });
                }
                let n = *rows as u64 * *cols as u64;
                self.range(i, sram, *dst as u64, dt.bytes(n))?;
                self.range(i, sram, *a as u64, dt.bytes(n))?;
                match (op.binary(), b) {
                    (true, VSrc::None) => {
                        return Err(Error::Malformed {
                            index: i,
                            why: format!("{} needs a second operand", op.name()),
                        });
                    }
                    (_, VSrc::Full(x)) => self.range(i, sram, *x as u64, dt.bytes(n))?,
                    (_, VSrc::Row(x)) => self.range(i, sram, *x as u64, dt.bytes(*rows as u64))?,
                    (_, VSrc::Col(x)) => self.range(i, sram, *x as u64, dt.bytes(*cols as u64))?,
                    _ => {}
                }
            }
            Op::Reduce {
                dt,
                rows,
                cols,
                dst,
                src,
                ..
            } => {
                self.range(i, sram, *src as u64, dt.bytes(*rows as u64 * *cols as u64))?;
                self.range(i, sram, *dst as u64, dt.bytes(*rows as u64))?;
            }
            Op::Convert {
                src_dt,
                dst_dt,
                n,
                dst,
                src,
            } => {
                Self::mx_aligned(i, *src_dt, "n", *n as u64)?;
                Self::mx_aligned(i, *dst_dt, "n", *n as u64)?;
                self.range(i, sram, *src as u64, src_dt.bytes(*n as u64))?;
                self.range(i, sram, *dst as u64, dst_dt.bytes(*n as u64))?;
            }
            Op::Signal { sem, .. } | Op::Wait { sem, .. } => {
                if sem.tile as u64 >= self.tiles || sem.idx as u64 >= self.sems {
                    return Err(Error::OutOfRange {
                        index: i,
                        why: format!(
                            "semaphore s{}.{} does not exist ({} tiles x {} semaphores)",
                            sem.tile, sem.idx, self.tiles, self.sems
                        ),
                    });
                }
            }
            Op::Barrier { count, .. } => {
                if *count == 0 {
                    return Err(Error::Malformed {
                        index: i,
                        why: "barrier count must be at least 1".into(),
                    });
                }
            }
            Op::AllReduce { dt, n, addr } => {
                self.range(i, Space::Hbm, *addr, dt.bytes(*n as u64))?
            }
            Op::AllGather { dt, n, src, dst } => {
                self.range(i, Space::Hbm, *src, dt.bytes(*n as u64))?;
                self.range(i, Space::Hbm, *dst, dt.bytes(*n as u64 * self.devices))?;
            }
        }
        Ok(())
    }
}
