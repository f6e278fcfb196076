//! The one place the store states what it needs of a sqlx database, so that the store's
//! logic is written once, generic over the database, without repeating sqlx's bounds at
//! every function: [`SqlDatabase`] is implemented for every sqlx `Database` that can run
//! and bind the statements below (SQLite and PostgreSQL can), and the logic calls it
//! through [`Query`], a statement with its arguments.
//!
//! Arguments are held as [`Value`]s and bound with the database's own encoding of the
//! same Rust type (`&str`, `String`, `i64`, `&[u8]`), so PostgreSQL gets the parameter
//! types it got before. Rows are read by column name through [`Columns`].

use std::borrow::Cow;
use std::fmt::Write as _;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type};

use crate::sql::Columns;
use crate::StoreError;

/// A database failure, as the store reports it: `StorageFull` when the database had no
/// room for the write, else `Backend`.
pub fn db(err: sqlx::Error) -> StoreError {
    let full = match &err {
        sqlx::Error::Database(database) => {
            // SQLITE_FULL (13), and PostgreSQL's SQLSTATE 53100 `disk_full`.
            matches!(database.code().as_deref(), Some("13" | "53100"))
        }
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    };
    if full {
        StoreError::StorageFull(Box::new(err))
    } else {
        StoreError::backend(err)
    }
}

/// An argument of a statement.
#[derive(Debug, Clone)]
pub enum Value<'q> {
    Text(Option<&'q str>),
    OwnedText(Option<String>),
    Integer(Option<i64>),
    Bytes(&'q [u8]),
}

impl<'q> From<&'q str> for Value<'q> {
    fn from(value: &'q str) -> Self {
        Self::Text(Some(value))
    }
}

impl<'q> From<&'q String> for Value<'q> {
    fn from(value: &'q String) -> Self {
        Self::Text(Some(value))
    }
}

impl<'q> From<Option<&'q str>> for Value<'q> {
    fn from(value: Option<&'q str>) -> Self {
        Self::Text(value)
    }
}

impl From<String> for Value<'_> {
    fn from(value: String) -> Self {
        Self::OwnedText(Some(value))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(value: Option<String>) -> Self {
        Self::OwnedText(value)
    }
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Self::Integer(Some(value))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(value: Option<i64>) -> Self {
        Self::Integer(value)
    }
}

impl<'q> From<&'q [u8]> for Value<'q> {
    fn from(value: &'q [u8]) -> Self {
        Self::Bytes(value)
    }
}

/// A statement and its arguments. Placeholders are `$1`, `$2` …, which PostgreSQL and
/// SQLite both read (a number used twice is one argument).
#[derive(Debug, Clone)]
pub struct Query<'q> {
    sql: Cow<'q, str>,
    args: Vec<Value<'q>>,
}

/// A statement to bind arguments to.
pub fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl<'q> Query<'q> {
    /// Binds the next placeholder.
    pub fn bind(mut self, value: impl Into<Value<'q>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends text to the statement (for statements built piece by piece).
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.to_mut().push_str(sql);
        self
    }

    /// Appends the next placeholder and binds it.
    pub fn push_bind(&mut self, value: impl Into<Value<'q>>) -> &mut Self {
        self.args.push(value.into());
        let placeholder = self.args.len();
        let _ = write!(self.sql.to_mut(), "${placeholder}");
        self
    }

    /// Runs the statement; the database's account of it (`Dialect::rows_affected`).
    pub fn execute<'c, E: Executes<'c>>(
        self,
        on: E,
    ) -> BoxFuture<'c, Result<<E::Db as Database>::QueryResult, StoreError>>
    where
        'q: 'c,
    {
        E::Db::execute(on.on(), self)
    }

    /// The statement's first row, if any.
    pub fn fetch_optional<'c, E: Executes<'c>>(
        self,
        on: E,
    ) -> BoxFuture<'c, Result<Option<<E::Db as Database>::Row>, StoreError>>
    where
        'q: 'c,
    {
        E::Db::fetch_optional(on.on(), self)
    }

    /// The statement's first row; none is an error.
    pub fn fetch_one<'c, E: Executes<'c>>(
        self,
        on: E,
    ) -> BoxFuture<'c, Result<<E::Db as Database>::Row, StoreError>>
    where
        'q: 'c,
    {
        let fetched = E::Db::fetch_optional(on.on(), self);
        Box::pin(async move { fetched.await?.ok_or_else(|| db(sqlx::Error::RowNotFound)) })
    }

    /// All the statement's rows.
    pub fn fetch_all<'c, E: Executes<'c>>(
        self,
        on: E,
    ) -> BoxFuture<'c, Result<Vec<<E::Db as Database>::Row>, StoreError>>
    where
        'q: 'c,
    {
        E::Db::fetch_all(on.on(), self)
    }
}

/// Where a statement runs: on a connection of the pool, or in a transaction.
pub enum On<'c, DB: Database> {
    Pool(&'c Pool<DB>),
    Connection(&'c mut DB::Connection),
}

/// What a statement can run on: `&pool` or `&mut transaction`.
pub trait Executes<'c>: Send {
    type Db: SqlDatabase;
    fn on(self) -> On<'c, Self::Db>;
}

impl<'c, DB: SqlDatabase> Executes<'c> for &'c Pool<DB> {
    type Db = DB;
    fn on(self) -> On<'c, DB> {
        On::Pool(self)
    }
}

impl<'c, DB: SqlDatabase> Executes<'c> for &'c mut Transaction<'_, DB> {
    type Db = DB;
    fn on(self) -> On<'c, DB> {
        On::Connection(&mut **self)
    }
}

/// A sqlx database the store runs on: it runs the statements with their arguments and
/// decodes the columns the rows are read by. Every database with the bounds below has
/// it; they are stated here once.
pub trait SqlDatabase: Database {
    fn execute<'c>(
        on: On<'c, Self>,
        query: Query<'c>,
    ) -> BoxFuture<'c, Result<Self::QueryResult, StoreError>>;

    fn fetch_optional<'c>(
        on: On<'c, Self>,
        query: Query<'c>,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, StoreError>>;

    fn fetch_all<'c>(on: On<'c, Self>, query: Query<'c>)
        -> BoxFuture<'c, Result<Vec<Self::Row>, StoreError>>;

    /// The rows of `sql` as they come off the cursor, on a connection of the pool.
    fn fetch<'c>(
        pool: &'c Pool<Self>,
        sql: &'c str,
        args: Vec<Value<'c>>,
    ) -> BoxStream<'c, Result<Self::Row, StoreError>>;

    /// The row's columns, read by name.
    fn columns(row: &Self::Row) -> impl Columns + Send + Sync + '_;
}

/// A row read by column name; a column that is missing, or of another type, is
/// `StoreError::Corrupt` naming it.
struct RowColumns<'r, R>(&'r R);

impl<R: sqlx::Row> RowColumns<'_, R> {
    fn get<T>(&self, name: &'static str) -> Result<T, StoreError>
    where
        T: for<'x> Decode<'x, R::Database> + Type<R::Database>,
        &'static str: ColumnIndex<R>,
    {
        self.0.try_get(name).map_err(|err| StoreError::corrupt(name, err))
    }
}

impl<R> Columns for RowColumns<'_, R>
where
    R: sqlx::Row,
    String: for<'x> Decode<'x, R::Database> + Type<R::Database>,
    i64: for<'x> Decode<'x, R::Database> + Type<R::Database>,
    bool: for<'x> Decode<'x, R::Database> + Type<R::Database>,
    Vec<u8>: for<'x> Decode<'x, R::Database> + Type<R::Database>,
    for<'x> &'x str: Decode<'x, R::Database> + Type<R::Database>,
    &'static str: ColumnIndex<R>,
{
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

    fn read_text<T>(&self, name: &'static str, read: impl FnOnce(&str) -> T) -> Result<T, StoreError> {
        let text: &str = self
            .0
            .try_get(name)
            .map_err(|err| StoreError::corrupt(name, err))?;
        Ok(read(text))
    }
}

/// The connection a statement runs on: one taken from the pool for the statement (as
/// sqlx's pool executor does), or the caller's.
enum Connection<'c, DB: Database> {
    Pooled(PoolConnection<DB>),
    Borrowed(&'c mut DB::Connection),
}

impl<'c, DB: Database> Connection<'c, DB> {
    async fn of(on: On<'c, DB>) -> Result<Self, StoreError> {
        Ok(match on {
            On::Pool(pool) => Self::Pooled(pool.acquire().await.map_err(db)?),
            On::Connection(connection) => Self::Borrowed(connection),
        })
    }

    fn get(&mut self) -> &mut DB::Connection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Borrowed(connection) => connection,
        }
    }
}

/// The sqlx statement of `sql` with `args` bound, each with the database's encoding of
/// its Rust type.
fn bound<'q, DB>(sql: &'q str, args: Vec<Value<'q>>) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    args.into_iter().fold(sqlx::query(sql), |query, arg| match arg {
        Value::Text(value) => query.bind(value),
        Value::OwnedText(value) => query.bind(value),
        Value::Integer(value) => query.bind(value),
        Value::Bytes(value) => query.bind(value),
    })
}

/// Runs `query` with sqlx's `method` on the connection `on` names, as a boxed future.
macro_rules! run {
    ($on:expr, $query:expr, $method:ident) => {
        Box::pin(async move {
            let Query { sql, args } = $query;
            let mut connection = Connection::of($on).await?;
            bound::<DB>(&sql, args)
                .$method(connection.get())
                .await
                .map_err(db)
        })
    };
}

impl<DB> SqlDatabase for DB
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> &'q [u8]: Encode<'q, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    bool: for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    fn execute<'c>(
        on: On<'c, Self>,
        query: Query<'c>,
    ) -> BoxFuture<'c, Result<Self::QueryResult, StoreError>> {
        run!(on, query, execute)
    }

    fn fetch_optional<'c>(
        on: On<'c, Self>,
        query: Query<'c>,
    ) -> BoxFuture<'c, Result<Option<Self::Row>, StoreError>> {
        run!(on, query, fetch_optional)
    }

    fn fetch_all<'c>(
        on: On<'c, Self>,
        query: Query<'c>,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, StoreError>> {
        run!(on, query, fetch_all)
    }

    fn fetch<'c>(
        pool: &'c Pool<Self>,
        sql: &'c str,
        args: Vec<Value<'c>>,
    ) -> BoxStream<'c, Result<Self::Row, StoreError>> {
        bound::<DB>(sql, args).fetch(pool).map_err(db).boxed()
    }

    fn columns(row: &Self::Row) -> impl Columns + Send + Sync + '_ {
        RowColumns(row)
    }
}
