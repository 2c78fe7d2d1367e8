//! What the bot sent, in the `SKYNET_TELEGRAM` bucket, so a restart (or the
//! server delivering an event twice) neither sends a notification again nor
//! loses the message to edit: per job, each chat's message id and why it was
//! sent; per alert or switch, that it was sent. Updates are compare-and-set on
//! the entry's revision, so two bot processes do not overwrite each other.

use async_nats::jetstream::kv::{self, Store};
use serde::{Deserialize, Serialize};
use skynet_contract::JobId;

/// Why a message about a job was sent (and so how it is edited later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The answer to `/task`: edited with the outcome.
    Submitted,
    /// An approval request with buttons: edited when decided and finished.
    Approval,
}

/// One message the bot sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    pub chat: i64,
    pub message_id: i32,
    pub purpose: Purpose,
}

/// Everything the bot sent about one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessages {
    pub messages: Vec<SentMessage>,
    /// The job status the messages were last edited to show (`""`: as sent).
    #[serde(default)]
    pub shown: String,
}

impl JobMessages {
    pub fn has(&self, chat: i64, purpose: Purpose) -> bool {
        self.messages.iter().any(|m| m.chat == chat && m.purpose == purpose)
    }
}

/// The bucket.
#[derive(Clone)]
pub struct Sent {
    kv: Store,
}

/// A bucket operation failed.
#[derive(Debug, thiserror::Error)]
#[error("the SKYNET_TELEGRAM bucket: {0}")]
pub struct KvError(String);

fn job_key(job: JobId) -> String {
    format!("job.{job}")
}

impl Sent {
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Sent, KvError> {
        let kv =
            js.get_key_value(skynet_bus::definitions::TELEGRAM_BUCKET).await.map_err(|e| KvError(e.to_string()))?;
        Ok(Sent { kv })
    }

    /// The job's messages and the entry's revision (0: none).
    pub async fn job(&self, job: JobId) -> Result<(JobMessages, u64), KvError> {
        match self.kv.entry(job_key(job)).await.map_err(|e| KvError(e.to_string()))? {
            Some(e) if e.operation == kv::Operation::Put => {
                let m = serde_json::from_slice(&e.value).map_err(|e| KvError(format!("job entry: {e}")))?;
                Ok((m, e.revision))
            }
            _ => Ok((JobMessages::default(), 0)),
        }
    }

    /// Changes the job's entry with `f`, retried on a concurrent change.
    pub async fn update_job(&self, job: JobId, f: impl Fn(&mut JobMessages)) -> Result<JobMessages, KvError> {
        for _ in 0..10 {
            let (mut m, revision) = self.job(job).await?;
            f(&mut m);
            let bytes = serde_json::to_vec(&m).map_err(|e| KvError(e.to_string()))?;
            let stored = if revision == 0 {
                self.kv.create(job_key(job), bytes.into()).await.map(|_| ()).map_err(|e| e.to_string())
            } else {
                self.kv.update(job_key(job), bytes.into(), revision).await.map(|_| ()).map_err(|e| e.to_string())
            };
            if stored.is_ok() {
                return Ok(m);
            }
        }
        Err(KvError(format!("job {job}: the entry kept changing under us")))
    }

    /// Whether the one-off notification `key` (an alert, a switch) was sent.
    pub async fn was_sent(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.kv.entry(key).await.map_err(|e| KvError(e.to_string()))?.is_some())
    }

    /// Marks `key` sent.
    pub async fn mark_sent(&self, key: &str) -> Result<(), KvError> {
        self.kv.put(key, "sent".into()).await.map(|_| ()).map_err(|e| KvError(e.to_string()))
    }
}
