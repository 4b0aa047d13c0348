//! Batches of JSON messages as Parquet files, for LocalStorage destinations.
//!
//! Each batch becomes one file with one row group. Its schema is inferred from the batch:
//! one optional column per top-level field (in each object's key order, new fields as first
//! seen), typed `BOOLEAN`, `INT64`,
//! `DOUBLE` (integers and floats mixed) or `BYTE_ARRAY` UTF8 strings; a field whose values
//! are objects, arrays or of mixed types is written as its JSON text. A message that is not
//! a JSON object becomes a row with one column, `value`. Missing fields are nulls. Pages are
//! Snappy-compressed.

use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Bool,
    Int,
    Double,
    Text,
    /// Objects, arrays or mixed types: the JSON text.
    Json,
}

impl Column {
    fn of(v: &Value) -> Option<Column> {
        match v {
            Value::Null => None,
            Value::Bool(_) => Some(Column::Bool),
            Value::Number(n) if n.is_i64() => Some(Column::Int),
            Value::Number(_) => Some(Column::Double),
            Value::String(_) => Some(Column::Text),
            Value::Array(_) | Value::Object(_) => Some(Column::Json),
        }
    }

    fn merge(self, other: Column) -> Column {
        match (self, other) {
            (a, b) if a == b => a,
            (Column::Int, Column::Double) | (Column::Double, Column::Int) => Column::Double,
            _ => Column::Json,
        }
    }
}

/// Encode `records` (each a JSON payload) as one Parquet file.
pub fn encode(records: &[Value]) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let rows: Vec<Map<String, Value>> = records
        .iter()
        .map(|r| match r {
            Value::Object(m) => m.clone(),
            other => Map::from_iter([("value".to_owned(), other.clone())]),
        })
        .collect();
    let mut columns: Vec<(String, Option<Column>)> = Vec::new();
    for row in &rows {
        for (key, value) in row {
            let kind = Column::of(value);
            match columns.iter_mut().find(|(k, _)| k == key) {
                Some((_, c)) => {
                    *c = match (*c, kind) {
                        (Some(a), Some(b)) => Some(a.merge(b)),
                        (a, b) => a.or(b),
                    }
                }
                None => columns.push((key.clone(), kind)),
            }
        }
    }
    let fields = columns
        .iter()
        .map(|(name, kind)| field(name, kind.unwrap_or(Column::Text)).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(
        Type::group_type_builder("message")
            .with_fields(fields)
            .build()?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, props)?;
    let mut group = writer.next_row_group()?;
    for (name, kind) in &columns {
        let Some(mut col) = group.next_column()? else {
            break;
        };
        let values = rows.iter().map(|r| r.get(name).filter(|v| !v.is_null()));
        let defs: Vec<i16> = values.clone().map(|v| i16::from(v.is_some())).collect();
        match kind.unwrap_or(Column::Text) {
            Column::Bool => {
                let data: Vec<bool> = values.flatten().filter_map(Value::as_bool).collect();
                col.typed::<BoolType>()
                    .write_batch(&data, Some(&defs), None)?;
            }
            Column::Int => {
                let data: Vec<i64> = values.flatten().filter_map(Value::as_i64).collect();
                col.typed::<Int64Type>()
                    .write_batch(&data, Some(&defs), None)?;
            }
            Column::Double => {
                let data: Vec<f64> = values.flatten().filter_map(Value::as_f64).collect();
                col.typed::<DoubleType>()
                    .write_batch(&data, Some(&defs), None)?;
            }
            Column::Text | Column::Json => {
                let data: Vec<ByteArray> = values
                    .flatten()
                    .map(|v| match v {
                        Value::String(s) => ByteArray::from(s.as_str()),
                        other => ByteArray::from(other.to_string().as_str()),
                    })
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&data, Some(&defs), None)?;
            }
        }
        col.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(out)
}

fn field(name: &str, kind: Column) -> Result<Type, parquet::errors::ParquetError> {
    let (physical, logical) = match kind {
        Column::Bool => (Physical::BOOLEAN, None),
        Column::Int => (Physical::INT64, None),
        Column::Double => (Physical::DOUBLE, None),
        Column::Text => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
        Column::Json => (Physical::BYTE_ARRAY, Some(LogicalType::Json)),
    };
    Type::primitive_type_builder(name, physical)
        .with_repetition(Repetition::OPTIONAL)
        .with_logical_type(logical)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;

    #[test]
    fn infers_columns_and_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let records = vec![
            json!({"device": "t1", "temperature": 21, "ok": true}),
            json!({"device": "t2", "temperature": 22.5, "tags": ["a"]}),
            json!("bare"),
        ];
        let bytes = encode(&records)?;
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))?;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 3);
        let schema = meta.file_metadata().schema_descr();
        let names: Vec<String> = schema
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        // Object keys come in key order (serde_json's map), then new keys as first seen.
        assert_eq!(names, ["device", "ok", "temperature", "tags", "value"]);
        assert_eq!(schema.column(1).physical_type(), Physical::BOOLEAN);
        assert_eq!(schema.column(2).physical_type(), Physical::DOUBLE);
        let rows: Vec<String> = reader
            .get_row_iter(None)?
            .map(|r| r.map(|r| r.to_string()))
            .collect::<Result<_, _>>()?;
        assert_eq!(
            rows[0],
            r#"{device: "t1", ok: true, temperature: 21.0, tags: null, value: null}"#
        );
        assert_eq!(
            rows[2],
            r#"{device: null, ok: null, temperature: null, tags: null, value: "bare"}"#
        );
        Ok(())
    }
}
