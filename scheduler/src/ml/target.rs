//! What a `train` task's label asks for: classes or a number.
//!
//! Decision trees and random forests do both. `task: regression` or `task: classification`
//! says which; without it, a numeric label with a value that is not a whole number is a
//! quantity (regression) and any other label names classes. Whichever way classification is
//! chosen, for a tree or for any other classifier, a numeric label with more than
//! [`MAX_NUMERIC_CLASSES`] distinct values is refused: that is a quantity, and a classifier of
//! hundreds of one-row classes (what house prices made before) predicts nothing useful.

use super::params::Params;
use super::table::{Cell, Table};
use super::{MlError, Task};

/// The most distinct values a numeric label may have to be taken as classes.
pub(crate) const MAX_NUMERIC_CLASSES: usize = 50;

/// The algorithms that train a classifier or a regressor, as the label asks.
pub(crate) const EITHER_TASK: &[&str] = &["decision_tree", "random_forest"];

/// The task a tree algorithm trains on `label` (column `ix` of `table`).
pub(crate) fn tree_task(p: &Params, table: &Table, ix: usize) -> Result<Task, MlError> {
    match p.choice("task", &["classification", "regression"])? {
        Some("regression") => Ok(Task::Regression),
        Some(_) => Ok(Task::Classification),
        None => {
            let continuous = table
                .rows
                .iter()
                .any(|row| matches!(Cell::of(&row[ix]), Cell::Number(n) if n.fract() != 0.0));
            let numeric = table
                .rows
                .iter()
                .all(|row| matches!(Cell::of(&row[ix]), Cell::Number(_) | Cell::Missing));
            Ok(if numeric && continuous {
                Task::Regression
            } else {
                Task::Classification
            })
        }
    }
}

/// Refuse a classifier whose numeric label has too many distinct values to be classes.
pub(crate) fn check_class_count(
    table: &Table,
    ix: usize,
    classes: &[String],
    algorithm: &str,
) -> Result<(), MlError> {
    let numeric = classes
        .iter()
        .all(|c| matches!(Cell::of(c), Cell::Number(_)));
    if !numeric || classes.len() <= MAX_NUMERIC_CLASSES {
        return Ok(());
    }
    let fix = if EITHER_TASK.contains(&algorithm) {
        format!("to predict the number, add `task: regression` to the {algorithm} task's params")
    } else {
        "to predict the number, train a regressor (linear_regression, ridge, lasso, or \
         decision_tree or random_forest with `task: regression`)"
            .to_owned()
    };
    Err(MlError::data(
        &table.path,
        format!(
            "the label column '{}' holds {} distinct numbers, too many to be the classes of a \
             classifier (at most {MAX_NUMERIC_CLASSES}); {fix}",
            table.header[ix],
            classes.len(),
        ),
    ))
}
