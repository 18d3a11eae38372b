//! Durable state behind one trait: customers, conversations, the transcript,
//! assignments, and a few gateway secrets. SQLite (embedded) is the default backend.
//! The store is the source of truth: what it has is what survives a crash.

mod sqlite;

use async_trait::async_trait;

use crate::core::{ConversationRecord, Event, Record, RestoredConversation};

pub use sqlite::{SqliteStore, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

/// A stored conversation with who may read it.
#[derive(Debug, Clone)]
pub struct StoredConversation {
    pub record: ConversationRecord,
    pub last_seq: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes every record durable in one transaction, in order.
    async fn commit(&self, records: &[Record]) -> Result<(), StoreError>;
    /// Every conversation that is not closed, queued ones in their order, with what
    /// the core needs to carry on.
    async fn load_open(&self) -> Result<Vec<RestoredConversation>, StoreError>;
    /// Transcript events with `seq` greater than `after`, in order, at most `limit`.
    async fn events_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError>;
    /// Whether the agent was ever assigned to the conversation.
    async fn was_assigned(&self, conversation_id: &str, agent_id: &str)
    -> Result<bool, StoreError>;
    /// Closed conversations the customer had before.
    async fn previous_conversations(&self, customer_id: &str) -> Result<u32, StoreError>;
    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets `key` unless it is set; returns the value in force.
    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError>;
    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Checkpoints and closes; later calls fail.
    async fn close(&self);
}
