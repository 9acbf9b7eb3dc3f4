//! The HNSW graph of a map kept beside it, so that a large map opens in seconds instead of rebuilding its
//! graph (8 minutes at 10^5 keyframes on 2 cores).
//!
//! Files next to `map.db`: `map.placeindex.hnsw.graph` and `.hnsw.data` (hnsw_rs's own dump) and
//! `map.placeindex.json`, which names what the graph was built from — the SHA-256 of the keyframe ids and place
//! vectors in id order, the place descriptor, the dimension and the graph options — and the SHA-256 of the two
//! dump files. A graph is loaded only when all of these match the map being opened and the files hash to what
//! the sidecar says: a map extended since, another place descriptor or a truncated or corrupt dump is rebuilt
//! (and saved again), never read. Saving is best effort: a read-only folder just means the next open rebuilds.
//! Loading or building runs on a thread of its own while the exact scan answers ([`open`]). Not here: when a
//! graph is used at all ([`super::index`]).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use sha2::{Digest, Sha256};

use super::index::{
    build_graph, usable, Arrival, GraphSource, IndexOptions, PlaceIndex, UnitCosine,
};

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

/// The index of a map's keyframes (`entries`, in id order). Below `hnsw_min_keyframes` the exact scan,
/// at once. From there on the scan answers at once too, while a thread of its own loads the saved graph
/// beside `map` when it matches, or else builds the graph and saves it there; the graph takes over when it
/// arrives ([`PlaceIndex::wait_for_graph`] says from where). So the first localization in a large map
/// waits for the place vectors to be read, not for the graph (seconds to load, minutes to build at 10^5).
pub fn open(
    map: &Path,
    place: &str,
    entries: Vec<(u64, Vec<f32>)>,
    dim: usize,
    options: IndexOptions,
) -> PlaceIndex {
    if entries.len() < options.hnsw_min_keyframes {
        return PlaceIndex::build(entries, dim, options);
    }
    let entries = usable(entries, dim);
    let ids: Vec<u64> = entries.iter().map(|e| e.0).collect();
    let rows: Vec<f32> = entries
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let (tx, rx) = mpsc::channel();
    let (map, place_id, thread_options) = (map.to_path_buf(), place.to_string(), options.clone());
    let spawned = std::thread::Builder::new()
        .name("map-index".into())
        .spawn(move || {
            // the receiver may be gone (the map was closed): nothing to do then
            let _ = tx.send(load_or_build(
                &map,
                &place_id,
                &entries,
                dim,
                &thread_options,
            ));
        });
    if let Err(e) = spawned {
        // the sender went with the closure: the index stays with the scan (and says so)
        log::warn!("map index: no thread for the graph ({e})");
    }
    PlaceIndex::scan_until_graph(ids, rows, dim, options, rx)
}

/// The graph of `entries` (usable, in id order) from the saved copy beside `map` when it matches, else
/// built and saved there.
fn load_or_build(
    map: &Path,
    place: &str,
    entries: &[(u64, Vec<f32>)],
    dim: usize,
    options: &IndexOptions,
) -> Arrival {
    let (dir, base, sidecar_path) = paths(map);
    let started = std::time::Instant::now();
    let want = Sidecar {
        version: SIDECAR_VERSION,
        place: place.into(),
        dim,
        keyframes: entries.len(),
        entries_sha256: entries_sha256(entries),
        links: options.hnsw_links,
        ef_construction: options.hnsw_ef_construction,
        graph_sha256: String::new(),
        data_sha256: String::new(),
    };
    let hashed_entries = started.elapsed();
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
    let checked = started.elapsed();
    if matches {
        // the reloaded graph borrows its loader for its whole life: one small loader per map opened
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&dir, &base)));
        match io.load_hnsw_with_dist::<f32, UnitCosine>(UnitCosine) {
            Ok(mut g) if g.get_nb_point() == entries.len() => {
                g.set_searching_mode(true);
                log::info!(
                    "map index: HNSW graph of {} keyframes loaded from {} (hashing the entries {:.3} s, the dump files {:.3} s, loading {:.3} s)",
                    entries.len(),
                    graph_path.display(),
                    hashed_entries.as_secs_f64(),
                    (checked - hashed_entries).as_secs_f64(),
                    (started.elapsed() - checked).as_secs_f64()
                );
                return Some((Box::new(g), GraphSource::Loaded));
            }
            Ok(_) => log::warn!("map index: the saved graph has another size; rebuilding"),
            Err(e) => log::warn!("map index: the saved graph does not load ({e}); rebuilding"),
        }
    }
    let graph = build_graph(entries, options);
    log::info!(
        "map index: HNSW graph of {} keyframes built in {:.1} s",
        entries.len(),
        (started.elapsed() - checked).as_secs_f64()
    );
    // hnsw_rs reports a folder it cannot write to on stdout (which `--json` output owns): look first
    let probe = dir.join(format!("{base}.probe"));
    let writable = std::fs::write(&probe, b"").is_ok() && std::fs::remove_file(&probe).is_ok();
    let saved = writable
        .then(|| graph.file_dump(&dir, &base).ok())
        .flatten()
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
            entries.len(),
            graph_path.display()
        ),
        _ => log::warn!(
            "map index: the graph could not be saved in {} (the next open rebuilds it)",
            dir.display()
        ),
    }
    Some((Box::new(graph), GraphSource::Built))
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
        let built = Some(GraphSource::Built);
        let loaded = Some(GraphSource::Loaded);
        let a = open(&map, "p", entries.clone(), dim, o.clone());
        // the scan answers while the graph is made
        assert_eq!(a.search(&entries[5].1, 1)[0].0, entries[5].0);
        assert_eq!(a.wait_for_graph(), built);
        let b = open(&map, "p", entries.clone(), dim, o.clone());
        assert!(b.wait_for_graph() == loaded && b.is_graph() && b.len() == 1500);
        for k in [0usize, 700, 1499] {
            assert_eq!(b.search(&entries[k].1, 1)[0].0, entries[k].0);
        }
        // another place descriptor, or the map changed: rebuilt
        let source = |place: &str, entries: &Vec<(u64, Vec<f32>)>| {
            open(&map, place, entries.clone(), dim, o.clone()).wait_for_graph()
        };
        assert_eq!(source("q", &entries), built);
        entries[3].1[0] += 0.5;
        assert_eq!(source("q", &entries), built);
        assert_eq!(source("q", &entries), loaded);
        // a damaged dump is not read
        let graph = dir.join("map.placeindex.hnsw.graph");
        let mut bytes = std::fs::read(&graph).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&graph, &bytes).unwrap();
        let c = open(&map, "q", entries.clone(), dim, o);
        assert!(c.wait_for_graph() == built && c.len() == 1500);
        assert_eq!(c.search(&entries[9].1, 1)[0].0, entries[9].0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
