//! The one error type of the store, with the causes a caller branches on.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    /// A stored row that no longer parses: a bug or a hand-edited database.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The write would contradict what the store holds or what the same call asked
    /// for (another import got there first, an item named twice with other bytes):
    /// nothing was written, and retrying the same call gives the same answer.
    #[error("conflicting {what}: {detail}")]
    Conflict { what: &'static str, detail: String },
    /// The database has no room for the write (SQLite's `SQLITE_FULL`, PostgreSQL's
    /// `disk_full`, or `ENOSPC`): the transaction was rolled back, and the same call
    /// succeeds once space returns.
    #[error("the database is full")]
    StorageFull(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(err))
    }

    pub fn corrupt(what: &'static str, detail: impl ToString) -> Self {
        Self::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }

    pub fn conflict(what: &'static str, detail: impl ToString) -> Self {
        Self::Conflict {
            what,
            detail: detail.to_string(),
        }
    }
}
