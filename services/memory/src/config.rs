//! Memory settings.

/// How the memory service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Questions answered at once.
    pub concurrency: usize,
    /// Events of the consumer in hand at once: each is read and turned into
    /// a change while earlier ones wait for the writer, which applies all the
    /// changes waiting in one transaction (see `crate::group`).
    pub learning: usize,
    /// Failure patterns returned per similar-jobs question.
    pub failures_per_query: i64,
    /// Records older than this many days are forgotten (failure patterns and
    /// important records excepted).
    pub retention_days: u32,
    /// How often retention runs.
    pub retention_every_secs: u64,
    /// The planner's question looks among this many latest task executions
    /// (bounded work per job, whatever the table holds).
    pub planner_window: i64,
    /// Connections answering questions (apart from those learning).
    pub query_connections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrency: 8,
            learning: 64,
            failures_per_query: 10,
            retention_days: 90,
            retention_every_secs: 3600,
            planner_window: 200,
            query_connections: 4,
        }
    }
}
