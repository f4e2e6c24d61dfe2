//! The crate's one error enum: bad detector parameters and malformed report inputs.

/// Everything that can go wrong in `maas-drift`. Detectors never fail once built; errors come
/// from parameters and from report inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriftError {
    /// The detector name is not one of the four this crate implements.
    #[error("unknown drift detector `{0}`; expected one of: adwin, page_hinkley, hddm_a, hddm_w")]
    UnknownDetector(String),
    /// A parameter name the detector does not take.
    #[error("unknown parameter `{name}` for {detector}; expected one of: {allowed}")]
    UnknownParameter {
        detector: &'static str,
        name: String,
        allowed: &'static str,
    },
    /// The same parameter given twice.
    #[error("parameter `{name}` is given more than once for {detector}")]
    DuplicateParameter {
        detector: &'static str,
        name: String,
    },
    /// A parameter that does not parse or lies outside its allowed range.
    #[error("invalid {scope} parameter `{name}` = {value}: expected {allowed}")]
    InvalidParameter {
        /// The detector (`adwin`, …) or `deviation` for the deviation check.
        scope: &'static str,
        name: &'static str,
        value: String,
        /// The allowed range, in words, e.g. "a number in (0, 1)".
        allowed: &'static str,
    },
    /// A table row whose length differs from the number of columns.
    #[error("row {row} has {found} values but the table has {expected} columns")]
    RaggedRow {
        row: usize,
        expected: usize,
        found: usize,
    },
    /// A column name that appears twice in one table.
    #[error("column `{0}` appears more than once")]
    DuplicateColumn(String),
    /// A feature of the new rows that the baseline does not have.
    #[error("feature `{0}` of the new rows is not a baseline column")]
    MissingBaselineColumn(String),
    /// Scaling was asked for but the baseline column holds no finite value to take a range from.
    #[error("baseline column `{0}` has no finite value, so it cannot be scaled into [0, 1]")]
    EmptyBaselineColumn(String),
    /// The deviation check was asked for but no training statistics were given for a feature.
    #[error("no training statistics for feature `{0}`")]
    MissingTrainingStats(String),
    /// Training statistics that cannot be used (non-finite mean, negative or non-finite std).
    #[error("training statistics of feature `{feature}` are invalid: {detail}")]
    InvalidTrainingStats {
        feature: String,
        detail: &'static str,
    },
}
