//! The HNSW graph of a map kept beside it, so that a large map opens in seconds instead of rebuilding its
//! graph (8 minutes at 10^5 keyframes on 2 cores).
//!
//! Files next to `map.db`: `map.placeindex.hnsw.graph` and `.hnsw.data` (hnsw_rs's own dump) and
//! `map.placeindex.json`, which names what the graph was built from — the SHA-256 of the keyframe ids and place
//! vectors in id order, the place descriptor, the dimension and the graph options — and the SHA-256 of the two
//! dump files. A graph is loaded only when all of these match the map being opened and the files hash to what
//! the sidecar says: a map extended since, another place descriptor or a truncated or corrupt dump is rebuilt
//! (and saved again), never read. Saving is best effort: a read-only folder just means the next open rebuilds.
//! Not here: when a graph is used at all ([`super::index`]).

use std::path::{Path, PathBuf};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use sha2::{Digest, Sha256};

use super::index::{IndexOptions, PlaceIndex, UnitCosine};

const SIDECAR_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sidecar {
    version: u32,
    place: String,
    dim: usize,
    keyframes: usize,
    entries_sha256: String,
    links: usize,
    ef_construction: usize,
    graph_sha256: String,
    data_sha256: String,
}

fn paths(map: &Path) -> (PathBuf, String, PathBuf) {
    let dir = map
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let stem = map
        .file_stem()
        .map_or_else(|| "map".into(), |s| s.to_string_lossy().into_owned());
    let base = format!("{stem}.placeindex");
    let sidecar = dir.join(format!("{base}.json"));
    (dir, base, sidecar)
}

fn file_sha256(p: &Path) -> Option<String> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(format!("{:x}", h.finalize()))
}

fn entries_sha256(entries: &[(u64, Vec<f32>)]) -> String {
    let mut h = Sha256::new();
    for (id, v) in entries {
        h.update(id.to_le_bytes());
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    format!("{:x}", h.finalize())
}

/// The index of a map's keyframes (`entries`, in id order), from the saved graph beside `map` when it matches
/// (`true`), else built (and, when it is a graph, saved there).
pub fn open(
    map: &Path,
    place: &str,
    entries: Vec<(u64, Vec<f32>)>,
    dim: usize,
    options: IndexOptions,
) -> (PlaceIndex, bool) {
    if entries.len() < options.hnsw_min_keyframes {
        return (PlaceIndex::build(entries, dim, options), false);
    }
    let (dir, base, sidecar_path) = paths(map);
    let want = Sidecar {
        version: SIDECAR_VERSION,
        place: place.into(),
        dim,
        keyframes: entries.len(),
        entries_sha256: entries_sha256(&entries),
        links: options.hnsw_links,
        ef_construction: options.hnsw_ef_construction,
        graph_sha256: String::new(),
        data_sha256: String::new(),
    };
    let graph_path = dir.join(format!("{base}.hnsw.graph"));
    let data_path = dir.join(format!("{base}.hnsw.data"));
    let saved: Option<Sidecar> = std::fs::read_to_string(&sidecar_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let matches = saved.as_ref().is_some_and(|s| {
        Sidecar {
            graph_sha256: String::new(),
            data_sha256: String::new(),
            ..s.clone()
        } == want
            && file_sha256(&graph_path).as_deref() == Some(s.graph_sha256.as_str())
            && file_sha256(&data_path).as_deref() == Some(s.data_sha256.as_str())
    });
    let ids: Vec<u64> = entries.iter().map(|e| e.0).collect();
    if matches {
        // the reloaded graph borrows its loader for its whole life: one small loader per map opened
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir, &base)));
        match io.load_hnsw_with_dist::<f32, UnitCosine>(UnitCosine) {
            Ok(g) if g.get_nb_point() == ids.len() => {
                log::info!(
                    "map index: HNSW graph of {} keyframes loaded from {}",
                    ids.len(),
                    graph_path.display()
                );
                return (PlaceIndex::from_graph(ids, dim, g, options), true);
            }
            Ok(_) => log::warn!("map index: the saved graph has another size; rebuilding"),
            Err(e) => log::warn!("map index: the saved graph does not load ({e}); rebuilding"),
        }
    }
    let index = PlaceIndex::build(entries, dim, options);
    // hnsw_rs reports a folder it cannot write to on stdout (which `--json` output owns): look first
    let probe = dir.join(format!("{base}.probe"));
    let writable = std::fs::write(&probe, b"").is_ok() && std::fs::remove_file(&probe).is_ok();
    if let Some(g) = index.graph().filter(|_| writable) {
        let saved = g
            .file_dump(&dir, &base)
            .ok()
            .filter(|name| *name == base)
            .and_then(|_| {
                Some(Sidecar {
                    graph_sha256: file_sha256(&graph_path)?,
                    data_sha256: file_sha256(&data_path)?,
                    ..want
                })
            });
        match saved.and_then(|s| serde_json::to_string_pretty(&s).ok()) {
            Some(text) if std::fs::write(&sidecar_path, &text).is_ok() => log::info!(
                "map index: HNSW graph of {} keyframes saved beside the map ({})",
                index.len(),
                graph_path.display()
            ),
            _ => log::warn!(
                "map index: the graph could not be saved in {} (the next open rebuilds it)",
                dir.display()
            ),
        }
    }
    (index, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    #[test]
    fn a_saved_graph_is_loaded_only_while_it_matches_the_map() {
        let dir = std::env::temp_dir().join(format!("matcha-saved-index-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let map = dir.join("map.db");
        let mut rng = SplitMix64::new(5);
        let dim = 16;
        let mut entries: Vec<(u64, Vec<f32>)> = (0..1500)
            .map(|i| {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
                (i + 1, v)
            })
            .collect();
        let o = IndexOptions {
            hnsw_min_keyframes: 1000,
            ..Default::default()
        };
        let (a, loaded) = open(&map, "p", entries.clone(), dim, o.clone());
        assert!(!loaded && a.is_graph());
        let (b, loaded) = open(&map, "p", entries.clone(), dim, o.clone());
        assert!(loaded && b.is_graph() && b.len() == 1500);
        for k in [0usize, 700, 1499] {
            assert_eq!(b.search(&entries[k].1, 1)[0].0, entries[k].0);
        }
        // another place descriptor, or the map changed: rebuilt
        assert!(!open(&map, "q", entries.clone(), dim, o.clone()).1);
        entries[3].1[0] += 0.5;
        assert!(!open(&map, "q", entries.clone(), dim, o.clone()).1);
        assert!(open(&map, "q", entries.clone(), dim, o.clone()).1);
        // a damaged dump is not read
        let graph = dir.join("map.placeindex.hnsw.graph");
        let mut bytes = std::fs::read(&graph).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&graph, &bytes).unwrap();
        let (c, loaded) = open(&map, "q", entries.clone(), dim, o);
        assert!(!loaded && c.len() == 1500);
        assert_eq!(c.search(&entries[9].1, 1)[0].0, entries[9].0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
