//! Avro payloads to JSON and back, guided by the writer's schema
//! (apache-avro parses it, named types and references included; the binary
//! coding is here, so that the JSON mapping is exact and a misfit names
//! its field).
//!
//! The JSON mapping is the plain one Confluent's deserializers hand a
//! program (unions unwrapped, records as objects), made exact where JSON
//! cannot hold the value: `long` is a JSON integer (64 bits, as the
//! sidecar shows JSON payloads), `decimal` is a string of its exact digits
//! (`"12.30"`), `bytes` and `fixed` are base64, NaN and the infinities of
//! `float`/`double` are the strings `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! `date`, `time-*` and `timestamp-*` are their encoded numbers, `uuid` its
//! string, `duration` `{months, days, milliseconds}`.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{DecimalSchema, InnerDecimalSchema, UuidSchema};
use base64::Engine;
use serde_json::{Map, Number, Value};

use super::wire::{read_zigzag, write_zigzag};

/// Deepest nesting of values decoded or encoded (recursive schemas).
const MAX_DEPTH: usize = 128;

/// A parsed Avro schema and the named types it may refer to.
pub struct AvroCodec {
    root: Schema,
    names: HashMap<String, Schema>,
}

impl AvroCodec {
    /// Parses `text` with the schemas it references (their text, each a
    /// named type: Confluent's references).
    pub fn parse(text: &str, references: &[String]) -> Result<Self, String> {
        let (root, others) = if references.is_empty() {
            (
                Schema::parse_str(text).map_err(|e| e.to_string())?,
                Vec::new(),
            )
        } else {
            Schema::parse_str_with_list(text, references).map_err(|e| e.to_string())?
        };
        let mut names = HashMap::new();
        for schema in std::iter::once(&root).chain(others.iter()) {
            collect_names(schema, &mut names);
        }
        Ok(Self { root, names })
    }

    /// Decodes one datum; every byte must belong to it.
    pub fn decode(&self, bytes: &[u8]) -> Result<Value, String> {
        let mut reader = Reader {
            bytes,
            // Values that take no bytes (nulls in an array) still cost:
            // a few bytes cannot stand for millions of them.
            budget: 1024 + bytes.len().saturating_mul(8),
        };
        let value = self.read(&self.root, &mut reader, 0)?;
        if !reader.bytes.is_empty() {
            return Err(format!(
                "{} bytes left over after the datum: not written with this schema",
                reader.bytes.len()
            ));
        }
        Ok(value)
    }

    /// Encodes a JSON value; a misfit names its place (`$.customer.id`).
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.write(&self.root, value, &mut out, "$", 0)?;
        Ok(out)
    }

    fn resolve<'a>(&'a self, schema: &'a Schema) -> Result<&'a Schema, String> {
        match schema {
            Schema::Ref { name } => {
                let full = name.fullname(None);
                self.names
                    .get(&full)
                    .ok_or_else(|| format!("the schema names type {full} but does not define it"))
            }
            other => Ok(other),
        }
    }

    fn read(&self, schema: &Schema, r: &mut Reader, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("values nested deeper than {MAX_DEPTH}"));
        }
        r.spend()?;
        let schema = self.resolve(schema)?;
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => match r.take(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("boolean byte {b}")),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => Value::from(r.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Value::from(r.long()?),
            Schema::Float => {
                let b = r.take(4)?;
                float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            Schema::Double => {
                let b: [u8; 8] = r.take(8)?.try_into().map_err(|_| "double")?;
                float(f64::from_le_bytes(b))
            }
            Schema::Bytes | Schema::BigDecimal => base64(r.bytes()?),
            Schema::String => Value::String(
                String::from_utf8(r.bytes()?.to_vec()).map_err(|_| "a string is not UTF-8")?,
            ),
            Schema::Fixed(fixed) => base64(r.take(fixed.size)?),
            Schema::Uuid(UuidSchema::String) => Value::String(
                String::from_utf8(r.bytes()?.to_vec()).map_err(|_| "a uuid is not UTF-8")?,
            ),
            Schema::Uuid(UuidSchema::Bytes) => uuid_text(r.bytes()?)?,
            Schema::Uuid(UuidSchema::Fixed(fixed)) => uuid_text(r.take(fixed.size)?)?,
            Schema::Decimal(decimal) => {
                let unscaled = match &decimal.inner {
                    InnerDecimalSchema::Bytes => r.bytes()?,
                    InnerDecimalSchema::Fixed(fixed) => r.take(fixed.size)?,
                };
                Value::String(decimal_text(unscaled, decimal.scale))
            }
            Schema::Duration(_) => {
                let b = r.take(12)?;
                let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                serde_json::json!({ "months": part(0), "days": part(4), "milliseconds": part(8) })
            }
            Schema::Enum(e) => {
                let i = r.long()?;
                let symbol = usize::try_from(i)
                    .ok()
                    .and_then(|i| e.symbols.get(i))
                    .ok_or_else(|| format!("enum index {i} of {} symbols", e.symbols.len()))?;
                Value::String(symbol.clone())
            }
            Schema::Union(union) => {
                let i = r.long()?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| format!("union branch {i} of {}", union.variants().len()))?;
                self.read(branch, r, depth + 1)?
            }
            Schema::Array(array) => {
                let mut items = Vec::new();
                r.blocks(|r| {
                    items.push(self.read(&array.items, r, depth + 1)?);
                    Ok(())
                })?;
                Value::Array(items)
            }
            Schema::Map(map) => {
                let mut entries = Map::new();
                r.blocks(|r| {
                    let key = String::from_utf8(r.bytes()?.to_vec())
                        .map_err(|_| "a map key is not UTF-8")?;
                    entries.insert(key, self.read(&map.types, r, depth + 1)?);
                    Ok(())
                })?;
                Value::Object(entries)
            }
            Schema::Record(record) => {
                let mut fields = Map::new();
                for field in &record.fields {
                    let value = self
                        .read(&field.schema, r, depth + 1)
                        .map_err(|e| format!("{}: {e}", field.name))?;
                    fields.insert(field.name.clone(), value);
                }
                Value::Object(fields)
            }
            Schema::Ref { .. } => unreachable!("resolved above"),
        })
    }

    fn write(
        &self,
        schema: &Schema,
        value: &Value,
        out: &mut Vec<u8>,
        at: &str,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{at}: nested deeper than {MAX_DEPTH}"));
        }
        let schema = self.resolve(schema)?;
        let misfit = |want: &str| Err(format!("{at}: expected {want}, got {}", kind(value)));
        match schema {
            Schema::Null => match value {
                Value::Null => {}
                _ => return misfit("null"),
            },
            Schema::Boolean => match value {
                Value::Bool(b) => out.push(u8::from(*b)),
                _ => return misfit("a boolean"),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                match value.as_i64().and_then(|v| i32::try_from(v).ok()) {
                    Some(v) => write_zigzag(out, i64::from(v)),
                    None => return misfit("a 32-bit integer"),
                }
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => match value.as_i64() {
                Some(v) => write_zigzag(out, v),
                None => return misfit("a 64-bit integer"),
            },
            Schema::Float => match number(value) {
                Some(v) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                None => return misfit("a number"),
            },
            Schema::Double => match number(value) {
                Some(v) => out.extend_from_slice(&v.to_le_bytes()),
                None => return misfit("a number"),
            },
            Schema::Bytes | Schema::BigDecimal => match unbase64(value) {
                Some(b) => write_bytes(out, &b),
                None => return misfit("base64 bytes"),
            },
            Schema::String | Schema::Uuid(UuidSchema::String) => match value {
                Value::String(s) => write_bytes(out, s.as_bytes()),
                _ => return misfit("a string"),
            },
            Schema::Fixed(fixed) => match unbase64(value) {
                Some(b) if b.len() == fixed.size => out.extend_from_slice(&b),
                _ => return misfit(&format!("base64 of exactly {} bytes", fixed.size)),
            },
            Schema::Uuid(UuidSchema::Bytes) => match value.as_str().and_then(uuid_bytes) {
                Some(b) => write_bytes(out, &b),
                None => return misfit("a UUID string"),
            },
            Schema::Uuid(UuidSchema::Fixed(_)) => match value.as_str().and_then(uuid_bytes) {
                Some(b) => out.extend_from_slice(&b),
                None => return misfit("a UUID string"),
            },
            Schema::Decimal(decimal) => {
                let unscaled = unscaled_bytes(value, decimal).map_err(|e| format!("{at}: {e}"))?;
                match &decimal.inner {
                    InnerDecimalSchema::Bytes => write_bytes(out, &unscaled),
                    InnerDecimalSchema::Fixed(fixed) => {
                        if unscaled.len() > fixed.size {
                            return Err(format!(
                                "{at}: the decimal does not fit in {} bytes",
                                fixed.size
                            ));
                        }
                        let fill = if unscaled[0] & 0x80 != 0 { 0xff } else { 0 };
                        out.extend(std::iter::repeat_n(fill, fixed.size - unscaled.len()));
                        out.extend_from_slice(&unscaled);
                    }
                }
            }
            Schema::Duration(_) => {
                let part = |name: &str| {
                    value
                        .get(name)
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                };
                match (part("months"), part("days"), part("milliseconds")) {
                    (Some(m), Some(d), Some(ms)) => {
                        for p in [m, d, ms] {
                            out.extend_from_slice(&p.to_le_bytes());
                        }
                    }
                    _ => return misfit("{months, days, milliseconds}"),
                }
            }
            Schema::Enum(e) => match value
                .as_str()
                .and_then(|s| e.symbols.iter().position(|x| x == s))
            {
                Some(i) => write_zigzag(out, i as i64),
                None => {
                    return Err(format!(
                        "{at}: expected one of {}, got {}",
                        e.symbols.join(", "),
                        kind(value)
                    ));
                }
            },
            Schema::Union(union) => {
                // The first branch the value fits, as Confluent's
                // serializers pick one; else Avro's JSON encoding of a
                // union, `{"<type name>": value}`.
                let branches = union.variants();
                for (i, branch) in branches.iter().enumerate() {
                    let mut attempt = Vec::new();
                    write_zigzag(&mut attempt, i as i64);
                    if self
                        .write(branch, value, &mut attempt, at, depth + 1)
                        .is_ok()
                    {
                        out.extend_from_slice(&attempt);
                        return Ok(());
                    }
                }
                if let Value::Object(map) = value
                    && map.len() == 1
                    && let Some((name, inner)) = map.iter().next()
                    && let Some(i) = branches.iter().position(|b| self.type_name(b) == *name)
                {
                    write_zigzag(out, i as i64);
                    return self.write(
                        &branches[i],
                        inner,
                        out,
                        &format!("{at}.{name}"),
                        depth + 1,
                    );
                }
                let names: Vec<String> = branches.iter().map(|b| self.type_name(b)).collect();
                return Err(format!(
                    "{at}: fits none of the union's types ({}), got {}",
                    names.join(", "),
                    kind(value)
                ));
            }
            Schema::Array(array) => match value {
                Value::Array(items) => {
                    if !items.is_empty() {
                        write_zigzag(out, items.len() as i64);
                        for (i, item) in items.iter().enumerate() {
                            self.write(&array.items, item, out, &format!("{at}[{i}]"), depth + 1)?;
                        }
                    }
                    write_zigzag(out, 0);
                }
                _ => return misfit("an array"),
            },
            Schema::Map(map) => match value {
                Value::Object(entries) => {
                    if !entries.is_empty() {
                        write_zigzag(out, entries.len() as i64);
                        for (k, v) in entries {
                            write_bytes(out, k.as_bytes());
                            self.write(&map.types, v, out, &format!("{at}.{k}"), depth + 1)?;
                        }
                    }
                    write_zigzag(out, 0);
                }
                _ => return misfit("an object (map)"),
            },
            Schema::Record(record) => {
                let Value::Object(given) = value else {
                    return misfit(&format!(
                        "an object (record {})",
                        record.name.fullname(None)
                    ));
                };
                if let Some(unknown) = given
                    .keys()
                    .find(|k| !record.fields.iter().any(|f| &f.name == *k))
                {
                    return Err(format!(
                        "{at}.{unknown}: record {} has no such field",
                        record.name.fullname(None)
                    ));
                }
                for field in &record.fields {
                    let place = format!("{at}.{}", field.name);
                    match (given.get(&field.name), &field.default) {
                        (Some(v), _) => self.write(&field.schema, v, out, &place, depth + 1)?,
                        (None, Some(default)) => {
                            self.write(&field.schema, default, out, &place, depth + 1)?
                        }
                        (None, None) => {
                            return Err(format!("{place}: required (the field has no default)"));
                        }
                    }
                }
            }
            Schema::Ref { .. } => unreachable!("resolved above"),
        }
        Ok(())
    }

    /// A branch's name in Avro's JSON encoding of unions.
    fn type_name(&self, schema: &Schema) -> String {
        match schema {
            Schema::Record(r) => r.name.fullname(None),
            Schema::Enum(e) => e.name.fullname(None),
            Schema::Fixed(f) => f.name.fullname(None),
            Schema::Ref { name } => name.fullname(None),
            Schema::Null => "null".into(),
            Schema::Boolean => "boolean".into(),
            Schema::Int => "int".into(),
            Schema::Long => "long".into(),
            Schema::Float => "float".into(),
            Schema::Double => "double".into(),
            Schema::Bytes => "bytes".into(),
            Schema::String => "string".into(),
            Schema::Array(_) => "array".into(),
            Schema::Map(_) => "map".into(),
            other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
        }
    }
}

/// Every named type in `schema`, by full name.
fn collect_names(schema: &Schema, names: &mut HashMap<String, Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.fullname(None), schema.clone());
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        })
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Duration(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, names);
            }
        }
        _ => {}
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    budget: usize,
}

impl<'a> Reader<'a> {
    fn spend(&mut self) -> Result<(), String> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or("more values than a payload of this size can hold")?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err(format!(
                "cut off: {n} bytes wanted, {} left",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn long(&mut self) -> Result<i64, String> {
        read_zigzag(&mut self.bytes).ok_or_else(|| "a cut-off or overlong varint".to_string())
    }

    fn int(&mut self) -> Result<i32, String> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| format!("int {v} beyond 32 bits"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.long()?;
        let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
        self.take(n)
    }

    /// Array and map blocks: a count (negative: followed by the block's
    /// byte size), items, until a count of 0.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let mut count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or("block count overflow")?;
                self.long()?;
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_zigzag(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn base64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

fn unbase64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

/// A float as JSON: a number, or the name of a value JSON has no number for.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 40 => format!("the string {s:?}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn uuid_text(b: &[u8]) -> Result<Value, String> {
    let b: [u8; 16] = b.try_into().map_err(|_| "a uuid is not 16 bytes")?;
    Ok(Value::String(uuid::Uuid::from_bytes(b).to_string()))
}

fn uuid_bytes(s: &str) -> Option<Vec<u8>> {
    uuid::Uuid::parse_str(s).ok().map(|u| u.as_bytes().to_vec())
}

/// The exact decimal text of a big-endian two's-complement unscaled
/// integer at `scale`: `[0x04, 0xd2]` at scale 2 is `"12.34"`.
pub fn decimal_text(unscaled: &[u8], scale: usize) -> String {
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude, big endian.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = unscaled.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
        m
    } else {
        unscaled.to_vec()
    };
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in magnitude.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    while digits.len() <= scale {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = String::from_utf8(digits).unwrap_or_default();
    if scale > 0 {
        text.insert(text.len() - scale, '.');
    }
    if negative {
        text.insert(0, '-');
    }
    text
}

/// A decimal given as a string (or a JSON number's exact text) as the
/// minimal big-endian two's-complement unscaled integer at the schema's
/// scale; more fractional digits than the scale, or more digits than the
/// precision, are refused rather than rounded.
fn unscaled_bytes(value: &Value, decimal: &DecimalSchema) -> Result<Vec<u8>, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("expected a decimal string, got {}", kind(other))),
    };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits_ok(int) || !digits_ok(frac) {
        return Err(format!(
            "{text:?} is not a decimal number such as \"12.34\""
        ));
    }
    if frac.len() > decimal.scale {
        return Err(format!(
            "{text:?} has {} digits after the point; the schema's scale is {}",
            frac.len(),
            decimal.scale
        ));
    }
    let mut all: String = format!("{int}{frac}");
    all.extend(std::iter::repeat_n('0', decimal.scale - frac.len()));
    let significant = all.trim_start_matches('0');
    if significant.len() > decimal.precision {
        return Err(format!(
            "{text:?} has {} significant digits; the schema's precision is {}",
            significant.len(),
            decimal.precision
        ));
    }
    // Decimal digits to a big-endian magnitude.
    let mut magnitude: Vec<u8> = vec![0];
    for d in significant.bytes() {
        let mut carry = u32::from(d - b'0');
        for b in magnitude.iter_mut().rev() {
            let cur = u32::from(*b) * 10 + carry;
            *b = cur as u8;
            carry = cur >> 8;
        }
        while carry > 0 {
            magnitude.insert(0, carry as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit, then two's complement if negative.
    if magnitude[0] & 0x80 != 0 {
        magnitude.insert(0, 0);
    }
    if negative && significant.chars().any(|c| c != '0') {
        for b in magnitude.iter_mut() {
            *b = !*b;
        }
        for b in magnitude.iter_mut().rev() {
            let (v, carry) = b.overflowing_add(1);
            *b = v;
            if !carry {
                break;
            }
        }
    }
    // Minimal: drop leading bytes that only repeat the sign.
    while magnitude.len() > 1
        && ((magnitude[0] == 0 && magnitude[1] & 0x80 == 0)
            || (magnitude[0] == 0xff && magnitude[1] & 0x80 != 0))
    {
        magnitude.remove(0);
    }
    Ok(magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = r#"{
      "type": "record", "name": "Order", "namespace": "shop",
      "fields": [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "double"}},
        {"name": "raw", "type": "bytes"},
        {"name": "next", "type": ["null", "Order"], "default": null}
      ]}"#;

    fn order() -> AvroCodec {
        AvroCodec::parse(ORDER, &[]).unwrap()
    }

    #[test]
    fn a_record_round_trips_exactly() {
        let value = json!({
            "id": 9007199254740993i64, "qty": -3, "note": "fragile", "price": "-12.30",
            "status": "PAID", "tags": ["a", "b"], "attrs": {"w": 0.1}, "raw": "AP8=",
            "next": {"id": 1, "qty": 1, "note": null, "price": "0.00", "status": "NEW",
                     "tags": [], "attrs": {}, "raw": "", "next": null}
        });
        let codec = order();
        let bytes = codec.encode(&value).unwrap();
        assert_eq!(codec.decode(&bytes).unwrap(), value);
    }

    #[test]
    fn the_binary_is_avros() {
        // {"id": 1, "qty": 2, note: null, price "1.00", NEW, [], {}, "", null}
        let codec = order();
        let bytes = codec
            .encode(&json!({"id": 1, "qty": 2, "price": "1.00", "status": "NEW",
                            "tags": [], "attrs": {}, "raw": ""}))
            .unwrap();
        // long 1 = 02, int 2 = 04, union branch 0 = 00, bytes len 1 = 02 then 0x64 (100),
        // enum 0 = 00, empty array 00, empty map 00, empty bytes 00, union branch 0 = 00.
        assert_eq!(
            bytes,
            [0x02, 0x04, 0x00, 0x02, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00]
        );
    }

    #[test]
    fn misfits_name_their_field() {
        let codec = order();
        let base = json!({"id": 1, "qty": 2, "price": "1.00", "status": "NEW",
                          "tags": [], "attrs": {}, "raw": ""});
        let with = |k: &str, v: Value| {
            let mut m = base.clone();
            m[k] = v;
            codec.encode(&m).unwrap_err()
        };
        let e = with("qty", json!(3_000_000_000i64));
        assert!(e.starts_with("$.qty: expected a 32-bit integer"), "{e}");
        let e = with("status", json!("LOST"));
        assert!(e.starts_with("$.status: expected one of NEW, PAID"), "{e}");
        let e = with("price", json!("1.005"));
        assert!(e.starts_with("$.price:") && e.contains("scale is 2"), "{e}");
        let e = with("tags", json!(["a", 2]));
        assert!(e.starts_with("$.tags[1]: expected a string"), "{e}");
        let e = with("colour", json!("red"));
        assert!(
            e.starts_with("$.colour: record shop.Order has no such field"),
            "{e}"
        );
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("id");
        let e = codec.encode(&missing).unwrap_err();
        assert!(e.starts_with("$.id: required"), "{e}");
    }

    #[test]
    fn decimals_are_exact_text_both_ways() {
        for (bytes, scale, text) in [
            (&[0x04u8, 0xd2][..], 2, "12.34"),
            (&[0xfb, 0x2e], 2, "-12.34"),
            (&[0x00], 3, "0.000"),
            (&[0xff], 0, "-1"),
            (
                &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                4,
                // 2^71 - 1: past 64 bits, still exact.
                "236118324143482260.6847",
            ),
        ] {
            assert_eq!(decimal_text(bytes, scale), text);
            let schema = DecimalSchema {
                precision: 38,
                scale,
                inner: InnerDecimalSchema::Bytes,
            };
            assert_eq!(
                unscaled_bytes(&json!(text), &schema).unwrap(),
                bytes,
                "{text}"
            );
        }
        let schema = DecimalSchema {
            precision: 3,
            scale: 1,
            inner: InnerDecimalSchema::Bytes,
        };
        assert!(
            unscaled_bytes(&json!("123.4"), &schema)
                .unwrap_err()
                .contains("precision")
        );
        assert!(unscaled_bytes(&json!("1e3"), &schema).is_err());
    }

    #[test]
    fn named_types_from_references_resolve() {
        let address = r#"{"type":"record","name":"Address","namespace":"shop","fields":[{"name":"city","type":"string"}]}"#;
        let customer = r#"{"type":"record","name":"Customer","namespace":"shop","fields":[
            {"name":"home","type":"shop.Address"},{"name":"work","type":["null","Address"]}]}"#;
        let codec = AvroCodec::parse(customer, &[address.to_string()]).unwrap();
        let value = json!({"home": {"city": "Oslo"}, "work": {"city": "Bergen"}});
        assert_eq!(codec.decode(&codec.encode(&value).unwrap()).unwrap(), value);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_or_a_hang() {
        let codec = order();
        for bytes in [&[][..], &[0x02], &[0xff; 12], &[0x02, 0x04, 0x00, 0x7f]] {
            assert!(codec.decode(bytes).is_err(), "{bytes:?}");
        }
        // A billion nulls in three bytes.
        let nulls = AvroCodec::parse(r#"{"type":"array","items":"null"}"#, &[]).unwrap();
        let mut bytes = Vec::new();
        write_zigzag(&mut bytes, 1_000_000_000);
        write_zigzag(&mut bytes, 0);
        assert!(nulls.decode(&bytes).unwrap_err().contains("more values"));
        // Left-over bytes mean another schema wrote it.
        let long = AvroCodec::parse(r#""long""#, &[]).unwrap();
        assert!(
            long.decode(&[0x02, 0x02])
                .unwrap_err()
                .contains("left over")
        );
        assert_eq!(long.decode(&[0x02]).unwrap(), json!(1));
    }

    #[test]
    fn floats_json_cannot_hold_are_named() {
        let d = AvroCodec::parse(r#""double""#, &[]).unwrap();
        for v in [
            json!("NaN"),
            json!("Infinity"),
            json!("-Infinity"),
            json!(0.1),
        ] {
            assert_eq!(d.decode(&d.encode(&v).unwrap()).unwrap(), v);
        }
    }
}
