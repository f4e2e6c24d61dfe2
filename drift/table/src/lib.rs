//! The one CSV reader of maas. The server's drift baselines (`baseline`, `training_data`), the
//! offline `maas drift` command and the scheduler's built-in ML tasks all read tables here, so a
//! file means the same thing to each of them.
//!
//! Pure and synchronous: it parses bytes the caller already holds; no files, no network.
//!
//! # The rules
//!
//! 1. **Text.** UTF-8 only; a leading byte-order mark is dropped. Other bytes are refused with
//!    the line they are on.
//! 2. **Cells.** Separated by `,` (or the one-byte delimiter given), `"` quotes a cell, spaces
//!    around a cell or a header name are trimmed.
//! 3. **Blank lines** (nothing but spaces) are skipped wherever they are; they are no rows. A line
//!    of delimiters only (`,,`) is a row whose cells are all missing.
//! 4. **Header.** The first row is the header, unless every cell of it is a number or a missing
//!    value (and at least one is a number): then the file has no header and its columns are named
//!    `f0`, `f1`, … in order. Header names must be non-empty and distinct. So a header made of
//!    numbers only (`0,1,2`, as pandas writes an unnamed frame) reads as a row of data: name
//!    such columns.
//! 5. **Rows** have exactly as many cells as the header (or the first row).
//! 6. **Missing values**: an empty cell, or `NA`, `N/A`, `NaN`, `null`, `None`, `?` in any case
//!    ([`MISSING_MARKERS`]). Everywhere they are the same thing: in the numeric view, NaN. The
//!    server's drift baselines and `maas drift` accept them (the detectors and the statistics
//!    skip NaN) but refuse a baseline column with no value at all
//!    ([`NumericTable::require_values`]); the built-in ML tasks refuse them in features until
//!    `preprocess` fills or drops them.
//! 7. **Numbers** are what Rust reads as an `f64` (`3`, `-2.5`, `1e-3`, `+.5`) and is finite;
//!    `inf` or `1e999` is not a number.
//! 8. **Messages** name the line (the file's own line number, header and blank lines counted) and
//!    the column, and never quote a cell: a refused read must not leak a file's contents.
//!
//! [`Table::parse`] applies rules 1–5 and keeps cells as text (label columns hold class
//! names); [`Cell::of`] classifies one cell (rules 6–7); [`Table::numbers`] is the numeric view.

use std::fmt;

/// The cells that read as a missing value, compared without regard to ASCII case, besides the
/// empty cell.
pub const MISSING_MARKERS: [&str; 6] = ["na", "n/a", "nan", "null", "none", "?"];

/// The name of column `index` (0-based) of a file without a header.
pub fn generated_name(index: usize) -> String {
    format!("f{index}")
}

/// Why a table could not be read. Messages never quote a cell of the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No row at all (an empty file, or blank lines only).
    #[error("the CSV is empty; expected a header row naming the columns, then one row per line")]
    Empty,
    /// Bytes that are not UTF-8.
    #[error("line {line} is not UTF-8 text; save the file as UTF-8")]
    NotUtf8 { line: usize },
    /// Anything else the CSV parser refuses.
    #[error("line {line} cannot be read as CSV")]
    Malformed { line: usize },
    /// A header cell that is empty. `column` is 1-based.
    #[error("column {column} of the header has no name")]
    UnnamedColumn { column: usize },
    /// A header name used twice.
    #[error("the header names column '{name}' twice")]
    DuplicateColumn { name: String },
    /// A row with more or fewer cells than the header.
    #[error(
        "line {line} has {found} field{} but the {} has {expected} column{}",
        plural(*.found),
        if *.has_header { "header" } else { "first row" },
        plural(*.expected)
    )]
    RaggedRow {
        line: usize,
        found: usize,
        expected: usize,
        has_header: bool,
    },
    /// A column asked for by name that the table does not have. Only the name asked for is
    /// quoted, never the file's own header.
    #[error("there is no column '{name}' ({})", HeaderSummary { columns: *.columns, has_header: *.has_header })]
    NoSuchColumn {
        name: String,
        columns: usize,
        has_header: bool,
    },
    /// A cell of the numeric view that is neither a number nor a missing value.
    #[error(
        "line {line}, column '{column}': not a number (a missing value is an empty cell or NA, \
         N/A, NaN, null, None or ?)"
    )]
    NotANumber { line: usize, column: String },
    /// A column of the numeric view without one number in it.
    #[error("column '{column}' has no value: every cell is missing")]
    NoValues { column: String },
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// How a table's columns are described in a message without quoting its header.
struct HeaderSummary {
    columns: usize,
    has_header: bool,
}

impl fmt::Display for HeaderSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_header {
            write!(
                f,
                "the header names {} column{}",
                self.columns,
                plural(self.columns)
            )
        } else {
            write!(
                f,
                "the file has no header row, its first row being all numbers, so its columns are \
                 f0 to f{}",
                self.columns.saturating_sub(1)
            )
        }
    }
}

/// What one cell holds (rules 6 and 7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    /// Anything else, trimmed.
    Text(&'a str),
}

impl<'a> Cell<'a> {
    /// Classify a cell's text (trimmed first).
    pub fn of(text: &'a str) -> Cell<'a> {
        let text = text.trim();
        if is_missing(text) {
            return Cell::Missing;
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Cell::Number(n),
            _ => Cell::Text(text),
        }
    }
}

/// Whether a (trimmed) cell is a missing value.
pub fn is_missing(text: &str) -> bool {
    text.is_empty() || MISSING_MARKERS.iter().any(|m| text.eq_ignore_ascii_case(m))
}

/// A whole CSV file, its cells as text.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    columns: Vec<String>,
    has_header: bool,
    rows: Vec<Vec<String>>,
    /// The file's line number of each row.
    lines: Vec<usize>,
}

/// A [`Table`] taken apart, for callers that keep their own representation.
#[derive(Debug, Clone, PartialEq)]
pub struct TableParts {
    pub columns: Vec<String>,
    pub has_header: bool,
    pub rows: Vec<Vec<String>>,
    pub lines: Vec<usize>,
}

/// The numeric view of a table: missing values are NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    /// Read comma-separated text.
    pub fn parse(bytes: &[u8]) -> Result<Table, TableError> {
        Table::parse_delimited(bytes, b',')
    }

    /// Read text whose cells are separated by `delimiter` (one ASCII byte: `,`, `;`, tab…).
    pub fn parse_delimited(bytes: &[u8], delimiter: u8) -> Result<Table, TableError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            // Row lengths are checked here, to say which line and against what.
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        // The columns and whether they came from a header, once the first row is read.
        let mut header: Option<(Vec<String>, bool)> = None;
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        let mut record = csv::StringRecord::new();
        let mut lines_seen = LineCounter::new(bytes);
        loop {
            match reader.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(read_error(&e, &mut lines_seen)),
            }
            // The parser already skips empty lines; a line of spaces is one empty cell.
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            let line = record
                .position()
                .map_or(0, |p| lines_seen.line_at(p.byte()));
            match &header {
                None => {
                    let (columns, has_header) = first_row(&record)?;
                    header = Some((columns, has_header));
                    if has_header {
                        continue;
                    }
                }
                Some((columns, has_header)) if record.len() != columns.len() => {
                    return Err(TableError::RaggedRow {
                        line,
                        found: record.len(),
                        expected: columns.len(),
                        has_header: *has_header,
                    })
                }
                Some(_) => {}
            }
            rows.push(record.iter().map(str::to_owned).collect());
            lines.push(line);
        }
        let (columns, has_header) = header.ok_or(TableError::Empty)?;
        Ok(Table {
            columns,
            has_header,
            rows,
            lines,
        })
    }

    /// Column names: the header's, or `f0`, `f1`, … without one.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Whether the first row was a header (rule 4).
    pub fn has_header(&self) -> bool {
        self.has_header
    }

    /// The data rows, each with one cell per column.
    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }

    /// The file's line number of each data row.
    pub fn lines(&self) -> &[usize] {
        &self.lines
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn into_parts(self) -> TableParts {
        TableParts {
            columns: self.columns,
            has_header: self.has_header,
            rows: self.rows,
            lines: self.lines,
        }
    }

    /// The index of a column, by name.
    pub fn column(&self, name: &str) -> Result<usize, TableError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| TableError::NoSuchColumn {
                name: name.to_owned(),
                columns: self.columns.len(),
                has_header: self.has_header,
            })
    }

    /// Every column but `leave_out` (a label, say, which may hold class names), as numbers:
    /// a missing value is NaN; any other cell that is not a number is an error naming its line
    /// and column.
    pub fn numbers(&self, leave_out: Option<&str>) -> Result<NumericTable, TableError> {
        let skip = leave_out.map(|name| self.column(name)).transpose()?;
        let keep: Vec<usize> = (0..self.columns.len())
            .filter(|&c| Some(c) != skip)
            .collect();
        let rows = self
            .rows
            .iter()
            .zip(&self.lines)
            .map(|(row, &line)| {
                keep.iter()
                    .map(|&c| match Cell::of(&row[c]) {
                        Cell::Number(x) => Ok(x),
                        Cell::Missing => Ok(f64::NAN),
                        Cell::Text(_) => Err(TableError::NotANumber {
                            line,
                            column: self.columns[c].clone(),
                        }),
                    })
                    .collect()
            })
            .collect::<Result<_, _>>()?;
        Ok(NumericTable {
            columns: keep.iter().map(|&c| self.columns[c].clone()).collect(),
            rows,
        })
    }
}

impl NumericTable {
    /// Refuse a column without a single number: a drift baseline needs one to compare with.
    pub fn require_values(&self) -> Result<(), TableError> {
        for (c, name) in self.columns.iter().enumerate() {
            if !self.rows.iter().any(|row| row[c].is_finite()) {
                return Err(TableError::NoValues {
                    column: name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// The columns a first row gives, and whether it is a header (rule 4).
fn first_row(record: &csv::StringRecord) -> Result<(Vec<String>, bool), TableError> {
    let mut any_number = false;
    let all_values = record.iter().all(|cell| match Cell::of(cell) {
        Cell::Number(_) => {
            any_number = true;
            true
        }
        Cell::Missing => true,
        Cell::Text(_) => false,
    });
    if all_values && any_number {
        return Ok(((0..record.len()).map(generated_name).collect(), false));
    }
    let columns: Vec<String> = record.iter().map(str::to_owned).collect();
    for (i, name) in columns.iter().enumerate() {
        if name.is_empty() {
            return Err(TableError::UnnamedColumn { column: i + 1 });
        }
        if columns[..i].contains(name) {
            return Err(TableError::DuplicateColumn { name: name.clone() });
        }
    }
    Ok((columns, true))
}

/// Line numbers from byte offsets. The parser's own line count leaves out the empty lines it
/// skips before a record, and its byte offset points before them too.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Bytes counted so far, and the line the next one is on.
    at: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `offset` that is not a line ending: where the
    /// record found from `offset` starts. Offsets only grow from one call to the next.
    fn line_at(&mut self, offset: u64) -> usize {
        let mut start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        while matches!(self.bytes.get(start), Some(b'\n' | b'\r')) {
            start += 1;
        }
        if start > self.at {
            self.line += self.bytes[self.at..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.at = start;
        }
        self.line
    }
}

fn read_error(e: &csv::Error, lines: &mut LineCounter<'_>) -> TableError {
    let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => TableError::NotUtf8 { line },
        _ => TableError::Malformed { line },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a case reads as: columns, whether there was a header, rows with their lines.
    type Read = (Vec<String>, bool, Vec<(usize, Vec<String>)>);

    fn read(text: &[u8]) -> Result<Read, String> {
        let t = Table::parse(text).map_err(|e| e.to_string())?;
        let rows = t.lines().iter().copied().zip(t.rows().to_vec()).collect();
        Ok((t.columns().to_vec(), t.has_header(), rows))
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    fn ok(columns: &[&str], header: bool, rows: &[(usize, &[&str])]) -> Result<Read, String> {
        let rows = rows.iter().map(|(l, r)| (*l, strings(r))).collect();
        Ok((strings(columns), header, rows))
    }

    #[test]
    fn the_rules_of_a_read() {
        const EMPTY: &str =
            "the CSV is empty; expected a header row naming the columns, then one row per line";
        let cases: Vec<(&str, &[u8], Result<Read, String>)> = vec![
            (
                "header and rows, trimmed",
                b" a , b \n 1 ,2\n3, x \n",
                ok(&["a", "b"], true, &[(2, &["1", "2"]), (3, &["3", "x"])]),
            ),
            (
                "byte-order mark dropped",
                b"\xEF\xBB\xBFa,b\n1,2\n",
                ok(&["a", "b"], true, &[(2, &["1", "2"])]),
            ),
            (
                "blank lines skipped, lines still counted",
                b"\n  \na,b\n\n1,2\n   \n3,4\n\n",
                ok(&["a", "b"], true, &[(5, &["1", "2"]), (7, &["3", "4"])]),
            ),
            (
                "CRLF line endings",
                b"a,b\r\n1,2\r\n\r\n3,4\r\n",
                ok(&["a", "b"], true, &[(2, &["1", "2"]), (4, &["3", "4"])]),
            ),
            (
                "one column, blank lines are not rows",
                b"a\n1\n\n2\n",
                ok(&["a"], true, &[(2, &["1"]), (4, &["2"])]),
            ),
            (
                "a line of delimiters is a row of missing cells",
                b"a,b\n,\n",
                ok(&["a", "b"], true, &[(2, &["", ""])]),
            ),
            (
                "quotes, a delimiter and a line break inside a cell",
                b"a,b\n\"x,y\",\"1\n2\"\n3,4\n",
                ok(
                    &["a", "b"],
                    true,
                    &[(2, &["x,y", "1\n2"]), (4, &["3", "4"])],
                ),
            ),
            (
                "all numbers: no header, generated names",
                b"1,2.5\n3,4\n",
                ok(
                    &["f0", "f1"],
                    false,
                    &[(1, &["1", "2.5"]), (2, &["3", "4"])],
                ),
            ),
            (
                "numbers and missing values: still no header",
                b"1,,NA\n",
                ok(&["f0", "f1", "f2"], false, &[(1, &["1", "", "NA"])]),
            ),
            (
                "missing values only: a header (of odd names)",
                b"na,none\n1,2\n",
                ok(&["na", "none"], true, &[(2, &["1", "2"])]),
            ),
            (
                "inf is no number: a header",
                b"inf,1\n1,2\n",
                ok(&["inf", "1"], true, &[(2, &["1", "2"])]),
            ),
            ("header only", b"a,b\n", ok(&["a", "b"], true, &[])),
            ("empty", b"", Err(EMPTY.into())),
            ("blank lines only", b"\n \n\n", Err(EMPTY.into())),
            (
                "unnamed column",
                b"a,,c\n1,2,3\n",
                Err("column 2 of the header has no name".into()),
            ),
            (
                "duplicate name",
                b"a,b,a\n1,2,3\n",
                Err("the header names column 'a' twice".into()),
            ),
            (
                "short row",
                b"a,b\n1,2\n\n3\n",
                Err("line 4 has 1 field but the header has 2 columns".into()),
            ),
            (
                "long row without a header",
                b"1\n2,3\n",
                Err("line 2 has 2 fields but the first row has 1 column".into()),
            ),
            (
                "not UTF-8",
                b"a,b\n1,2\n3,\xff\xfe\n",
                Err("line 3 is not UTF-8 text; save the file as UTF-8".into()),
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(read(text), expected, "{name}");
        }
    }

    #[test]
    fn other_delimiters() {
        let t = Table::parse_delimited(b"a;b\n1,5;2\n", b';').unwrap();
        assert_eq!(t.rows(), [strings(&["1,5", "2"])]);
        let t = Table::parse_delimited(b"a\tb\n1\t2\n", b'\t').unwrap();
        assert_eq!(t.columns(), strings(&["a", "b"]));
    }

    #[test]
    fn cells_are_numbers_missing_or_text() {
        for missing in [
            "", "  ", "NA", "na", "N/A", "n/a", "NaN", "nan", "NULL", "None", "?",
        ] {
            assert_eq!(Cell::of(missing), Cell::Missing, "{missing:?}");
        }
        for (text, n) in [(" 2.5 ", 2.5), ("-3", -3.0), ("1e-3", 1e-3), ("+.5", 0.5)] {
            assert_eq!(Cell::of(text), Cell::Number(n), "{text:?}");
        }
        for text in ["inf", "-Infinity", "1e999", "red", "1,5", "0x10"] {
            assert_eq!(Cell::of(text), Cell::Text(text), "{text:?}");
        }
    }

    #[test]
    fn the_numeric_view() {
        let t =
            Table::parse(b"x,label,y\n1,setosa,\n\n2,versicolor,NA\n3,virginica,4e1\n").unwrap();
        let n = t.numbers(Some("label")).unwrap();
        assert_eq!(n.columns, strings(&["x", "y"]));
        assert_eq!(n.rows[2], [3.0, 40.0]);
        assert!(n.rows[0][1].is_nan() && n.rows[1][1].is_nan());
        n.require_values().unwrap();

        // Without leaving the label out, its text is an error that names the line and the
        // column, and never quotes the cell.
        let err = t.numbers(None).unwrap_err().to_string();
        assert!(
            err.starts_with("line 2, column 'label': not a number"),
            "{err}"
        );
        assert!(!err.contains("setosa"), "{err}");

        let err = t.numbers(Some("species")).unwrap_err().to_string();
        assert_eq!(
            err,
            "there is no column 'species' (the header names 3 columns)"
        );
        let headerless = Table::parse(b"1,2\n3,4\n").unwrap();
        let err = headerless.numbers(Some("label")).unwrap_err().to_string();
        assert!(
            err.contains("no header row") && err.contains("f0 to f1"),
            "{err}"
        );

        let empty = Table::parse(b"a,b\n1,\n2,?\n")
            .unwrap()
            .numbers(None)
            .unwrap();
        assert_eq!(
            empty.require_values().unwrap_err().to_string(),
            "column 'b' has no value: every cell is missing"
        );
    }
}
