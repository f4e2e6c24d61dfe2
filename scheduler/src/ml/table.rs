//! CSV tables with a header row: the data that flows between the built-in tasks.
//!
//! Cells stay text until a task asks for numbers, so label columns keep their class names and
//! errors can quote the cell. A cell that is empty or reads `NA`, `N/A`, `NaN`, `null`, `None` or
//! `?` (any case) is a missing value.

use std::path::{Path, PathBuf};

use super::MlError;

/// A whole CSV file in memory.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Where it came from, for messages.
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// What one cell holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

pub(crate) fn cell(text: &str) -> Cell<'_> {
    let text = text.trim();
    if is_missing(text) {
        return Cell::Missing;
    }
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Cell::Number(n),
        _ => Cell::Text(text),
    }
}

fn is_missing(text: &str) -> bool {
    text.is_empty()
        || ["na", "n/a", "nan", "null", "none", "?"]
            .iter()
            .any(|m| text.eq_ignore_ascii_case(m))
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
        let csv_error = |e: csv::Error| MlError::Csv {
            path: path.to_owned(),
            reason: match e.position() {
                Some(p) => format!("line {}: {}", p.line(), csv_reason(&e)),
                None => csv_reason(&e),
            },
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .trim(csv::Trim::All)
            .has_headers(true)
            .from_reader(bytes);
        let header: Vec<String> = reader
            .headers()
            .map_err(csv_error)?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(MlError::Csv {
                path: path.to_owned(),
                reason: "the file is empty; expected a header row naming the columns".into(),
            });
        }
        for (i, name) in header.iter().enumerate() {
            if name.is_empty() {
                return Err(MlError::Csv {
                    path: path.to_owned(),
                    reason: format!("column {} of the header has no name", i + 1),
                });
            }
            if header[..i].contains(name) {
                return Err(MlError::Csv {
                    path: path.to_owned(),
                    reason: format!("the header names column '{name}' twice"),
                });
            }
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            // Blank lines are skipped by the reader; they are no rows.
            let record = record.map_err(csv_error)?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        Ok(Table {
            path: path.to_owned(),
            header,
            rows,
        })
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

    /// The line of the file a row was read from (the header is line 1).
    pub(crate) fn line(row: usize) -> usize {
        row + 2
    }

    pub(crate) fn bad_value(&self, row: usize, column: usize, reason: String) -> MlError {
        MlError::BadValue {
            path: self.path.clone(),
            line: Table::line(row),
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
        match cell(text) {
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
            .map(|(r, row)| match cell(&row[column]) {
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
            .map(|(r, row)| match cell(&row[column]) {
                Cell::Missing => Err(self.bad_value(r, column, "missing label".into())),
                Cell::Number(_) | Cell::Text(_) => Ok(class_name(&row[column])),
            })
            .collect()
    }
}

/// The canonical spelling of a class label: integral numbers without a fraction.
pub(crate) fn class_name(text: &str) -> String {
    let text = text.trim();
    match cell(text) {
        Cell::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", n as i64),
        _ => text.to_owned(),
    }
}

/// Class names in a stable order: numerically when they are all numbers, else as text.
pub(crate) fn sort_classes(classes: &mut [String]) {
    let numeric: Option<Vec<f64>> = classes
        .iter()
        .map(|c| match cell(c) {
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

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "this row has {len} field{} but the header has {expected_len}",
            if *len == 1 { "" } else { "s" }
        ),
        csv::ErrorKind::Utf8 { .. } => "the file is not UTF-8 text".into(),
        _ => e.to_string(),
    }
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

    #[test]
    fn cells_are_numbers_text_or_missing() {
        assert_eq!(cell(" 2.5 "), Cell::Number(2.5));
        assert_eq!(cell("NaN"), Cell::Missing);
        assert_eq!(cell(""), Cell::Missing);
        assert_eq!(cell("NA"), Cell::Missing);
        assert_eq!(cell("inf"), Cell::Text("inf"));
        assert_eq!(cell("red"), Cell::Text("red"));
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let err = table("a,b\n1,2\n3\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("1 field but the header has 2"), "{err}");
    }

    #[test]
    fn blank_lines_are_not_rows() {
        let t = table("a,b\n1,2\n\n3,4\n\n").unwrap();
        assert_eq!(t.rows, vec![vec!["1", "2"], vec!["3", "4"]]);
        let t = table("a\n1\n\n2\n").unwrap();
        assert_eq!(t.rows.len(), 2);
    }

    #[test]
    fn duplicate_and_empty_headers_are_refused() {
        assert!(table("a,a\n1,2\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(table("").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn feature_errors_name_line_and_column() {
        let t = table("x,y\n1,2\n3,NaN\n").unwrap();
        let err = t.features(&[0, 1]).unwrap_err().to_string();
        assert!(err.contains("t.csv line 3, column 'y'"), "{err}");
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
