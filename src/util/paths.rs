//! Where matcha's files are: the cache (`$MATCHA_CACHE`, default `~/.cache/matcha`) and the engines
//! directory, resolved the same way by the CLI and the node.
//!
//! Why a resolution order: `runtime.engines_dir: engines` in the shipped config is relative, and a node
//! started by `ros2 launch` runs in whatever directory the user is in. A relative directory is therefore
//! tried against the working directory, then `$MATCHA_CACHE/engines` (where `scripts/setup.sh` exports
//! them), then each ROS prefix's `share/matcha/engines` (`$AMENT_PREFIX_PATH`, an installed package); the
//! first that holds a `manifest.json` wins. An absolute directory is used as given.

use std::path::{Path, PathBuf};

/// `$MATCHA_CACHE`, else `$HOME/.cache/matcha`, else `.cache/matcha`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("MATCHA_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/matcha")))
        .unwrap_or_else(|| PathBuf::from(".cache/matcha"))
}

/// The engines directory for the configured `dir` (see the module doc); `dir` itself when no candidate
/// holds a manifest (loading then fails with a message naming it).
pub fn resolve_engines_dir(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        return dir.to_path_buf();
    }
    engines_candidates(dir)
        .into_iter()
        .find(|c| c.join("manifest.json").is_file())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// The places a relative engines directory is looked for, in order.
pub fn engines_candidates(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf(), cache_dir().join(dir)];
    if let Some(prefixes) = std::env::var_os("AMENT_PREFIX_PATH") {
        out.extend(std::env::split_paths(&prefixes).map(|p| p.join("share/matcha").join(dir)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_is_kept_and_relative_falls_back_to_the_cache() {
        assert_eq!(
            resolve_engines_dir(Path::new("/x/engines")),
            PathBuf::from("/x/engines")
        );
        let c = engines_candidates(Path::new("engines"));
        assert_eq!(c[0], PathBuf::from("engines"));
        assert_eq!(c[1], cache_dir().join("engines"));
        // nothing with a manifest: the configured directory comes back unchanged
        assert_eq!(
            resolve_engines_dir(Path::new("no-such-engines-dir-here")),
            PathBuf::from("no-such-engines-dir-here")
        );
    }
}
