//! Reading texts (and gold labels) to classify: `.csv` with a `text` column, `.jsonl` with a
//! `text` field, or `-` for stdin, one text per line. Errors name the file and line.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {reason}")]
pub struct InputError {
    pub source_name: String,
    /// 1-based line number; 0 when the fault is not on one line.
    pub line: usize,
    pub reason: String,
}

/// One input row: the text and, for evaluation data, its gold label as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub text: String,
    pub label: Option<String>,
    /// Where it came from, for error messages.
    pub line: usize,
}

/// Reads rows from `path` (`-` = stdin). `need_label` requires a `label` column/field.
pub fn read_rows(path: &Path, need_label: bool) -> Result<Vec<Row>, InputError> {
    let name = path.display().to_string();
    if name == "-" {
        return read_lines("stdin", std::io::stdin().lock());
    }
    let err = |line, reason: String| InputError {
        source_name: name.clone(),
        line,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| err(0, e.to_string()))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => read_csv(&name, file, need_label),
        Some("jsonl") | Some("ndjson") => read_jsonl(&name, file, need_label),
        Some("txt") if !need_label => read_lines(&name, BufReader::new(file)),
        _ => Err(err(
            0,
            "unknown input format: use a .csv with a text column, a .jsonl with a text field, or - for stdin lines".into(),
        )),
    }
}

/// One text per line; every line counts, even an empty one (it is a text too).
fn read_lines(name: &str, mut reader: impl BufRead) -> Result<Vec<Row>, InputError> {
    let mut rows = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(|e| InputError {
            source_name: name.into(),
            line: line + 1,
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(rows);
        }
        line += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = String::from_utf8(buf.clone()).map_err(|e| InputError {
            source_name: name.into(),
            line,
            reason: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        })?;
        rows.push(Row {
            text,
            label: None,
            line,
        });
    }
}

fn read_csv(name: &str, reader: impl Read, need_label: bool) -> Result<Vec<Row>, InputError> {
    let err = |line, reason: String| InputError {
        source_name: name.into(),
        line,
        reason,
    };
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv.headers().map_err(|e| err(1, e.to_string()))?.clone();
    let column = |want: &str| headers.iter().position(|h| h.trim() == want);
    let text_col =
        column("text").ok_or_else(|| err(1, "no \"text\" column in the header".into()))?;
    let label_col = column("label");
    if need_label && label_col.is_none() {
        return Err(err(1, "no \"label\" column in the header".into()));
    }
    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            err(line, csv_reason(&e))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        rows.push(Row {
            text: record.get(text_col).unwrap_or_default().to_string(),
            label: label_col.and_then(|c| record.get(c)).map(String::from),
            line,
        });
    }
    Ok(rows)
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    }
}

fn read_jsonl(name: &str, reader: impl Read, need_label: bool) -> Result<Vec<Row>, InputError> {
    let lines = read_lines(name, BufReader::new(reader))?;
    let mut rows = Vec::new();
    for Row {
        text: raw, line, ..
    } in lines
    {
        if raw.trim().is_empty() {
            continue;
        }
        let err = |reason: String| InputError {
            source_name: name.into(),
            line,
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(&raw).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let text = v
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| err("no string field \"text\"".into()))?;
        let label = match v.get("label") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ if need_label => return Err(err("no field \"label\"".into())),
            _ => None,
        };
        rows.push(Row {
            text: text.to_string(),
            label,
            line,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_and_labels() {
        let data = "text,label\n\"a, b\",正面\nplain,0\n";
        let rows = read_csv("t.csv", data.as_bytes(), true).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].text, "a, b");
        assert_eq!(rows[0].label.as_deref(), Some("正面"));
    }

    #[test]
    fn csv_without_text_column_is_refused() {
        let e = read_csv("t.csv", "body\nx\n".as_bytes(), false).unwrap_err();
        assert!(e.to_string().contains("\"text\""), "{e}");
    }

    #[test]
    fn non_utf8_lines_name_the_line() {
        let e = read_lines("stdin", &b"ok\n\xff\xfe bad\n"[..]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("stdin:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn jsonl_names_bad_lines() {
        let e = read_jsonl("d.jsonl", "{\"text\":\"a\"}\n{oops\n".as_bytes(), false).unwrap_err();
        assert_eq!(e.line, 2);
    }
}
