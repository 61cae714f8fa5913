//! The protobuf wire format: a reader of (field number, value) pairs over a byte slice.
//!
//! The reader never panics and never reads past its slice: every length is checked before it
//! is used, and malformed input is a [`Problem`].

use super::error::Problem;

/// Groups (a proto2 feature unused by Kubernetes) nest at most this deep when skipped.
const MAX_GROUP_DEPTH: usize = 32;

/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    /// A group, skipped: no Kubernetes message uses groups.
    Group,
}

impl WireValue<'_> {
    /// Returns the wire type's name for error messages.
    pub(crate) fn wire_type(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "fixed64",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "fixed32",
            WireValue::Group => "group",
        }
    }
}

/// Reads the fields of one message.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, position: 0 }
    }

    /// Returns the next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, Problem> {
        if self.position == self.data.len() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let value = match wire_type {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let length = self.varint()?;
                WireValue::Bytes(self.take(length)?)
            }
            3 => {
                self.skip_group(number, 1)?;
                WireValue::Group
            }
            4 => return Err(Problem::UnexpectedEndGroup { field: number }),
            5 => WireValue::Fixed32(u32::from_le_bytes(self.array()?)),
            other => return Err(Problem::InvalidWireType { field: number, wire_type: other }),
        };
        Ok(Some((number, value)))
    }

    /// Reads a field key: (field number, wire type).
    fn key(&mut self) -> Result<(u32, u8), Problem> {
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(Problem::InvalidFieldNumber(number));
        }
        // Both casts are lossless: the number is at most 2^29 - 1 and the wire type 3 bits.
        Ok((number as u32, (key & 7) as u8))
    }

    /// Reads a base-128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> Result<u64, Problem> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = *self.data.get(self.position).ok_or(Problem::Truncated)?;
            self.position += 1;
            if index == 9 && byte > 1 {
                return Err(Problem::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::VarintOverflow)
    }

    /// Reads 8 little-endian bytes.
    pub(crate) fn fixed64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Returns whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.position == self.data.len()
    }

    fn take(&mut self, length: u64) -> Result<&'a [u8], Problem> {
        let remaining = self.data.len() - self.position;
        let length = usize::try_from(length).ok().filter(|length| *length <= remaining);
        let length = length.ok_or(Problem::Truncated)?;
        let bytes = &self.data[self.position..self.position + length];
        self.position += length;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let bytes = self.take(N as u64)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// Skips a group's fields up to and including its end-group key.
    fn skip_group(&mut self, number: u32, depth: usize) -> Result<(), Problem> {
        if depth > MAX_GROUP_DEPTH {
            return Err(Problem::TooDeep);
        }
        loop {
            if self.is_empty() {
                return Err(Problem::Truncated);
            }
            let (inner, wire_type) = self.key()?;
            match wire_type {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let length = self.varint()?;
                    self.take(length)?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Ok(()),
                4 => return Err(Problem::UnexpectedEndGroup { field: inner }),
                5 => {
                    self.take(4)?;
                }
                other => return Err(Problem::InvalidWireType { field: inner, wire_type: other }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(data: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, Problem> {
        let mut reader = Reader::new(data);
        let mut fields = Vec::new();
        while let Some(field) = reader.next_field()? {
            fields.push(field);
        }
        Ok(fields)
    }

    #[test]
    fn reads_every_wire_type() {
        let data = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 2, b'h', b'i', // 3: bytes "hi"
            0x23, 0x08, 0x01, 0x24, // 4: group holding 1: varint 1
            0x2d, 2, 0, 0, 0, // 5: fixed32 2
        ];
        let expected = vec![
            (1, WireValue::Varint(150)),
            (2, WireValue::Fixed64(1)),
            (3, WireValue::Bytes(b"hi")),
            (4, WireValue::Group),
            (5, WireValue::Fixed32(2)),
        ];
        assert_eq!(fields(&data), Ok(expected));
    }

    #[test]
    fn reads_ten_byte_varints() {
        let minus_one = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(fields(&minus_one), Ok(vec![(1, WireValue::Varint(u64::MAX))]));
    }

    #[test]
    fn rejects_malformed_input() {
        let cases: [(&[u8], Problem); 9] = [
            (&[0x08], Problem::Truncated),
            (&[0x08, 0x80], Problem::Truncated),
            (
                &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                Problem::VarintOverflow,
            ),
            (&[0x0a, 5, b'a'], Problem::Truncated),
            (&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], Problem::Truncated),
            (&[0x11, 1, 2, 3], Problem::Truncated),
            (&[0x00], Problem::InvalidFieldNumber(0)),
            (&[0x0e], Problem::InvalidWireType { field: 1, wire_type: 6 }),
            (&[0x0b, 0x14], Problem::UnexpectedEndGroup { field: 2 }),
        ];
        for (data, expected) in cases {
            assert_eq!(fields(data), Err(expected), "{data:02x?}");
        }
        assert_eq!(fields(&[0x0b, 0x08, 0x01]), Err(Problem::Truncated), "unterminated group");
        assert_eq!(fields(&[0x0c]), Err(Problem::UnexpectedEndGroup { field: 1 }));
        assert_eq!(fields(&[0x0b; 40]), Err(Problem::TooDeep), "deeply nested groups");
    }
}
