//! Reading the audit trail. Changes are recorded by the store, in the same transaction as the
//! change itself (`store::audit`); who made them comes from the request's audit context.

use crate::services::error::ServiceError;
use crate::store::audit::{AuditEvent, AuditFilter};
use crate::store::SqlStore;

/// One page of events matching `filter`, newest first, and how many match in all.
pub async fn events(
    store: &SqlStore,
    filter: &AuditFilter,
) -> Result<(Vec<AuditEvent>, u64), ServiceError> {
    Ok(store.audit_events(filter).await?)
}
