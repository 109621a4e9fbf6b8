//! Dumps: the graph written as one checksummed file with a manifest, and read back.

use super::*;

/// What a dump's manifest says.
#[derive(Serialize, Deserialize)]
struct Manifest {
    kind: String,
    format: Format,
    dim: usize,
    m: usize,
    count: usize,
    entry: u64,
    watermark: i64,
    sha256: String,
}

impl GraphIndex {
    /// Writes a dump under `dir` (a new generation, then `CURRENT` is switched atomically).
    pub(super) fn dump(&self, dir: &Path) -> Result<(), IndexError> {
        let _one = self.writer.lock();
        let count = self.reserved.load(Acquire);
        let watermark = self.watermark();
        crate::index::save_generation(dir, watermark, |gdir| {
            let path = gdir.join("graph.bin");
            let file = std::fs::File::create(&path).map_err(|source| IndexError::Io { path: path.clone(), source })?;
            let mut out = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hash: Sha256::new() };
            let io = |source| IndexError::Io { path: path.clone(), source };
            for n in 0..count {
                for w in self.nodes.at(n) {
                    out.write_all(&w.load(Acquire).to_le_bytes()).map_err(io)?;
                }
                for l in self.links.at(n) {
                    out.write_all(&l.load(Acquire).to_le_bytes()).map_err(io)?;
                }
                let upper = self.upper.at(n)[0].get().map_or(&[][..], |u| &u[..]);
                out.write_all(&(upper.len() as u32).to_le_bytes()).map_err(io)?;
                for l in upper {
                    out.write_all(&l.load(Acquire).to_le_bytes()).map_err(io)?;
                }
            }
            out.inner.flush().map_err(io)?;
            out.inner.get_ref().sync_all().map_err(io)?;
            let manifest = Manifest {
                kind: "hnsw".into(),
                format: self.coder.format,
                dim: self.coder.dim,
                m: self.m,
                count,
                entry: self.entry.load(Acquire),
                watermark,
                sha256: hex::encode(out.hash.finalize()),
            };
            Ok(serde_json::to_vec(&manifest).unwrap_or_default())
        })
    }

    /// Loads a dump written by `save`; any damage, or other settings, is an error (the
    /// caller rebuilds from the catalog).
    pub fn load(dir: &Path, dim: usize, opts: IndexOptions) -> Result<Self, IndexError> {
        let bad = |m: String| IndexError::BadDump(m);
        let (gdir, manifest) = crate::index::current_generation(dir)?;
        let manifest: Manifest = serde_json::from_slice(&manifest).map_err(|e| bad(e.to_string()))?;
        if manifest.kind != "hnsw" || manifest.dim != dim || manifest.format != opts.format || manifest.m != opts.m.clamp(2, 128) {
            return Err(bad(format!(
                "dump is {} {}-d {} m={}; settings want hnsw {dim}-d {} m={}",
                manifest.kind,
                manifest.dim,
                manifest.format.name(),
                manifest.m,
                opts.format.name(),
                opts.m
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(gdir.join("graph.bin")).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| bad(e.to_string()))?;
        if hex::encode(Sha256::digest(&bytes)) != manifest.sha256 {
            return Err(bad("graph.bin checksum mismatch".into()));
        }
        let idx = GraphIndex::new(dim, opts);
        let mut r = Reader { bytes: &bytes, at: 0 };
        let mut maps = Maps::default();
        for _ in 0..manifest.count {
            let n = idx.reserve();
            let rec = idx.nodes.at(n as usize);
            for w in rec {
                w.store(r.u64()?, Relaxed);
            }
            for l in idx.links.at(n as usize) {
                l.store(r.u32()?, Relaxed);
            }
            let up = r.u32()? as usize;
            if up > MAX_LEVEL * (1 + idx.m) {
                return Err(bad("graph.bin: impossible level".into()));
            }
            if up > 0 {
                let list: Box<[AtomicU32]> = (0..up).map(|_| r.u32().map(AtomicU32::new)).collect::<Result<_, _>>()?;
                let _ = idx.upper.at(n as usize)[0].set(list);
            }
            let meta = rec[2].load(Relaxed);
            let level = ((meta >> 8) & 0xFF) as usize;
            if meta & READY == 0 || up != level * (1 + idx.m) {
                return Err(bad("graph.bin: a node is incomplete".into()));
            }
            if meta & LIVE != 0 {
                idx.live.fetch_add(1, Relaxed);
            } else {
                idx.dead.fetch_add(1, Relaxed);
            }
            maps.node_of.insert(rec[0].load(Relaxed) as i64, n);
            maps.by_hotel.entry(rec[1].load(Relaxed) as i64).or_default().push(n);
        }
        if r.at != bytes.len() {
            return Err(bad("graph.bin has trailing bytes".into()));
        }
        // Every link must name a node of this dump.
        let count = manifest.count as u32;
        for n in 0..count {
            let levels = ((idx.meta(n) >> 8) & 0xFF) as usize;
            for layer in 0..=levels {
                let list = idx.list(n, layer);
                let len = list[0].load(Relaxed) as usize;
                if len >= list.len() || list[1..=len].iter().any(|l| l.load(Relaxed) >= count) {
                    return Err(bad("graph.bin: a link points nowhere".into()));
                }
            }
        }
        if manifest.count > 0 && (manifest.entry >> 40 != 1 || (manifest.entry as u32) >= count) {
            return Err(bad("graph.bin: no entry point".into()));
        }
        idx.entry.store(manifest.entry, Release);
        *idx.maps.write() = maps;
        idx.watermark.store(manifest.watermark, Release);
        // A dump made before repairs existed may hold nodes no walk reaches.
        let lost = idx.repair();
        if lost > 0 {
            tracing::info!(lost, "index: linked in nodes the loaded graph did not reach");
        }
        Ok(idx)
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    pub(super) fn take<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        let s = self.bytes.get(self.at..self.at + N).ok_or_else(|| IndexError::BadDump("graph.bin is truncated".into()))?;
        self.at += N;
        Ok(s.try_into().unwrap_or([0; N]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, IndexError> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    pub(super) fn u32(&mut self) -> Result<u32, IndexError> {
        self.take::<4>().map(u32::from_le_bytes)
    }
}
