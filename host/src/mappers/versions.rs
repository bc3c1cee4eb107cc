//! The kept versions of a module. Every upload of new bytes is a new, immutable version: its
//! bytes and metadata are stored as `mappers/<id>.versions/<n>.wasm` and `<n>.json` next to the
//! current version's `<id>.wasm` and `<id>.json`. A mapping definition follows the current
//! version (`"module": "id"` or `"id@latest"`) or pins one (`"id@3"`); a rollback makes a kept
//! version current again. The newest `keep_versions` are kept, and always the current one and
//! every pinned one.

use super::{MapperMeta, store_module};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The reference that follows the current version, as `id@latest`.
pub const LATEST: &str = "latest";

/// What a mapping definition's `module` option names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleRef<'a> {
    pub id: &'a str,
    /// `None`: the current version, swapped in when it changes.
    pub version: Option<u64>,
}

/// Reads `id`, `id@latest` or `id@<version>` (a whole number from 1).
pub fn parse_ref(reference: &str) -> Result<ModuleRef<'_>, String> {
    let Some((id, version)) = reference.rsplit_once('@') else {
        return Ok(ModuleRef {
            id: reference,
            version: None,
        });
    };
    if version == LATEST {
        return Ok(ModuleRef { id, version: None });
    }
    match version.parse::<u64>() {
        Ok(n) if n > 0 && !version.starts_with('+') => Ok(ModuleRef {
            id,
            version: Some(n),
        }),
        _ => Err(format!(
            "The module <{reference}> names no version: write <{id}> or <{id}@latest> for the \
             current version, or <{id}@N> for version N (GET /api/2/mappers/{id}/versions lists them)."
        )),
    }
}

/// The metadata of a version as it is kept: `created` is when that version was uploaded.
pub fn version_meta(meta: &MapperMeta) -> MapperMeta {
    MapperMeta {
        created: meta.modified,
        ..meta.clone()
    }
}

/// Which kept versions go: all but the newest `keep`, the current one and the pinned ones.
pub fn to_prune(
    kept: &BTreeMap<u64, MapperMeta>,
    keep: usize,
    current: u64,
    pinned: &BTreeSet<u64>,
) -> Vec<u64> {
    kept.keys()
        .rev()
        .skip(keep)
        .filter(|n| **n != current && !pinned.contains(n))
        .copied()
        .collect()
}

/// The directory of `id`'s versions in the registry directory `dir`.
pub fn dir_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.versions"))
}

fn file_of(dir: &Path, id: &str, version: u64, ext: &str) -> PathBuf {
    dir_of(dir, id).join(format!("{version}.{ext}"))
}

/// Stores a version's bytes and metadata (both fsynced before either is renamed into place).
/// A failure leaves no file behind, and no empty versions directory.
pub fn write(dir: &Path, meta: &MapperMeta, bytes: &[u8]) -> std::io::Result<()> {
    write_files(dir, meta, bytes).inspect_err(|_| {
        // Only removed when empty: the other kept versions stay.
        let _ = std::fs::remove_dir(dir_of(dir, &meta.id));
    })
}

fn write_files(dir: &Path, meta: &MapperMeta, bytes: &[u8]) -> std::io::Result<()> {
    let versions = dir_of(dir, &meta.id);
    std::fs::create_dir_all(&versions)?;
    let json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
    store_module(&versions, &meta.version.to_string(), bytes, &json)
}

/// The metadata of `id`'s kept versions (none when it has no versions directory). A version
/// whose metadata cannot be read is skipped with a warning.
pub fn read_metas(dir: &Path, id: &str) -> std::io::Result<BTreeMap<u64, MapperMeta>> {
    let mut out = BTreeMap::new();
    let files = match std::fs::read_dir(dir_of(dir, id)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for file in files {
        let path = file?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<MapperMeta>(&b).ok())
        {
            Some(meta) if path.with_extension("wasm").exists() => {
                out.insert(meta.version, meta);
            }
            _ => {
                tracing::warn!(file = %path.display(), "a kept mapper version cannot be read; it is skipped")
            }
        }
    }
    Ok(out)
}

/// The bytes of version `version` of `id`.
pub fn read_bytes(dir: &Path, id: &str, version: u64) -> std::io::Result<Vec<u8>> {
    std::fs::read(file_of(dir, id, version, "wasm"))
}

/// Removes one kept version's files.
pub fn remove(dir: &Path, id: &str, version: u64) -> std::io::Result<()> {
    for ext in ["wasm", "json"] {
        match std::fs::remove_file(file_of(dir, id, version, ext)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes every kept version of `id`.
pub fn remove_all(dir: &Path, id: &str) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir_of(dir, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn meta(version: u64) -> MapperMeta {
        let now = Utc::now();
        MapperMeta {
            id: "m".into(),
            version,
            sha256: format!("{version:064}"),
            size: 1,
            created: now,
            modified: now,
            wit_version: "0.1.0".into(),
            imports: vec![],
            latest_version: version,
        }
    }

    #[test]
    fn references_follow_the_current_version_or_pin_one() {
        let r = |s| parse_ref(s);
        assert_eq!(
            r("m").unwrap(),
            ModuleRef {
                id: "m",
                version: None
            }
        );
        assert_eq!(
            r("m@latest").unwrap(),
            ModuleRef {
                id: "m",
                version: None
            }
        );
        assert_eq!(
            r("a.b-c@12").unwrap(),
            ModuleRef {
                id: "a.b-c",
                version: Some(12)
            }
        );
        for bad in ["m@", "m@0", "m@-1", "m@+1", "m@1.0.0", "m@v2", "m@LATEST"] {
            let e = r(bad).unwrap_err();
            assert!(e.contains("GET /api/2/mappers/m/versions"), "{bad}: {e}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_the_current_and_the_pinned() {
        let kept: BTreeMap<u64, MapperMeta> = (1..=6).map(|n| (n, meta(n))).collect();
        let none = BTreeSet::new();
        assert_eq!(to_prune(&kept, 3, 6, &none), vec![3, 2, 1]);
        // A rollback made 2 current; 1 is pinned by a connection.
        assert_eq!(to_prune(&kept, 3, 2, &BTreeSet::from([1])), vec![3]);
        assert_eq!(to_prune(&kept, 10, 6, &none), Vec::<u64>::new());
        assert_eq!(to_prune(&kept, 0, 6, &none), vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn versions_are_written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        for n in [1, 2] {
            write(dir.path(), &meta(n), &[n as u8; 3]).unwrap();
        }
        let metas = read_metas(dir.path(), "m").unwrap();
        assert_eq!(metas.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(read_bytes(dir.path(), "m", 2).unwrap(), vec![2u8; 3]);
        remove(dir.path(), "m", 1).unwrap();
        assert_eq!(read_metas(dir.path(), "m").unwrap().len(), 1);
        remove_all(dir.path(), "m").unwrap();
        assert!(!dir_of(dir.path(), "m").exists());
        assert!(read_metas(dir.path(), "m").unwrap().is_empty());
        // Nothing temporary was left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
