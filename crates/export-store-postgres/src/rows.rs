//! The driver's rows as the shared row mapping (`export_store::sql`) reads them, and
//! the errors of the driver as the store reports them.

use export_store::sql::Columns;
use export_store::StoreError;
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row as _, Type};

/// A database failure, as the store reports it.
pub(crate) fn db(err: sqlx::Error) -> StoreError {
    StoreError::backend(err)
}

/// A PostgreSQL row, read by column name.
pub(crate) struct Row<'r>(pub(crate) &'r PgRow);

impl Row<'_> {
    fn get<T>(&self, name: &'static str) -> Result<T, StoreError>
    where
        T: for<'x> Decode<'x, Postgres> + Type<Postgres>,
    {
        self.0.try_get(name).map_err(|err| StoreError::corrupt(name, err))
    }
}

impl Columns for Row<'_> {
    fn text(&self, name: &'static str) -> Result<String, StoreError> {
        self.get(name)
    }

    fn optional_text(&self, name: &'static str) -> Result<Option<String>, StoreError> {
        self.get(name)
    }

    fn integer(&self, name: &'static str) -> Result<i64, StoreError> {
        self.get(name)
    }

    fn optional_integer(&self, name: &'static str) -> Result<Option<i64>, StoreError> {
        self.get(name)
    }

    fn boolean(&self, name: &'static str) -> Result<bool, StoreError> {
        self.get(name)
    }

    fn bytes(&self, name: &'static str) -> Result<Vec<u8>, StoreError> {
        self.get(name)
    }
}
