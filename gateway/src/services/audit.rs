//! Reading the audit trail. Changes are recorded by the store, in the same transaction as the
//! change itself (`store::audit`); who made them comes from the request's audit context.

use crate::services::error::ServiceError;
use crate::store::audit::{AuditEvent, AuditFilter};
use crate::store::SqlStore;

/// The request id a request goes by: the one its client sent when that is sane (1 to 128
/// characters of `A-Z a-z 0-9 - _ . : /`, safe in logs and headers), else a new one. HTTP's
/// `X-Request-Id` and gRPC's `x-request-id` metadata both go through here.
pub fn request_id(given: Option<&str>) -> String {
    given
        .filter(|text| {
            !text.is_empty()
                && text.len() <= 128
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// One page of events matching `filter`, newest first, and how many match in all.
pub async fn events(
    store: &SqlStore,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEvent>, u64), ServiceError> {
    Ok(store.audit_events(filter).await?)
}
