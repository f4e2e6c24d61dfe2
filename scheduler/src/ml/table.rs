//! CSV tables: the data that flows between the built-in tasks, read by `maas-table` with the
//! rules every CSV reader of maas follows (header, blank lines, missing values; see its docs).
//!
//! Cells stay text until a task asks for numbers, so label columns keep their class names.
//! Messages name the file, the line and the column, never a cell: a task may be pointed at a
//! file its submitter cannot read, and a refused read must not leak it.

use std::path::{Path, PathBuf};

pub(crate) use maas_table::Cell;

use super::MlError;

/// A whole CSV file in memory.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Where it came from, for messages.
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// The line of the file each row was read from, for messages.
    pub lines: Vec<usize>,
}

impl Table {
    /// Read a comma-separated file.
    pub(crate) fn read(path: &Path) -> Result<Table, MlError> {
        Table::read_delimited(path, b',')
    }

    pub(crate) fn read_delimited(path: &Path, delimiter: u8) -> Result<Table, MlError> {
        let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
        Table::parse(path, &bytes, delimiter)
    }

    /// Parse CSV text; `path` only names it in messages.
    pub(crate) fn parse(path: &Path, bytes: &[u8], delimiter: u8) -> Result<Table, MlError> {
        let parts = maas_table::Table::parse_delimited(bytes, delimiter)
            .map_err(|e| MlError::Csv {
                path: path.to_owned(),
                reason: e.to_string(),
            })?
            .into_parts();
        Ok(Table {
            path: path.to_owned(),
            header: parts.columns,
            rows: parts.rows,
            lines: parts.lines,
        })
    }

    /// Some of this table's rows, in the order given, keeping the lines they were read from.
    pub(crate) fn subset(&self, rows: &[usize]) -> Table {
        Table {
            path: self.path.clone(),
            header: self.header.clone(),
            rows: rows.iter().map(|&r| self.rows[r].clone()).collect(),
            lines: rows.iter().map(|&r| self.line(r)).collect(),
        }
    }

    /// Write as comma-separated text, creating or replacing the file.
    pub(crate) fn write(&self, path: &Path) -> Result<(), MlError> {
        let mut writer = csv::WriterBuilder::new()
            .from_path(path)
            .map_err(|e| csv_write_error(path, e))?;
        writer
            .write_record(&self.header)
            .map_err(|e| csv_write_error(path, e))?;
        for row in &self.rows {
            writer
                .write_record(row)
                .map_err(|e| csv_write_error(path, e))?;
        }
        writer.flush().map_err(|e| MlError::io(path, e))
    }

    /// Index of a column; its absence is an error listing the columns there are.
    pub(crate) fn column(&self, name: &str) -> Result<usize, MlError> {
        self.header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| MlError::MissingColumn {
                path: self.path.clone(),
                column: name.to_owned(),
                available: self.header.clone(),
            })
    }

    /// The line of the file a row was read from (a table made here is written header first, one
    /// row per line).
    pub(crate) fn line(&self, row: usize) -> usize {
        self.lines.get(row).copied().unwrap_or(row + 2)
    }

    pub(crate) fn bad_value(&self, row: usize, column: usize, reason: String) -> MlError {
        MlError::BadValue {
            path: self.path.clone(),
            line: self.line(row),
            column: self.header[column].clone(),
            reason,
        }
    }

    /// Error when the table has fewer than `min` data rows.
    pub(crate) fn require_rows(&self, min: usize) -> Result<(), MlError> {
        if self.rows.len() < min {
            return Err(MlError::data(
                &self.path,
                format!(
                    "has {} data row{}; at least {min} needed",
                    self.rows.len(),
                    if self.rows.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        Ok(())
    }

    /// The named columns as a row-major matrix of feature values. Any missing or non-numeric
    /// cell is an error that says how to fix it.
    pub(crate) fn features(&self, columns: &[usize]) -> Result<Vec<f64>, MlError> {
        let mut values = Vec::with_capacity(self.rows.len() * columns.len());
        for (r, row) in self.rows.iter().enumerate() {
            for &c in columns {
                values.push(self.feature(r, c, &row[c])?);
            }
        }
        Ok(values)
    }

    fn feature(&self, row: usize, column: usize, text: &str) -> Result<f64, MlError> {
        match Cell::of(text) {
            Cell::Number(n) => Ok(n),
            Cell::Missing => Err(self.bad_value(
                row,
                column,
                "missing value; features must be complete: run preprocess with \
                 missing=drop, mean, median or zero first"
                    .to_owned(),
            )),
            Cell::Text(_) => Err(self.bad_value(
                row,
                column,
                "text where a number belongs; features must be numeric: one-hot encode the \
                 column with preprocess (encode) or drop it"
                    .to_owned(),
            )),
        }
    }

    /// A numeric target column (regression labels).
    pub(crate) fn numbers(&self, column: usize) -> Result<Vec<f64>, MlError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(r, row)| match Cell::of(&row[column]) {
                Cell::Number(n) => Ok(n),
                Cell::Missing => Err(self.bad_value(r, column, "missing label".into())),
                Cell::Text(_) => Err(self.bad_value(
                    r,
                    column,
                    "text where a number belongs; a regression label must be numeric".into(),
                )),
            })
            .collect()
    }

    /// A label column as class names. Numbers are written the one way (`1.0` and `1` are the
    /// same class, `1`).
    pub(crate) fn class_names(&self, column: usize) -> Result<Vec<String>, MlError> {
        self.rows
            .iter()
            .enumerate()
            .map(|(r, row)| match Cell::of(&row[column]) {
                Cell::Missing => Err(self.bad_value(r, column, "missing label".into())),
                Cell::Number(_) | Cell::Text(_) => Ok(class_name(&row[column])),
            })
            .collect()
    }
}

/// The canonical spelling of a class label: integral numbers without a fraction.
pub(crate) fn class_name(text: &str) -> String {
    let text = text.trim();
    match Cell::of(text) {
        Cell::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        _ => text.to_owned(),
    }
}

/// Class names in a stable order: numerically when they are all numbers, else as text.
pub(crate) fn sort_classes(classes: &mut [String]) {
    let numeric: Option<Vec<f64>> = classes
        .iter()
        .map(|c| match Cell::of(c) {
            Cell::Number(n) => Some(n),
            _ => None,
        })
        .collect();
    if numeric.is_some() {
        classes.sort_by(|a, b| {
            let (a, b) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            a.total_cmp(&b)
        });
    } else {
        classes.sort();
    }
}

/// A number as CSV text: the shortest spelling that reads back as the same f64.
pub(crate) fn format_number(n: f64) -> String {
    format!("{n}")
}

fn csv_write_error(path: &Path, e: csv::Error) -> MlError {
    MlError::Csv {
        path: path.to_owned(),
        reason: format!("cannot write: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Table, MlError> {
        Table::parse(Path::new("t.csv"), text.as_bytes(), b',')
    }

    /// The rules themselves are `maas-table`'s (and tested there); here, that they apply and
    /// that messages name the file.
    #[test]
    fn files_are_read_by_the_shared_rules() {
        let err = table("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "t.csv: line 3 has 1 field but the header has 2 columns"
        );
        let t = table("a,b\n1,2\n\n3,4\n\n").unwrap();
        assert_eq!(t.rows, vec![vec!["1", "2"], vec!["3", "4"]]);
        assert_eq!(t.lines, [2, 4]);
        assert!(table("a,a\n1,2\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(table("").unwrap_err().to_string().contains("empty"));
        let t = table("1,2\n3,4\n").unwrap();
        assert_eq!(t.header, ["f0", "f1"]);
        assert_eq!(t.rows.len(), 2);
    }

    #[test]
    fn feature_errors_name_line_and_column() {
        // Blank lines count: the line is the file's.
        let t = table("x,y\n1,2\n\n3,NaN\n").unwrap();
        let err = t.features(&[0, 1]).unwrap_err().to_string();
        assert!(err.contains("t.csv line 4, column 'y'"), "{err}");
        assert!(err.contains("missing=drop"), "{err}");
        let t = table("x,y\n1,abc\n").unwrap();
        let err = t.features(&[0, 1]).unwrap_err().to_string();
        assert!(err.contains("text where a number belongs"), "{err}");
        assert!(!err.contains("abc"), "a cell is never quoted: {err}");
        assert_eq!(
            table("x\n1\n2\n").unwrap().features(&[0]).unwrap(),
            [1.0, 2.0]
        );
    }

    #[test]
    fn classes_are_canonical_and_sorted() {
        assert_eq!(class_name("1.0"), "1");
        assert_eq!(class_name("setosa"), "setosa");
        let mut c = vec!["10".to_owned(), "9".to_owned(), "-1".to_owned()];
        sort_classes(&mut c);
        assert_eq!(c, ["-1", "9", "10"]);
        let mut c = vec!["b".to_owned(), "a".to_owned(), "10".to_owned()];
        sort_classes(&mut c);
        assert_eq!(c, ["10", "a", "b"]);
    }
}
