//! The audit trail: who changed what, when, from where, under which request.
//!
//! Every store function that changes something writes its audit record in the same transaction
//! as the change, so while tracing is on (the `trace` runtime setting) no change goes
//! unrecorded and no record describes a change that did not happen. Who and from where come from
//! the request being served: the request-id middleware opens an [`AuditContext`] for the
//! request's task and the auth check fills in the caller; work outside a request (the offline
//! CLI, background drift recording) is attributed to `maas`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{Any, Executor, Row};
use utoipa::ToSchema;

use crate::store::StoreError;

/// Who is acting in the current request, and from where.
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    pub actor: Option<String>,
    /// Formatted only when a change is recorded, not on every request.
    pub client: Option<std::net::IpAddr>,
    pub request_id: String,
}

tokio::task_local! {
    static CONTEXT: Arc<Mutex<AuditContext>>;
}

/// Run `work` with a fresh audit context (one per request).
pub async fn scope<F: std::future::Future>(context: AuditContext, work: F) -> F::Output {
    CONTEXT.scope(Arc::new(Mutex::new(context)), work).await
}

/// Record who the request's caller is (called once authentication succeeded).
pub fn set_actor(actor: String) {
    let _ = CONTEXT.try_with(|c| c.lock().actor = Some(actor));
}

/// The current request's context (empty outside a request), to carry into spawned work.
pub fn current() -> AuditContext {
    CONTEXT.try_with(|c| c.lock().clone()).unwrap_or_default()
}

/// Microseconds since the epoch, strictly increasing within this process, so the changes of one
/// request keep their order even inside one millisecond.
fn clock_us() -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Whether changes are being recorded (the `trace` runtime setting); shared by every clone of
/// the store.
#[derive(Debug, Clone)]
pub struct AuditSwitch(Arc<AtomicBool>);

impl Default for AuditSwitch {
    fn default() -> Self {
        AuditSwitch(Arc::new(AtomicBool::new(true)))
    }
}

impl AuditSwitch {
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Release);
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub kind: &'a str,
    pub model: Option<&'a str>,
    pub version: Option<u64>,
    pub details: Value,
}

impl<'a> Change<'a> {
    pub fn new(kind: &'a str) -> Self {
        Change {
            kind,
            model: None,
            version: None,
            details: Value::Object(Default::default()),
        }
    }

    pub fn model(mut self, model: &'a str) -> Self {
        self.model = Some(model);
        self
    }

    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Write `change` with the current request's context, unless recording is off. Meant to run on
/// the transaction of the change itself.
pub async fn record<'e, E>(
    executor: E,
    switch: &AuditSwitch,
    change: Change<'_>,
) -> Result<(), StoreError>
where
    E: Executor<'e, Database = Any>,
{
    if !switch.is_on() {
        return Ok(());
    }
    let context = current();
    sqlx::query(
        "INSERT INTO audit_events (id, at, actor, client, request_id, kind, model, version, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(clock_us())
    .bind(context.actor.unwrap_or_else(|| "maas".to_owned()))
    .bind(context.client.map(|a| a.to_string()).unwrap_or_default())
    .bind(context.request_id)
    .bind(change.kind)
    .bind(change.model)
    .bind(change.version.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
    .bind(change.details.to_string())
    .execute(executor)
    .await?;
    Ok(())
}

/// A recorded change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEvent {
    pub id: String,
    /// RFC 3339, microsecond precision.
    pub at: String,
    /// The user (or `user (key <id>)`) who made the change; `maas` for the server itself.
    pub actor: String,
    /// The client address the change came from.
    pub client: String,
    pub request_id: String,
    /// What changed: `deploy`, `redeploy`, `undeploy`, `delete_version`, `delete_model`,
    /// `create_model`, `action`, `pause`, `resume`, `serving_update`, `baseline_update`,
    /// `settings_change`, `token_issued`, `user_created`, `user_updated`, `user_deleted`,
    /// `key_created`, `key_revoked`, `drift_event`.
    pub kind: String,
    pub model: Option<String>,
    pub version: Option<u64>,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// The filters as SQL, with time bounds in microseconds.
pub struct AuditFilter {
    pub actor: Option<String>,
    pub model: Option<String>,
    pub kind: Option<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

/// A filter value to bind (audit and job filters).
pub(crate) enum Bound<'a> {
    Text(&'a str),
    Int(i64),
}

impl AuditFilter {
    /// `WHERE …` with numbered placeholders for the filters that are set, and their values.
    fn clause<'a>(&'a self) -> (String, Vec<Bound<'a>>) {
        let mut parts = Vec::new();
        let mut values: Vec<Bound<'a>> = Vec::new();
        let mut add = |column: &str, op: &str, value: Bound<'a>| {
            values.push(value);
            parts.push(format!("{column} {op} ${}", values.len()));
        };
        if let Some(actor) = &self.actor {
            add("actor", "=", Bound::Text(actor));
        }
        if let Some(model) = &self.model {
            add("model", "=", Bound::Text(model));
        }
        if let Some(kind) = &self.kind {
            add("kind", "=", Bound::Text(kind));
        }
        if let Some(since) = self.since_us {
            add("at", ">=", Bound::Int(since));
        }
        if let Some(until) = self.until_us {
            add("at", "<", Bound::Int(until));
        }
        let clause = if parts.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", parts.join(" AND "))
        };
        (clause, values)
    }
}

pub(crate) fn bind<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    values: &[Bound<'q>],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            Bound::Text(t) => query.bind(*t),
            Bound::Int(n) => query.bind(*n),
        };
    }
    query
}

/// One page of events matching `filter`, newest first, and how many match in all.
pub async fn query(
    pool: &sqlx::AnyPool,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEvent>, u64), StoreError> {
    let (clause, values) = filter.clause();
    let count_sql = format!("SELECT COUNT(*) AS n FROM audit_events {clause}");
    let total: i64 = bind(sqlx::query(&count_sql), &values)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    let page_sql = format!(
        "SELECT id, at, actor, client, request_id, kind, model, version, details FROM audit_events \
         {clause} ORDER BY at DESC, id DESC LIMIT {} OFFSET {}",
        filter.limit, filter.offset
    );
    let rows = bind(sqlx::query(&page_sql), &values)
        .fetch_all(pool)
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let details: String = row.try_get("details")?;
        events.push(AuditEvent {
            id: row.try_get("id")?,
            at: super::rfc3339_us(row.try_get("at")?),
            actor: row.try_get("actor")?,
            client: row.try_get("client")?,
            request_id: row.try_get("request_id")?,
            kind: row.try_get("kind")?,
            model: row.try_get("model")?,
            version: row
                .try_get::<Option<i64>, _>("version")?
                .map(|v| v.max(0) as u64),
            details: redacted(serde_json::from_str(&details).unwrap_or(Value::String(details))),
        });
    }
    Ok((events, total.max(0) as u64))
}

/// Entries written before sources were redacted on the way in.
fn redacted(mut details: Value) -> Value {
    if let Some(Value::String(source)) = details.get_mut("source") {
        *source = crate::store::redact::url(source);
    }
    details
}
