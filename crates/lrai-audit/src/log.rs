//! The writer: one OS thread owns the file and the tree; requests hand it records over a
//! bounded channel and never touch the disk themselves.
//!
//! - Admin records wait for their entry to be written and `fdatasync`ed before the
//!   action is acknowledged ([`AuditLog::record_admin`] returns then).
//! - Inference records are hashed (inputs and outputs) and written by the writer thread,
//!   in batches of whatever is queued (group commit). When the queue is full the request
//!   waits for room: entries are never dropped, and `waits` counts the times it happened.
//! - A signed tree head is appended every `head_interval` while the tree grows (after
//!   every batch when the interval is zero) and on [`AuditLog::close`], which drains the
//!   queue, writes a `server_stop` entry and a final head and syncs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use lrai_core::Tensor;
use tokio::sync::{mpsc, oneshot};

use crate::error::AuditError;
use crate::merkle::{CompactTree, leaf_hash};
use crate::record::{AdminAction, Entry, Event, TreeHead, digest_tensors, now_ms};
use crate::verify::{VerifyOptions, verify_log};

/// How the server's audit log is set up.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The log file; created if absent, appended to (after verification) if present.
    pub path: PathBuf,
    /// The key tree heads are signed with.
    pub key: SigningKey,
    /// How often a tree head is signed while entries arrive; zero: after every batch.
    pub head_interval: Duration,
    /// Record every inference request too, not only admin actions.
    pub inference: bool,
    /// Records queued for the writer before requests wait.
    pub queue_capacity: usize,
}

/// One inference, as handed to the writer (tensors are shared, not copied; the writer
/// hashes them).
#[derive(Debug)]
pub struct InferenceRecord {
    /// Who asked.
    pub caller: String,
    /// The model named in the request.
    pub model: String,
    /// The version that answered (or was asked for).
    pub version: String,
    /// `http` or `grpc`.
    pub protocol: &'static str,
    /// `ok` or the error class.
    pub status: String,
    /// The request's inputs.
    pub inputs: Vec<(String, Tensor)>,
    /// The response's outputs (empty on error).
    pub outputs: Vec<(String, Tensor)>,
}

enum Msg {
    Admin {
        event: Event,
        done: oneshot::Sender<Result<u64, String>>,
    },
    Inference(Box<InferenceRecord>),
    Close {
        done: oneshot::Sender<Result<TreeHead, String>>,
    },
}

/// Counters the server exports.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Entries in the tree.
    pub tree_size: AtomicU64,
    /// Size of the last signed head.
    pub signed_size: AtomicU64,
    /// Times an inference waited for room in the queue.
    pub waits: AtomicU64,
}

/// The server's audit log (see the module docs).
#[derive(Debug)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    inference: bool,
    path: PathBuf,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<AuditStats>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Admin { .. } => "Admin",
            Msg::Inference(_) => "Inference",
            Msg::Close { .. } => "Close",
        })
    }
}

/// `ok`, or `error: <reason>`.
pub fn outcome_of<T, E: std::fmt::Display>(result: &Result<T, E>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

impl AuditLog {
    /// Opens (verifying what is already there with the key's public half) or creates the
    /// log, writes a `server_start` entry and a signed head, syncs, and starts the writer.
    ///
    /// # Errors
    /// When the existing log doesn't verify with this key, or the file can't be written.
    pub fn open(config: AuditConfig) -> Result<Arc<AuditLog>, AuditError> {
        let writer = Writer::open(&config)?;
        let stats = Arc::clone(&writer.stats);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let interval = config.head_interval;
        let thread = std::thread::Builder::new()
            .name("lrai-audit".into())
            .spawn(move || writer.run(rx, interval))
            .map_err(|source| AuditError::Io {
                path: config.path.clone(),
                source,
            })?;
        Ok(Arc::new(AuditLog {
            tx,
            inference: config.inference,
            path: config.path,
            writer: Mutex::new(Some(thread)),
            stats,
        }))
    }

    /// True when inference requests are recorded.
    pub fn records_inference(&self) -> bool {
        self.inference
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters (tree size, signed size, queue waits).
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Records an admin action and returns its entry index once it is on disk (written
    /// and `fdatasync`ed). Call it before acknowledging the action.
    ///
    /// # Errors
    /// When the writer has stopped or the disk write failed.
    pub async fn record_admin(
        &self,
        action: AdminAction,
        model: &str,
        caller: &str,
        outcome: String,
    ) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        let event = Event::Admin {
            action,
            model: model.to_string(),
            caller: caller.to_string(),
            outcome,
        };
        self.tx
            .send(Msg::Admin { event, done })
            .await
            .map_err(|_| AuditError::Closed("the log is closed".into()))?;
        wait.await
            .map_err(|_| AuditError::Closed("the writer exited".into()))?
            .map_err(AuditError::Closed)
    }

    /// Queues an inference record; waits only while the queue is full.
    pub async fn record_inference(&self, record: InferenceRecord) {
        let msg = Msg::Inference(Box::new(record));
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("audit log closed: an inference record was not written");
                return;
            }
            Err(mpsc::error::TrySendError::Full(msg)) => msg,
        };
        self.stats.waits.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(msg).await.is_err() {
            tracing::warn!("audit log closed: an inference record was not written");
        }
    }

    /// Drains the queue, writes a `server_stop` entry and a final signed head, syncs,
    /// and stops the writer. Returns the final head.
    ///
    /// # Errors
    /// When the writer already stopped or the final write failed.
    pub async fn close(&self) -> Result<TreeHead, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Close { done })
            .await
            .map_err(|_| AuditError::Closed("the log is already closed".into()))?;
        let head = wait
            .await
            .map_err(|_| AuditError::Closed("the writer exited".into()))?
            .map_err(AuditError::Closed)?;
        let thread = self.writer.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        Ok(head)
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    file: fs_err::File,
    key: SigningKey,
    tree: CompactTree,
    signed: u64,
    buf: Vec<u8>,
    stats: Arc<AuditStats>,
    failed: Option<String>,
}

/// Messages taken from the queue per write (group commit).
const BATCH: usize = 4096;

/// How long the writer waits after a batch of inference records before taking the next.
const LINGER: Duration = Duration::from_millis(2);

impl Writer {
    fn open(config: &AuditConfig) -> Result<Writer, AuditError> {
        let path = config.path.clone();
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let (tree, signed, recovered) = recover(&path, &config.key)?;
        let file = {
            use fs_err::os::unix::fs::OpenOptionsExt;
            fs_err::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?
        };
        let mut w = Writer {
            path: path.clone(),
            file,
            key: config.key.clone(),
            tree,
            signed,
            buf: Vec::with_capacity(1 << 16),
            stats: Arc::default(),
            failed: None,
        };
        if recovered > 0 {
            tracing::warn!(log = %path.display(), entries = recovered, "audit log: entries written before a crash were not signed; signing them now");
        }
        w.append(Event::Admin {
            action: AdminAction::ServerStart,
            model: String::new(),
            caller: "server".into(),
            outcome: "ok".into(),
        });
        w.append_head();
        w.flush(true).map_err(io)?;
        tracing::info!(log = %path.display(), entries = w.tree.size(), "audit log open");
        Ok(w)
    }

    fn append(&mut self, event: Event) -> u64 {
        let index = self.tree.size();
        let line = Entry {
            index,
            time_ms: now_ms(),
            event,
        }
        .to_line();
        self.tree.push(leaf_hash(&line));
        self.buf.extend_from_slice(&line);
        self.buf.push(b'\n');
        index
    }

    fn append_head(&mut self) -> TreeHead {
        let head = TreeHead::sign(&self.key, self.tree.size(), &self.tree.root());
        self.buf.extend_from_slice(&head.to_line());
        self.buf.push(b'\n');
        self.signed = head.size;
        head
    }

    fn flush(&mut self, sync: bool) -> std::io::Result<()> {
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        self.buf.clear();
        self.stats
            .tree_size
            .store(self.tree.size(), Ordering::Relaxed);
        self.stats.signed_size.store(self.signed, Ordering::Relaxed);
        result
    }

    fn run(mut self, mut rx: mpsc::Receiver<Msg>, interval: Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build();
        let runtime = match runtime {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "audit log writer cannot start its runtime");
                return;
            }
        };
        runtime.block_on(async move {
            let mut next_head = Instant::now() + interval;
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let pending = self.tree.size() > self.signed;
                let wait = next_head.saturating_duration_since(Instant::now());
                tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => if n == 0 {
                        // Every sender is gone without a close: sign what there is.
                        self.finish(None);
                        return;
                    },
                    () = tokio::time::sleep(wait), if pending && !interval.is_zero() => {}
                }
                let head_due = interval.is_zero() || Instant::now() >= next_head;
                let urgent = batch.iter().any(|m| !matches!(m, Msg::Inference(_)));
                if self.write_batch(&mut batch, head_due) {
                    return;
                }
                if !urgent {
                    // Let inference records gather: one wake-up and one write per linger
                    // instead of one per request (an admin record waits at most this).
                    tokio::time::sleep(LINGER).await;
                }
                if head_due {
                    next_head = Instant::now() + interval;
                }
            }
        });
    }

    /// Writes one batch; true when it held the close.
    fn write_batch(&mut self, batch: &mut Vec<Msg>, head_due: bool) -> bool {
        let mut acks = Vec::new();
        let mut close = None;
        for msg in batch.drain(..) {
            match msg {
                Msg::Admin { event, done } => acks.push((self.append(event), done)),
                Msg::Inference(rec) => {
                    let event = inference_event(*rec);
                    self.append(event);
                }
                // Everything queued before the close is in this batch or written already;
                // later messages find the channel closed once the thread ends.
                Msg::Close { done } => close = Some(done),
            }
        }
        if let Some(done) = close {
            for (index, ack) in acks {
                let _ = ack.send(Ok(index));
            }
            self.finish(Some(done));
            return true;
        }
        let grew = self.tree.size() > self.signed;
        if head_due && grew {
            self.append_head();
        }
        let result = self.write(!acks.is_empty() || (head_due && grew));
        for (index, ack) in acks {
            let _ = ack.send(result.clone().map(|()| index));
        }
        false
    }

    fn write(&mut self, sync: bool) -> Result<(), String> {
        if let Some(f) = &self.failed {
            self.buf.clear();
            return Err(f.clone());
        }
        self.flush(sync).map_err(|e| {
            let reason = format!("cannot write '{}': {e}", self.path.display());
            tracing::error!(error = %reason, "audit log write failed; admin actions will report it");
            self.failed = Some(reason.clone());
            reason
        })
    }

    fn finish(&mut self, done: Option<oneshot::Sender<Result<TreeHead, String>>>) {
        self.append(Event::Admin {
            action: AdminAction::ServerStop,
            model: String::new(),
            caller: "server".into(),
            outcome: "ok".into(),
        });
        let head = self.append_head();
        let result = self.write(true).map(|()| head);
        if let Ok(h) = &result {
            tracing::info!(log = %self.path.display(), size = h.size, root = %h.root, "audit log closed with a signed tree head");
        }
        if let Some(done) = done {
            let _ = done.send(result);
        }
    }
}

fn inference_event(rec: InferenceRecord) -> Event {
    let InferenceRecord {
        caller,
        model,
        version,
        protocol,
        status,
        mut inputs,
        mut outputs,
    } = rec;
    Event::Inference {
        caller,
        model,
        version,
        protocol: protocol.to_string(),
        status,
        inputs_sha256: digest_tensors(&mut inputs),
        outputs_sha256: digest_tensors(&mut outputs),
    }
}

/// Verifies an existing log with the writer's own key and returns its tree, the signed
/// size, and how many entries after the last head are being recovered. A torn last
/// line (a write cut short by a crash, never acknowledged) is cut off.
fn recover(path: &Path, key: &SigningKey) -> Result<(CompactTree, u64, u64), AuditError> {
    let exists = fs_err::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    if !exists {
        return Ok((CompactTree::new(), 0, 0));
    }
    let opts = VerifyOptions {
        pubkey: key.verifying_key(),
        since: None,
        allow_unsigned_tail: true,
        allow_torn_tail: true,
    };
    let v = verify_log(path, &opts)?;
    if v.end.torn_bytes > 0 {
        tracing::warn!(log = %path.display(), bytes = v.end.torn_bytes, "audit log ends with a partial line (a write cut short); cutting it off");
        let file = fs_err::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(v.end.complete_bytes).map(|()| f));
        file.map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let signed = v.last_head.as_ref().map_or(0, |h| h.size);
    Ok((v.tree, signed, v.unsigned_tail))
}
