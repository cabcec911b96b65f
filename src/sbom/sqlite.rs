//! A minimal, read-only reader of SQLite database files: the rows of one table, walked through
//! its b-tree, enough to read rpm's `rpmdb.sqlite` (`Packages(hnum, blob)`) without a SQLite
//! library.
//!
//! Invariant: pure parsing of a byte slice; every offset is checked, a malformed file is an
//! error naming what is wrong, never a panic or an endless walk (pages are visited once).

use std::collections::BTreeSet;

/// Why a database cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a readable SQLite database: {0}")]
pub(crate) struct SqliteError(pub String);

fn err<T>(what: impl Into<String>) -> Result<T, SqliteError> {
    Err(SqliteError(what.into()))
}

/// One column value of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
    /// A float, kept as its bits (nothing here reads floats).
    Real(u64),
}

struct Db<'a> {
    bytes: &'a [u8],
    page_size: usize,
    usable: usize,
}

/// The rows of table `name`, each its column values in order (a rowid alias column is `Null`).
pub(crate) fn table_rows(bytes: &[u8], name: &str) -> Result<Vec<Vec<Value>>, SqliteError> {
    if bytes.len() < 100 || &bytes[..16] != b"SQLite format 3\0" {
        return err("the header is not `SQLite format 3`");
    }
    let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => usize::from(n),
    };
    if page_size < 512 || !page_size.is_power_of_two() {
        return err(format!("page size {page_size}"));
    }
    let usable = page_size - usize::from(bytes[20]);
    let db = Db { bytes, page_size, usable };
    let mut root = None;
    for row in db.rows(1)? {
        // sqlite_schema: type, name, tbl_name, rootpage, sql.
        if let [Value::Text(kind), Value::Text(n), _, Value::Int(page), ..] = row.as_slice()
            && kind == b"table"
            && n == name.as_bytes()
        {
            root = Some(*page);
        }
    }
    let Some(root) = root.and_then(|p| usize::try_from(p).ok()) else {
        return err(format!("no table `{name}`"));
    };
    db.rows(root)
}

impl Db<'_> {
    fn page(&self, n: usize) -> Result<&[u8], SqliteError> {
        let start = n.checked_sub(1).map(|i| i * self.page_size);
        match start.and_then(|s| self.bytes.get(s..s + self.page_size)) {
            Some(p) => Ok(p),
            None => err(format!("page {n} is outside the file")),
        }
    }

    /// Every row of the table b-tree rooted at page `root`, in rowid order.
    fn rows(&self, root: usize) -> Result<Vec<Vec<Value>>, SqliteError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![root];
        while let Some(n) = todo.pop() {
            if !seen.insert(n) {
                return err(format!("page {n} is reached twice"));
            }
            let page = self.page(n)?;
            let at = if n == 1 { 100 } else { 0 };
            let kind = *page.get(at).unwrap_or(&0);
            let cells = usize::from(be16(page, at + 3)?);
            let header = if kind == 0x05 { 12 } else { 8 };
            let pointer = |i: usize| be16(page, at + header + 2 * i).map(usize::from);
            match kind {
                0x0d => {
                    for i in 0..cells {
                        out.push(self.leaf_cell(page, pointer(i)?)?);
                    }
                }
                0x05 => {
                    // Children right to left on the stack, so rows come out in order.
                    todo.push(be32(page, at + 8)? as usize);
                    for i in (0..cells).rev() {
                        todo.push(be32(page, pointer(i)?)? as usize);
                    }
                }
                other => return err(format!("page {n} has b-tree type {other:#x}")),
            }
        }
        Ok(out)
    }

    /// A table leaf cell: payload size, rowid, payload (spilling into overflow pages).
    fn leaf_cell(&self, page: &[u8], at: usize) -> Result<Vec<Value>, SqliteError> {
        let (size, n1) = varint(page, at)?;
        let (_rowid, n2) = varint(page, at + n1)?;
        let start = at + n1 + n2;
        let size = usize::try_from(size).or(err("payload size"))?;
        let u = self.usable;
        let max_local = u - 35;
        let local = if size <= max_local {
            size
        } else {
            let min_local = (u - 12) * 32 / 255 - 23;
            let k = min_local + (size - min_local) % (u - 4);
            if k <= max_local { k } else { min_local }
        };
        let Some(inline) = page.get(start..start + local) else { return err("cell overflows") };
        let mut payload = inline.to_vec();
        if local < size {
            let mut next = be32(page, start + local)? as usize;
            let mut seen = BTreeSet::new();
            while payload.len() < size {
                if next == 0 || !seen.insert(next) {
                    return err("overflow chain ends early or loops");
                }
                let p = self.page(next)?;
                next = be32(p, 0)? as usize;
                let take = (size - payload.len()).min(u - 4);
                payload.extend_from_slice(&p[4..4 + take]);
            }
        }
        record(&payload)
    }
}

/// Decodes a record: a header of serial types, then the values.
fn record(p: &[u8]) -> Result<Vec<Value>, SqliteError> {
    let (header_len, mut h) = varint(p, 0)?;
    let header_len = usize::try_from(header_len).or(err("record header"))?;
    let mut body = header_len;
    let mut out = Vec::new();
    while h < header_len {
        let (t, n) = varint(p, h)?;
        h += n;
        let (value, len) = value(p, body, t)?;
        out.push(value);
        body += len;
    }
    Ok(out)
}

fn value(p: &[u8], at: usize, serial: u64) -> Result<(Value, usize), SqliteError> {
    let int = |n: usize| -> Result<(Value, usize), SqliteError> {
        let Some(b) = p.get(at..at + n) else { return err("integer outside the record") };
        let mut v: i64 = if b.first().is_some_and(|x| x & 0x80 != 0) { -1 } else { 0 };
        for x in b {
            v = (v << 8) | i64::from(*x);
        }
        Ok((Value::Int(v), n))
    };
    let bytes = |n: usize| {
        p.get(at..at + n).map(<[u8]>::to_vec).ok_or(SqliteError("value outside the record".into()))
    };
    match serial {
        0 => Ok((Value::Null, 0)),
        1..=4 => int(serial as usize),
        5 => int(6),
        6 => int(8),
        7 => match int(8)? {
            (Value::Int(v), n) => Ok((Value::Real(v as u64), n)),
            other => Ok(other),
        },
        8 => Ok((Value::Int(0), 0)),
        9 => Ok((Value::Int(1), 0)),
        n if n >= 12 && n % 2 == 0 => {
            let len = ((n - 12) / 2) as usize;
            Ok((Value::Blob(bytes(len)?), len))
        }
        n if n >= 13 => {
            let len = ((n - 13) / 2) as usize;
            Ok((Value::Text(bytes(len)?), len))
        }
        n => err(format!("serial type {n}")),
    }
}

/// A SQLite varint (1 to 9 bytes, big-endian, 7 bits a byte, 8 in the ninth) and its length.
fn varint(p: &[u8], at: usize) -> Result<(u64, usize), SqliteError> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let Some(&b) = p.get(at + i) else { return err("varint outside the page") };
        if i == 8 {
            return Ok(((v << 8) | u64::from(b), 9));
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    err("varint")
}

fn be16(p: &[u8], at: usize) -> Result<u16, SqliteError> {
    match p.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => err("offset outside the page"),
    }
}

fn be32(p: &[u8], at: usize) -> Result<u32, SqliteError> {
    match p.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => err("offset outside the page"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_records_decode() {
        assert_eq!(varint(&[0x81, 0x00], 0), Ok((128, 2)));
        assert_eq!(varint(&[0x05], 0), Ok((5, 1)));
        // A header of 4 bytes (its own length, NULL, int8, text of 2 bytes), then 7 and "hi".
        let rec = [4, 0, 1, 17, 7, b'h', b'i'];
        assert_eq!(record(&rec), Ok(vec![Value::Null, Value::Int(7), Value::Text(b"hi".to_vec())]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(table_rows(b"not a database", "Packages").is_err());
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.resize(4096, 0xff);
        bytes[16] = 0x10;
        bytes[17] = 0;
        bytes[20] = 0;
        assert!(table_rows(&bytes, "Packages").is_err());
    }
}
