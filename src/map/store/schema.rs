//! The map database's schema: the tables this code creates, the versions it reads and the one upgrade.
//!
//! Version 2 lets a keyframe's pose be absent (`NULL`): a *view*, a keyframe known by its image alone (local
//! features and a place vector, no landmarks), which the node's `relocalization` mode stores when it maps
//! without odometry. Version 1 maps (every keyframe posed) are read as they are, and upgraded in one
//! transaction the first time they are opened for writing, so an older map is never refused by a newer
//! build; a newer schema is refused with a message. Not here: the rows (`rows.rs`), the connection
//! (`super`).

/// The schema this code writes.
pub const SCHEMA_VERSION: u32 = 2;

/// The schemas this code reads.
pub(super) const READABLE: [u32; 2] = [1, 2];

/// The columns of the keyframes table (a `NULL` pose is a view).
const KEYFRAME_COLUMNS: &str = "
    id INTEGER PRIMARY KEY,
    stamp_ns INTEGER NOT NULL,
    frame_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    pose BLOB,
    place BLOB NOT NULL,
    keypoints BLOB NOT NULL,
    descriptors BLOB NOT NULL,
    landmark_ids BLOB NOT NULL";

/// The tables of a new map.
pub(super) fn create_sql() -> String {
    format!(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE keyframes ({KEYFRAME_COLUMNS});
         CREATE TABLE landmarks (id INTEGER PRIMARY KEY, x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL);"
    )
}

/// Version 1 → 2 (SQLite cannot drop a column's `NOT NULL` in place: the table is copied).
fn upgrade_from_1_sql() -> String {
    format!(
        "CREATE TABLE keyframes_v2 ({KEYFRAME_COLUMNS});
         INSERT INTO keyframes_v2 SELECT id, stamp_ns, frame_id, camera, width, height, pose, place, keypoints,
             descriptors, landmark_ids FROM keyframes;
         DROP TABLE keyframes;
         ALTER TABLE keyframes_v2 RENAME TO keyframes;
         UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
}

/// Upgrades an existing map to [`SCHEMA_VERSION`] inside the caller's transaction; `true` when it did.
/// Versions it does not know are left for the identity check to refuse.
pub(super) fn upgrade(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<bool> {
    use rusqlite::OptionalExtension;
    let version: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if version.as_deref() == Some("1") {
        tx.execute_batch(&upgrade_from_1_sql())?;
        return Ok(true);
    }
    Ok(false)
}
