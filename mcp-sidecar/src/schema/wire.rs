//! Confluent's wire format: a magic byte 0, the schema id as 4 bytes big
//! endian, then the payload; a Protobuf payload starts with the path of
//! its message type in the schema's file (message indexes), as zigzag
//! varints: a count, then that many indexes, where the common `[0]` (the
//! file's first message) is written as the single count 0.

/// The magic byte that starts every framed key or value.
pub const MAGIC: u8 = 0;
/// Magic byte and schema id.
pub const HEADER_LEN: usize = 5;
/// Most message indexes read: a message nested deeper than this is not a
/// schema anyone writes, and a count past it is garbage.
pub const MAX_INDEXES: usize = 64;

/// The schema id and the rest of a framed payload; `None` when `bytes` are
/// not in the wire format (too short, or another first byte).
pub fn split(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// The header of a payload framed with schema `id`.
pub fn header(id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// Reads the message indexes at the start of a Protobuf payload, and the
/// message bytes after them.
pub fn split_message_indexes(payload: &[u8]) -> Result<(Vec<i32>, &[u8]), String> {
    let mut rest = payload;
    let count = read_zigzag(&mut rest).ok_or("the message indexes are cut off")?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 || count as usize > MAX_INDEXES {
        return Err(format!(
            "{count} message indexes (at most {MAX_INDEXES} are read)"
        ));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let index = read_zigzag(&mut rest).ok_or("the message indexes are cut off")?;
        let index = i32::try_from(index)
            .ok()
            .filter(|i| *i >= 0)
            .ok_or_else(|| format!("message index {index} is not a position in a file"))?;
        indexes.push(index);
    }
    Ok((indexes, rest))
}

/// The message indexes as a payload starts with them (`[0]` as one byte 0,
/// as Confluent's serializers write it).
pub fn message_indexes(indexes: &[i32]) -> Vec<u8> {
    let mut out = Vec::new();
    if indexes == [0] {
        write_zigzag(&mut out, 0);
        return out;
    }
    write_zigzag(&mut out, indexes.len() as i64);
    for &i in indexes {
        write_zigzag(&mut out, i64::from(i));
    }
    out
}

/// A zigzag varint (Avro's int and long, Confluent's message indexes);
/// `None` when cut off or longer than 10 bytes.
pub fn read_zigzag(bytes: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

pub fn write_zigzag(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_magic_zero_and_a_big_endian_id() {
        assert_eq!(split(&[0, 0, 0, 1, 2, 9, 9]), Some((258, &[9u8, 9][..])));
        assert_eq!(split(&[0, 0, 0, 0, 7]), Some((7, &[][..])));
        assert_eq!(split(&[0, 0, 0, 1]), None, "cut off");
        assert_eq!(split(b"{\"a\":1}"), None, "JSON text");
        assert_eq!(split(&[1, 0, 0, 0, 1, 5]), None, "another magic byte");
        let mut framed = header(0x01020304);
        framed.push(42);
        assert_eq!(framed, [0, 1, 2, 3, 4, 42]);
        assert_eq!(split(&framed), Some((0x01020304, &[42u8][..])));
    }

    #[test]
    fn zigzag_varints_round_trip_at_the_edges() {
        for v in [
            0,
            -1,
            1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_zigzag(&mut out, v);
            let mut read = &out[..];
            assert_eq!(read_zigzag(&mut read), Some(v), "{v}");
            assert!(read.is_empty());
        }
        // Avro's spec examples: 1 -> 02, -1 -> 01, 64 -> 80 01.
        let mut out = Vec::new();
        write_zigzag(&mut out, 64);
        assert_eq!(out, [0x80, 0x01]);
        assert_eq!(read_zigzag(&mut &[0x80u8][..]), None, "cut off");
        assert_eq!(read_zigzag(&mut &[0xffu8; 11][..]), None, "too long");
    }

    #[test]
    fn message_indexes_read_as_confluent_writes_them() {
        // [0] is the single byte 0.
        assert_eq!(message_indexes(&[0]), [0]);
        assert_eq!(
            split_message_indexes(&[0, 8, 1]),
            Ok((vec![0], &[8u8, 1][..]))
        );
        // [1, 0]: count 2, then 1 and 0, zigzagged.
        let framed = message_indexes(&[1, 0]);
        assert_eq!(framed, [4, 2, 0]);
        assert_eq!(
            split_message_indexes(&[4, 2, 0, 8]),
            Ok((vec![1, 0], &[8u8][..]))
        );
        assert!(split_message_indexes(&[]).is_err());
        assert!(split_message_indexes(&[4, 2]).is_err(), "cut off");
        assert!(split_message_indexes(&[1]).is_err(), "negative count");
        assert!(split_message_indexes(&[2, 1]).is_err(), "negative index");
        assert!(split_message_indexes(&[0xfe, 0x01]).is_err(), "127 indexes");
    }
}
