//! Results that could not be delivered yet, on disk: one JSON file per message, named by a
//! sequence number, so they survive a restart and leave in order. A file is written to a
//! temporary name, synced and renamed (and the directory synced), so neither a crash nor a power
//! cut leaves half a message behind or loses one the daemon counted as safe.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{path}: {source} (the offline queue needs a writable directory: set queue.dir)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a queued message ({reason}); it was removed")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A message to publish, as queued in memory or on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutMessage {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    /// MQTT v5 Correlation Data of the request this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<Vec<u8>>,
    /// Results must arrive; status and health are worth sending only now and are never queued.
    #[serde(skip, default = "durable")]
    pub durable: bool,
}

fn durable() -> bool {
    true
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    /// Sequence numbers of the files present, oldest first.
    index: BTreeSet<u64>,
    next_seq: u64,
    max_entries: usize,
}

impl Spool {
    /// Opens (creating) the queue directory and indexes what an earlier run left there.
    pub fn open(dir: &Path, max_entries: usize) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut index = BTreeSet::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                index.insert(seq);
            } else if name.ends_with(".tmp") {
                // Left by a crash between write and rename: never a complete message.
                let _ = fs::remove_file(entry.path());
            }
        }
        let next_seq = index.last().map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            next_seq,
            max_entries: max_entries.max(1),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Sequence numbers present, oldest first.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.index.iter().copied()
    }

    /// Appends a message; when full, first drops the oldest and returns how many were dropped.
    pub fn push(&mut self, msg: &OutMessage) -> Result<usize, SpoolError> {
        let mut dropped = 0;
        while self.index.len() >= self.max_entries {
            if let Some(oldest) = self.index.first().copied() {
                self.remove(oldest)?;
                dropped += 1;
            }
        }
        let seq = self.next_seq;
        let path = self.path(seq);
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(msg).map_err(|e| SpoolError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        // On disk means safe: the request it answers is acknowledged once this returns.
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.index.insert(seq);
        self.next_seq += 1;
        Ok(dropped)
    }

    /// Reads one message; a file that does not parse is removed and reported.
    pub fn read(&mut self, seq: u64) -> Result<OutMessage, SpoolError> {
        let path = self.path(seq);
        let bytes = fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            self.index.remove(&seq);
            let _ = fs::remove_file(&path);
            SpoolError::Corrupt {
                path,
                reason: e.to_string(),
            }
        })
    }

    /// Removes a delivered (or dropped) message; one already gone is not an error.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.index.remove(&seq);
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> OutMessage {
        OutMessage {
            topic: "t".into(),
            payload: format!("{{\"n\":{n}}}"),
            retain: false,
            correlation_data: n.is_multiple_of(2).then(|| vec![0, 255, n as u8]),
            durable: true,
        }
    }

    #[test]
    fn survives_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 10).unwrap();
        for n in 0..3 {
            s.push(&msg(n)).unwrap();
        }
        let first = s.seqs().next().unwrap();
        s.remove(first).unwrap();
        drop(s);
        std::fs::write(dir.path().join("x.tmp"), b"half").unwrap();
        let mut s = Spool::open(dir.path(), 10).unwrap();
        let seqs: Vec<u64> = s.seqs().collect();
        let got: Vec<OutMessage> = seqs.iter().map(|&q| s.read(q).unwrap()).collect();
        assert_eq!(got, vec![msg(1), msg(2)]);
        assert!(!dir.path().join("x.tmp").exists());
        s.push(&msg(3)).unwrap();
        assert!(s.seqs().last().unwrap() > *seqs.last().unwrap());
    }

    #[test]
    fn drops_the_oldest_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 2).unwrap();
        assert_eq!(s.push(&msg(1)).unwrap(), 0);
        assert_eq!(s.push(&msg(2)).unwrap(), 0);
        assert_eq!(s.push(&msg(3)).unwrap(), 1);
        let seqs: Vec<u64> = s.seqs().collect();
        assert_eq!(s.read(seqs[0]).unwrap(), msg(2));
    }

    #[test]
    fn a_corrupt_file_is_reported_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 5).unwrap();
        s.push(&msg(1)).unwrap();
        let seq = s.seqs().next().unwrap();
        std::fs::write(s.path(seq), b"{not json").unwrap();
        assert!(matches!(s.read(seq), Err(SpoolError::Corrupt { .. })));
        assert!(s.is_empty());
    }
}
