//! Backups of the SQLite database, taken live, and restoring one.
//!
//! A backup is `VACUUM INTO` a file beside the target, run on a read-only connection: one read
//! transaction copies a consistent snapshot while the shop goes on writing (WAL). The copy is
//! then opened on its own and checked — `PRAGMA integrity_check` says `ok`, and it is this
//! shop's database (its migrations table names no migration this version does not know) —
//! synced to disk, and only then renamed to its name: a backup that exists is whole and good.
//!
//! A database in use is marked by a lock file beside it (`<database>.lock`): every process that
//! opens the store holds a shared lock on it for as long as it runs (the shop, a command), and a
//! restore takes it exclusively, so it never overwrites a database anyone holds. (The lock is
//! on a file of its own: closing any descriptor of the database file itself would drop
//! SQLite's own locks.)
//!
//! PostgreSQL has `pg_dump` and point-in-time recovery; nothing here reinvents them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::ConnectOptions;

use super::{Backend, Store, StoreError};

/// Why a backup or a restore did not happen. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "backups are of SQLite databases; for PostgreSQL use pg_dump or point-in-time recovery"
    )]
    NotSqlite,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Database(#[from] sqlx::Error),
    #[error("{path} is not a sound database: integrity_check says {says}")]
    Corrupt { path: PathBuf, says: String },
    #[error("{path} is not this shop's database ({why})")]
    NotOurs { path: PathBuf, why: &'static str },
    #[error("{0} is in use by a running shop (or command); stop it first")]
    InUse(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A backup made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// When its snapshot was taken.
    pub taken_at: DateTime<Utc>,
}

/// The shared lock of a process that has the database open; released when dropped.
#[derive(Debug)]
pub struct InUse {
    _lock: File,
}

/// The lock file of the SQLite database at `database`.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Marks the database at `database` in use for as long as the returned value lives.
pub(super) fn hold(database: &Path) -> Result<InUse, StoreError> {
    let path = lock_path(database);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Folder {
            path: path.display().to_string(),
            source,
        })?;
    // Shared: the shop and any command may hold it at once. It only fails against a restore in
    // progress, which holds it exclusively: then wait for it, briefly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match file.try_lock_shared() {
            Ok(()) => return Ok(InUse { _lock: file }),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => {
                return Err(StoreError::Folder {
                    path: path.display().to_string(),
                    source: std::io::Error::other(format!("being restored ({e})")),
                })
            }
        }
    }
}

/// The database file a `sqlite:` URL names.
pub fn sqlite_file(url: &str) -> Result<PathBuf, BackupError> {
    if !url.starts_with("sqlite:") {
        return Err(BackupError::NotSqlite);
    }
    let options = SqliteConnectOptions::from_str(url)?;
    Ok(options.get_filename().to_owned())
}

impl Store {
    /// Writes a consistent, checked copy of the live database to `path` (replacing what is
    /// there only once the copy is good).
    pub async fn backup_to(&self, path: &Path) -> Result<BackupReport, BackupError> {
        let Backend::Sqlite(db) = &self.backend else {
            return Err(BackupError::NotSqlite);
        };
        let path = std::path::absolute(path).map_err(io(path))?;
        let folder = path.parent().unwrap_or(Path::new("/")).to_owned();
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let partial = folder.join(format!(
            ".{}.partial",
            path.file_name()
                .map_or_else(|| "backup".into(), |n| n.to_string_lossy().into_owned())
        ));
        let _ = std::fs::remove_file(&partial);
        let taken_at = Utc::now();
        let reader = db.reader.clone();
        let target = partial.to_string_lossy().into_owned();
        let copied = self
            .rt
            .run(async move {
                sqlx::query("VACUUM INTO $1")
                    .bind(target)
                    .execute(&reader)
                    .await
            })
            .await;
        let kept = match copied {
            Ok(_) => verify(&partial).await,
            Err(e) => Err(e.into()),
        }
        .and_then(|()| {
            File::open(&partial)
                .and_then(|f| f.sync_all())
                .map_err(io(&partial))?;
            std::fs::rename(&partial, &path).map_err(io(&path))?;
            // The rename itself, on disk.
            File::open(&folder)
                .and_then(|f| f.sync_all())
                .map_err(io(&folder))
        });
        if let Err(e) = kept {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
        let writer = db.writer.clone();
        let (at, shown, size) = (
            taken_at.timestamp(),
            path.display().to_string(),
            i64::try_from(bytes).unwrap_or(i64::MAX),
        );
        self.rt
            .run(async move {
                sqlx::query("INSERT INTO backups (taken_at, path, bytes) VALUES ($1, $2, $3)")
                    .bind(at)
                    .bind(shown)
                    .bind(size)
                    .execute(&writer)
                    .await
            })
            .await?;
        Ok(BackupReport {
            path,
            bytes,
            taken_at,
        })
    }

    /// Whether this is an SQLite database, which the shop backs up itself (PostgreSQL has its
    /// own tools).
    pub fn backs_up_itself(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// The last good backup recorded, if any: when and where.
    pub async fn last_backup(&self) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        let Backend::Sqlite(db) = &self.backend else {
            return Ok(None);
        };
        let reader = db.reader.clone();
        let row: Option<(i64, String)> = self
            .rt
            .run(async move {
                sqlx::query_as(
                    "SELECT taken_at, path FROM backups ORDER BY taken_at DESC, id DESC LIMIT 1",
                )
                .fetch_optional(&reader)
                .await
            })
            .await?;
        Ok(row.map(|(at, path)| (super::types::time(at), path)))
    }
}

/// Checks a database file on its own: sound (`integrity_check` is `ok`) and this shop's.
pub async fn verify(path: &Path) -> Result<(), BackupError> {
    if !path.is_file() {
        return Err(BackupError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let checked = check(&pool, path).await;
    pool.close().await;
    checked
}

async fn check(pool: &sqlx::SqlitePool, path: &Path) -> Result<(), BackupError> {
    let says: Vec<String> = match sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(pool)
        .await
    {
        Ok(says) => says,
        // Not a database at all ("file is not a database").
        Err(e) => {
            return Err(BackupError::Corrupt {
                path: path.to_owned(),
                says: e.to_string(),
            })
        }
    };
    if says != ["ok"] {
        return Err(BackupError::Corrupt {
            path: path.to_owned(),
            says: says.join("; ").chars().take(300).collect(),
        });
    }
    let not_ours = |why| BackupError::NotOurs {
        path: path.to_owned(),
        why,
    };
    let latest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .map_err(|_| not_ours("no migrations table"))?;
    let known = sqlx::migrate!("migrations/sqlite")
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    match latest {
        None => Err(not_ours("no migration applied")),
        Some(latest) if latest > known => Err(not_ours("made by a newer version")),
        Some(_) => Ok(()),
    }
}

/// Puts the backup at `backup` in place of the SQLite database `database_url` names: checked
/// first, refused while anyone holds the database, written beside it and renamed over it.
pub async fn restore(database_url: &str, backup: &Path) -> Result<PathBuf, BackupError> {
    let database = std::path::absolute(sqlite_file(database_url)?).map_err(io(backup))?;
    verify(backup).await?;
    let folder = database.parent().unwrap_or(Path::new("/")).to_owned();
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let lock_file = lock_path(&database);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_file)
        .map_err(io(&lock_file))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(BackupError::InUse(database)),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_file)(e)),
    }
    let partial = folder.join(".restore.partial");
    std::fs::copy(backup, &partial).map_err(io(&partial))?;
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io(&partial))?;
    // The old database's write-ahead log belongs to it, not to the restored one.
    for suffix in ["-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&database)(e)),
        }
    }
    std::fs::rename(&partial, &database).map_err(io(&database))?;
    File::open(&folder)
        .and_then(|f| f.sync_all())
        .map_err(io(&folder))?;
    drop(lock);
    Ok(database)
}

/// Scheduled backups: where, how often, how many are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: std::time::Duration,
    pub keep: usize,
}

/// The prefix and suffix of a scheduled backup's name (`checkout-20261130T120000Z.db`): they
/// sort by time, and pruning touches nothing else in the folder.
const SCHEDULED_PREFIX: &str = "checkout-";
const SCHEDULED_SUFFIX: &str = ".db";

impl Store {
    /// Backs up into `schedule.dir` every `schedule.every` until `shutdown` (the first one at
    /// once), keeping the newest `schedule.keep`. A failed backup is logged and tried again at
    /// the next turn; what was kept stays.
    pub async fn run_backups(
        self,
        schedule: Schedule,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if let Ok(Some((at, _))) = self.last_backup().await {
            metrics::gauge!("backup_last_success_timestamp_seconds").set(at.timestamp() as f64);
        }
        loop {
            let name = format!(
                "{SCHEDULED_PREFIX}{}{SCHEDULED_SUFFIX}",
                Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            match self.backup_to(&schedule.dir.join(name)).await {
                Ok(report) => {
                    metrics::gauge!("backup_last_success_timestamp_seconds")
                        .set(report.taken_at.timestamp() as f64);
                    metrics::counter!("backups_total", "result" => "ok").increment(1);
                    tracing::info!(path = %report.path.display(), bytes = report.bytes, "backup made");
                    if let Err(e) = prune(&schedule.dir, schedule.keep) {
                        tracing::warn!(error = %e, "pruning old backups failed");
                    }
                }
                Err(e) => {
                    metrics::counter!("backups_total", "result" => "failed").increment(1);
                    tracing::error!(error = %e, "scheduled backup failed; the last good one stays");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(schedule.every) => {}
            }
        }
    }
}

/// Deletes the oldest scheduled backups in `dir` beyond the newest `keep`.
pub fn prune(dir: &Path, keep: usize) -> Result<usize, BackupError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(SCHEDULED_PREFIX) && name.ends_with(SCHEDULED_SUFFIX))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    for name in &names[..excess] {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(io(&path))?;
    }
    Ok(excess)
}
