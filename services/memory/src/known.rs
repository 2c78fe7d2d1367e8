//! The failures known in each directory, as the planner's question gets them:
//! held for a second so a burst of jobs in one directory costs one query, not
//! one per job (a 3,000-job burst made this query the planner's limit: every
//! job waited for one of the few connections answering questions).
//!
//! Held answers are advisory data, never a decision: a plan is not changed by
//! them, only annotated. This process drops them all as soon as it learns a
//! failure or a memory is added or forgotten, so a failure it recorded shows in
//! the next plan; another memory instance's failure shows within [`FRESH_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skynet_contract::memory::KnownFailure;

/// How long an answer is served without asking the database again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);
/// Directories held at most (a burst over many directories gains nothing here).
const MAX_DIRS: usize = 1024;

/// Shared by the answers and the learning of one process. Cheap to clone.
#[derive(Clone, Default)]
pub struct KnownFailures {
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    /// Bumped by every change: an answer read before one is not held.
    generation: u64,
    dirs: HashMap<String, (Instant, Vec<KnownFailure>)>,
}

/// Where a query for a directory started: pass it back to [`KnownFailures::put`].
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    generation: u64,
    at: Instant,
}

impl KnownFailures {
    /// The failures held for `dir` if still fresh, else where a query starts.
    pub fn get(&self, dir: &str) -> Result<Vec<KnownFailure>, Asked> {
        let Ok(held) = self.held.lock() else { return Err(Asked { generation: u64::MAX, at: Instant::now() }) };
        match held.dirs.get(dir) {
            Some((at, failures)) if at.elapsed() < FRESH_FOR => Ok(failures.clone()),
            _ => Err(Asked { generation: held.generation, at: Instant::now() }),
        }
    }

    /// Holds `failures` for `dir` as asked at `asked`, unless what memory knows
    /// changed while the query ran (its answer may predate the change).
    pub fn put(&self, dir: &str, asked: Asked, failures: &[KnownFailure]) {
        let Ok(mut held) = self.held.lock() else { return };
        if held.generation != asked.generation {
            return;
        }
        let held = &mut held.dirs;
        if held.len() >= MAX_DIRS {
            held.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
            if held.len() >= MAX_DIRS {
                return;
            }
        }
        held.insert(dir.to_owned(), (asked.at, failures.to_vec()));
    }

    /// Drops everything held: what memory knows has changed.
    pub fn forget_all(&self) {
        if let Ok(mut held) = self.held.lock() {
            held.generation += 1;
            held.dirs.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str) -> KnownFailure {
        KnownFailure {
            id: id.into(),
            action: "run_tests".into(),
            message: "exit 1".into(),
            count: 1,
            last_seen: chrono::Utc::now(),
        }
    }

    #[test]
    fn an_answer_is_held_until_memory_changes() {
        let known = KnownFailures::default();
        let asked = known.get("/p").expect_err("nothing held yet");
        known.put("/p", asked, &[failure("a")]);
        assert_eq!(known.get("/p").map(|f| f.len()).ok(), Some(1));
        assert!(known.get("/q").is_err(), "another directory is asked for");
        known.forget_all();
        assert!(known.get("/p").is_err(), "a change drops what was held");
    }

    #[test]
    fn an_answer_read_across_a_change_is_not_held() {
        let known = KnownFailures::default();
        let asked = known.get("/p").expect_err("nothing held yet");
        known.forget_all(); // a failure learned while the query ran
        known.put("/p", asked, &[]);
        assert!(known.get("/p").is_err(), "the stale empty answer must not be served");
    }
}
