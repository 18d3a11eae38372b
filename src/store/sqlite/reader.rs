//! Reads on the hot paths (a `start`, an agent's `accept`, a `resume`, a gap in a
//! transcript) on a few threads of their own, each with one rusqlite connection.
//!
//! A read is handed to a thread once and answered once, whatever number of statements
//! it runs, from statements prepared once per connection (`prepare_cached`). Through
//! sqlx each statement was a round trip to its connection's thread: at 1,000 new
//! conversations a second the five reads of each `start` and the two of each `accept`
//! made sqlx's threads 43 % of the gateway's samples, most of it futex hand-offs and
//! context switches (docs/benchmarks.md). Cold reads (reports, the operator API) stay
//! on sqlx's pool.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::super::StoreError;

/// How much of the database file a reader maps (SQLite's `mmap_size`).
const MMAP_BYTES: i64 = 1 << 30;

type Job = Box<dyn FnOnce(&Connection) + Send>;

/// Reader threads sharing one queue of reads.
pub(super) struct Readers {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Readers {
    /// Opens `threads` read-only connections to `path` (the migrations have run) and
    /// starts a thread for each.
    pub(super) fn open(path: &Path, threads: usize) -> Result<Readers, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let conn = connect(path)?;
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || serve(&conn, &rx))
                .map_err(|e| StoreError::Writer(format!("cannot start a reader thread: {e}")))?;
            handles.push(handle);
        }
        Ok(Readers {
            jobs: Mutex::new(Some(jobs)),
            threads: Mutex::new(handles),
        })
    }

    /// Runs `read` on a reader thread's connection and returns what it returned.
    pub(super) async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = done.send(read(conn));
        });
        {
            let jobs = self.jobs.lock().map_err(|_| gone())?;
            jobs.as_ref()
                .ok_or_else(gone)?
                .send(job)
                .map_err(|_| gone())?;
        }
        answer.await.map_err(|_| gone())?
    }

    /// Lets the threads finish the reads they have and waits for them.
    pub(super) async fn close(&self) {
        drop(self.jobs.lock().map(|mut j| j.take()));
        let threads = self
            .threads
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let joined =
            tokio::task::spawn_blocking(move || threads.into_iter().all(|t| t.join().is_ok()))
                .await;
        if !matches!(joined, Ok(true)) {
            tracing::error!("a SQLite reader thread panicked");
        }
    }
}

fn gone() -> StoreError {
    StoreError::Writer("the store is closed".into())
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(32);
    // A connection drops its page cache whenever another one has committed, which
    // under load is before nearly every read: mapped, the database file's pages are
    // read in place rather than copied in again by a `pread` each.
    conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    Ok(conn)
}

/// The thread's loop: one read at a time until every sender is gone.
fn serve(conn: &Connection, jobs: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next read, never while reading.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(conn),
            Err(_) => return,
        }
    }
}
