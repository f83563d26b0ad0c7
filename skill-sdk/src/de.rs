//! A small JSON deserializer for the guest side: reads the intent the hub
//! hands a skill into the author's serde types.
//!
//! Why not `serde_json::from_slice`: its error path formats serde's
//! `Unexpected`, which links the whole of `core`'s float formatting (~20 KiB of
//! a ~100 KiB module) and `str`'s Debug tables into every skill, even one that
//! never sees a float. This reader says what was wrong without printing
//! floats, parses numbers only into the type asked for (an integer field never
//! links float parsing), and skips unknown fields without building them. What
//! the hub sends is JSON it has already parsed and validated; this reader
//! still rejects anything that is not RFC 8259 JSON, with the byte offset.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Display};

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};

/// Nesting deeper than this is refused; the hub's own parser stops at the
/// same depth, and a skill's stack is small.
const MAX_DEPTH: u32 = 128;

/// What was wrong with the input, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    offset: Option<usize>,
}

impl Error {
    fn at(message: impl Into<String>, offset: usize) -> Error {
        Error {
            message: message.into(),
            offset: Some(offset),
        }
    }

    /// The byte offset in the input where reading stopped, when known.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }
}

impl Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(offset) = self.offset {
            write!(f, " at byte {offset}")?;
        }
        Ok(())
    }
}

impl core::error::Error for Error {}

/// `Unexpected` in words, without `core`'s float formatting.
struct Described<'a>(Unexpected<'a>);

impl Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Unexpected::Bool(b) => write!(f, "boolean `{b}`"),
            Unexpected::Unsigned(n) => write!(f, "integer `{n}`"),
            Unexpected::Signed(n) => write!(f, "integer `{n}`"),
            Unexpected::Float(_) => f.write_str("a number with a fraction or exponent"),
            Unexpected::Char(c) => write!(f, "character `{c}`"),
            Unexpected::Str(s) => write!(f, "string \"{s}\""),
            Unexpected::Bytes(_) => f.write_str("bytes"),
            Unexpected::Unit => f.write_str("null"),
            Unexpected::Option => f.write_str("an optional value"),
            Unexpected::NewtypeStruct => f.write_str("a newtype struct"),
            Unexpected::Seq => f.write_str("an array"),
            Unexpected::Map => f.write_str("an object"),
            Unexpected::Enum => f.write_str("an enum"),
            Unexpected::UnitVariant => f.write_str("a unit variant"),
            Unexpected::NewtypeVariant => f.write_str("a newtype variant"),
            Unexpected::TupleVariant => f.write_str("a tuple variant"),
            Unexpected::StructVariant => f.write_str("a struct variant"),
            Unexpected::Other(other) => f.write_str(other),
        }
    }
}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Error {
        Error {
            message: msg.to_string(),
            offset: None,
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Error {
        Error::custom(format_args!(
            "invalid type: {}, expected {}",
            Described(unexp),
            exp
        ))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Error {
        Error::custom(format_args!(
            "invalid value: {}, expected {}",
            Described(unexp),
            exp
        ))
    }
}

/// Reads one JSON value of type `T` from `input`; nothing but whitespace may
/// follow it.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, Error> {
    let mut reader = Reader {
        input,
        at: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut reader).map_err(|e| reader.locate(e))?;
    reader.skip_whitespace();
    if reader.at < input.len() {
        return Err(Error::at("trailing characters after the value", reader.at));
    }
    Ok(value)
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
    depth: u32,
}

/// A number as written: its sign, digits and whether it has a fraction or
/// exponent, before it becomes the type asked for.
struct Number<'a> {
    text: &'a str,
    negative: bool,
    integral: bool,
}

impl<'a> Reader<'a> {
    /// Gives an error without a position the offset where reading stopped.
    fn locate(&self, mut e: Error) -> Error {
        e.offset.get_or_insert(self.at);
        e
    }

    fn error(&self, message: &str) -> Error {
        Error::at(message, self.at)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Result<u8, Error> {
        self.skip_whitespace();
        self.input
            .get(self.at)
            .copied()
            .ok_or_else(|| self.error("unexpected end of input"))
    }

    fn expect(&mut self, byte: u8, message: &str) -> Result<(), Error> {
        if self.peek()? == byte {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(message))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Error> {
        if self.input[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Number<'a>, Error> {
        let start = self.at;
        let input = self.input;
        let digits = |at: &mut usize| {
            let from = *at;
            while input.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at - from
        };
        let mut at = self.at;
        let negative = input.get(at) == Some(&b'-');
        if negative {
            at += 1;
        }
        let first = input.get(at).copied();
        let int_digits = digits(&mut at);
        if int_digits == 0 || (first == Some(b'0') && int_digits > 1) {
            self.at = start;
            return Err(self.error("invalid number"));
        }
        let mut integral = true;
        if input.get(at) == Some(&b'.') {
            at += 1;
            integral = false;
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.error("invalid number: no digits after `.`"));
            }
        }
        if let Some(b'e' | b'E') = input.get(at) {
            at += 1;
            integral = false;
            if let Some(b'+' | b'-') = input.get(at) {
                at += 1;
            }
            if digits(&mut at) == 0 {
                self.at = at;
                return Err(self.error("invalid number: no digits in the exponent"));
            }
        }
        self.at = at;
        let text = core::str::from_utf8(&input[start..at]).expect("ASCII digits and signs");
        Ok(Number {
            text,
            negative,
            integral,
        })
    }

    /// What is there instead of the `exp` asked for, as a type error at the
    /// value's start. Call after `peek`.
    fn mismatch(&mut self, exp: &dyn Expected) -> Error {
        let start = self.at;
        let mut scratch = Vec::new();
        let mut e = match self.input[start] {
            b'"' => match self.string(&mut scratch) {
                Ok(text) => <Error as de::Error>::invalid_type(Unexpected::Str(text), exp),
                Err(e) => return e,
            },
            b @ (b't' | b'f') => {
                <Error as de::Error>::invalid_type(Unexpected::Bool(b == b't'), exp)
            }
            b'n' => <Error as de::Error>::invalid_type(Unexpected::Unit, exp),
            b'[' => <Error as de::Error>::invalid_type(Unexpected::Seq, exp),
            b'{' => <Error as de::Error>::invalid_type(Unexpected::Map, exp),
            b'-' | b'0'..=b'9' => {
                <Error as de::Error>::invalid_type(Unexpected::Other("a number"), exp)
            }
            _ => return self.error("expected a JSON value"),
        };
        e.offset = Some(start);
        e
    }

    /// An integer number as `u64`, or as `i64` when negative.
    fn integer(&mut self, exp: &dyn Expected) -> Result<Result<u64, i64>, Error> {
        let (start, number) = match self.peek()? {
            b'-' | b'0'..=b'9' => (self.at, self.number()?),
            _ => return Err(self.mismatch(exp)),
        };
        if !number.integral {
            let mut e = <Error as de::Error>::invalid_type(Unexpected::Float(0.0), exp);
            e.offset = Some(start);
            return Err(e);
        }
        parse_integer(&number).ok_or_else(|| {
            let mut e = <Error as de::Error>::custom(format_args!(
                "integer {} out of range, expected {exp}",
                number.text
            ));
            e.offset = Some(start);
            e
        })
    }

    fn float(&mut self, exp: &dyn Expected) -> Result<f64, Error> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                let number = self.number()?;
                parse_float(&number, start)
            }
            _ => Err(self.mismatch(exp)),
        }
    }

    /// A string, its escapes resolved; `scratch` holds it when it had any.
    fn string<'s>(&'s mut self, scratch: &'s mut Vec<u8>) -> Result<&'s str, Error> {
        self.expect(b'"', "expected a string")?;
        let start = self.at;
        let mut escaped = false;
        loop {
            let Some(&byte) = self.input.get(self.at) else {
                return Err(self.error("unterminated string"));
            };
            match byte {
                b'"' => break,
                b'\\' => {
                    if !escaped {
                        scratch.clear();
                        scratch.extend_from_slice(&self.input[start..self.at]);
                        escaped = true;
                    }
                    self.at += 1;
                    self.escape(scratch)?;
                }
                0..=0x1f => return Err(self.error("control character in a string")),
                _ => {
                    if escaped {
                        scratch.push(byte);
                    }
                    self.at += 1;
                }
            }
        }
        let raw = &self.input[start..self.at];
        self.at += 1;
        let bytes = if escaped { &scratch[..] } else { raw };
        core::str::from_utf8(bytes)
            .map_err(|e| Error::at("invalid UTF-8 in a string", start + e.valid_up_to()))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Some(&byte) = self.input.get(self.at) else {
            return Err(self.error("unterminated string"));
        };
        self.at += 1;
        let simple = match byte {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let first = self.hex4()?;
                let c = match first {
                    0xd800..=0xdbff => {
                        if !self.input[self.at..].starts_with(b"\\u") {
                            return Err(self.error("lone surrogate in a \\u escape"));
                        }
                        self.at += 2;
                        let second = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&second) {
                            return Err(self.error("lone surrogate in a \\u escape"));
                        }
                        0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
                    }
                    0xdc00..=0xdfff => return Err(self.error("lone surrogate in a \\u escape")),
                    c => c,
                };
                let c = char::from_u32(c).expect("surrogates were handled");
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("invalid escape in a string")),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let Some(digits) = self.input.get(self.at..self.at + 4) else {
            return Err(self.error("unterminated \\u escape"));
        };
        let mut value = 0;
        for &d in digits {
            let nibble = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            value = value * 16 + u32::from(nibble);
        }
        self.at += 4;
        Ok(value)
    }

    /// Skips one value without building it: unknown fields cost nothing.
    fn skip(&mut self) -> Result<(), Error> {
        match self.peek()? {
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'"' => self.string(&mut Vec::new()).map(drop),
            b'[' => self.nested(b']', "expected `,` or `]`", |r| {
                let mut items = Items::new(r, b']');
                while items.next()? {
                    items.reader.skip()?;
                }
                Ok(())
            }),
            b'{' => self.nested(b'}', "expected `,` or `}`", |r| {
                let mut entries = Items::new(r, b'}');
                while entries.next_key()? {
                    entries.reader.string(&mut Vec::new())?;
                    entries.reader.expect(b':', "expected `:` after the key")?;
                    entries.reader.skip()?;
                }
                Ok(())
            }),
            _ => self.number().map(drop),
        }
    }

    /// At `open` (peeked): consumes it, lets `inside` read the contents one
    /// level deeper, then expects `close`, or says `unclosed`.
    fn nested<T>(
        &mut self,
        close: u8,
        unclosed: &str,
        inside: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.at += 1;
        self.enter()?;
        let value = inside(self)?;
        self.expect(close, unclosed)?;
        self.depth -= 1;
        Ok(value)
    }

    /// After an element: `true` and the comma consumed when another follows,
    /// `false` at `close` (not consumed).
    fn next_element(&mut self, close: u8) -> Result<bool, Error> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Ok(true)
            }
            b if b == close => Ok(false),
            _ => Err(self.error(if close == b']' {
                "expected `,` or `]`"
            } else {
                "expected `,` or `}`"
            })),
        }
    }
}

fn parse_integer(number: &Number<'_>) -> Option<Result<u64, i64>> {
    let magnitude = number.text.trim_start_matches('-');
    let mut value: u64 = 0;
    for digit in magnitude.bytes() {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if !number.negative {
        Some(Ok(value))
    } else if value <= i64::MAX as u64 + 1 {
        Some(Err((value as i64).wrapping_neg()))
    } else {
        None
    }
}

fn parse_float(number: &Number<'_>, start: usize) -> Result<f64, Error> {
    match number.text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(Error::at("number out of range", start)),
    }
}

macro_rules! integer {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.peek()?;
            let start = self.at;
            let value = match self.integer(&visitor)? {
                Ok(u) => <$ty>::try_from(u).map_err(|_| Unexpected::Unsigned(u)),
                Err(i) => <$ty>::try_from(i).map_err(|_| Unexpected::Signed(i)),
            };
            match value {
                Ok(v) => visitor.$visit(v),
                Err(unexp) => {
                    let mut e = <Error as de::Error>::invalid_value(unexp, &visitor);
                    e.offset = Some(start);
                    Err(e)
                }
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Reader<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'"' => self.deserialize_str(visitor),
            b'[' => self.deserialize_seq(visitor),
            b'{' => self.deserialize_map(visitor),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                let number = self.number()?;
                match number.integral.then(|| parse_integer(&number)).flatten() {
                    Some(Ok(u)) => visitor.visit_u64(u),
                    Some(Err(i)) => visitor.visit_i64(i),
                    // A fraction, or beyond 64 bits (JSON allows it).
                    None => visitor.visit_f64(parse_float(&number, start)?),
                }
            }
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            _ => Err(self.mismatch(&visitor)),
        }
    }

    integer! {
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.float(&visitor)?;
        visitor.visit_f32(value as f32)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = self.float(&visitor)?;
        visitor.visit_f64(value)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? != b'"' {
            return Err(self.mismatch(&visitor));
        }
        let mut scratch = Vec::new();
        let s = self.string(&mut scratch)?;
        visitor.visit_str(s)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_unit()
        } else {
            Err(self.mismatch(&visitor))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? != b'[' {
            return Err(self.mismatch(&visitor));
        }
        self.nested(
            b']',
            "expected `,` or `]`: the array has more elements than expected",
            |r| visitor.visit_seq(Items::new(r, b']')),
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek()? != b'{' {
            return Err(self.mismatch(&visitor));
        }
        self.nested(b'}', "expected `,` or `}`", |r| {
            visitor.visit_map(Items::new(r, b'}'))
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek()? {
            // A unit variant: "name".
            b'"' => {
                let mut scratch = Vec::new();
                let name = self.string(&mut scratch)?;
                visitor.visit_enum(name.into_deserializer())
            }
            // Any variant: {"name": value}.
            b'{' => self.nested(b'}', "expected `}` after the enum's one entry", |r| {
                visitor.visit_enum(Variant { reader: r })
            }),
            _ => Err(self.mismatch(&visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip()?;
        visitor.visit_unit()
    }
}

/// The elements of an array or the entries of an object, after its opening
/// bracket.
struct Items<'r, 'a> {
    reader: &'r mut Reader<'a>,
    close: u8,
    first: bool,
}

impl<'r, 'a> Items<'r, 'a> {
    fn new(reader: &'r mut Reader<'a>, close: u8) -> Self {
        Items {
            reader,
            close,
            first: true,
        }
    }

    /// Whether another item follows (its comma consumed).
    fn next(&mut self) -> Result<bool, Error> {
        if self.reader.peek()? == self.close {
            return Ok(false);
        }
        if core::mem::take(&mut self.first) {
            return Ok(true);
        }
        self.reader.next_element(self.close)
    }

    /// Whether another entry follows, its key (a string) next.
    fn next_key(&mut self) -> Result<bool, Error> {
        if !self.next()? {
            return Ok(false);
        }
        if self.reader.peek()? != b'"' {
            return Err(self.reader.error("expected a string key"));
        }
        Ok(true)
    }
}

impl<'de> SeqAccess<'de> for Items<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.next()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

impl<'de> MapAccess<'de> for Items<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.next_key()? {
            return Ok(None);
        }
        seed.deserialize(Key {
            reader: &mut *self.reader,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.reader.expect(b':', "expected `:` after the key")?;
        seed.deserialize(&mut *self.reader)
    }
}

/// An object key: always a string, whatever type is asked for.
struct Key<'r, 'a> {
    reader: &'r mut Reader<'a>,
}

impl<'de> de::Deserializer<'de> for Key<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let mut scratch = Vec::new();
        let s = self.reader.string(&mut scratch)?;
        visitor.visit_str(s)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The one entry of `{"variant": value}`.
struct Variant<'r, 'a> {
    reader: &'r mut Reader<'a>,
}

impl<'de> EnumAccess<'de> for Variant<'_, '_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        if self.reader.peek()? != b'"' {
            return Err(self.reader.error("expected the variant's name"));
        }
        let name = seed.deserialize(Key {
            reader: &mut *self.reader,
        })?;
        self.reader
            .expect(b':', "expected `:` after the variant's name")?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(&mut *self.reader)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.reader)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(&mut *self.reader, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(&mut *self.reader, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::format;
    use alloc::vec;
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Args {
        sides: u32,
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Plain,
        Loud,
        Repeat(u8),
        Fade {
            ms: u16,
        },
    }

    fn read<T: DeserializeOwned>(json: &str) -> Result<T, Error> {
        from_slice(json.as_bytes())
    }

    fn message<T: DeserializeOwned + fmt::Debug>(json: &str) -> String {
        read::<T>(json).unwrap_err().to_string()
    }

    #[test]
    fn reads_structs_options_enums_and_skips_unknown_fields() {
        let args: Args = read(
            r#" {"sides": 20, "extra": {"deep": [1, 2.5e3, "x", null, true]}, "label": "d\u00e9 \"20\"", "mode": "loud"} "#,
        )
        .unwrap();
        assert_eq!(
            args,
            Args {
                sides: 20,
                label: Some("dé \"20\"".into()),
                mode: Mode::Loud
            }
        );
        let args: Args = read(r#"{"sides": 6, "label": null, "mode": {"repeat": 3}}"#).unwrap();
        assert_eq!((args.label, args.mode), (None, Mode::Repeat(3)));
        let args: Args = read(r#"{"sides": 6, "mode": {"fade": {"ms": 250}}}"#).unwrap();
        assert_eq!(args.mode, Mode::Fade { ms: 250 });
    }

    #[test]
    fn reads_what_serde_json_reads_into_a_value() {
        let text = r#"{"a": [1, -2, 3.25, -1e-3, 18446744073709551615, -9223372036854775808],
            "b": {"c": "\ud83c\udfb2 \\ \/ \b\f\n\r\t", "d": [], "e": {}}, "f": false, "g": null}"#;
        let ours: Value = read(text).unwrap();
        let theirs: Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours, theirs);
        let list: Vec<BTreeMap<String, i64>> = read(r#"[{"x": -1}, {"y": 2}]"#).unwrap();
        assert_eq!(list[0]["x"], -1);
        assert_eq!(read::<(u8, bool)>("[7, true]").unwrap(), (7, true));
        assert_eq!(read::<f64>("12").unwrap(), 12.0);
        assert_eq!(read::<Vec<u8>>("[1,2]").unwrap(), vec![1, 2]);
    }

    #[test]
    fn wrong_types_and_ranges_are_named_without_printing_floats() {
        assert_eq!(
            message::<Args>(r#"{"sides": "six"}"#),
            "invalid type: string \"six\", expected u32 at byte 10"
        );
        assert_eq!(
            message::<Args>(r#"{"sides": 4294967296}"#),
            "invalid value: integer `4294967296`, expected u32 at byte 10"
        );
        assert_eq!(
            message::<Args>(r#"{"sides": -1}"#),
            "invalid value: integer `-1`, expected u32 at byte 10"
        );
        assert_eq!(
            message::<Args>(r#"{"sides": 2.5}"#),
            "invalid type: a number with a fraction or exponent, expected u32 at byte 10"
        );
        assert_eq!(
            message::<String>("1.5"),
            "invalid type: a number, expected a string at byte 0"
        );
        assert_eq!(
            message::<Vec<u8>>(r#"{"a": 1}"#),
            "invalid type: an object, expected a sequence at byte 0"
        );
        assert_eq!(
            message::<Value>("[1.5e999]"),
            "number out of range at byte 1"
        );
        assert_eq!(
            message::<i64>("-9223372036854775809"),
            "integer -9223372036854775809 out of range, expected i64 at byte 0"
        );
        assert!(message::<Args>("{}").starts_with("missing field `sides`"));
        assert!(
            message::<Args>(r#"{"sides": 1, "mode": "quiet"}"#)
                .starts_with("unknown variant `quiet`")
        );
    }

    #[test]
    fn malformed_json_is_refused_with_its_offset() {
        for (bad, says, at) in [
            ("", "unexpected end of input", 0),
            ("{\"sides\": 1", "unexpected end of input", 11),
            ("{\"sides\": 1,}", "expected a string key", 12),
            ("{\"sides\" 1}", "expected `:` after the key", 9),
            ("{\"sides\": 01}", "invalid number", 10),
            (
                "{\"sides\": 1} x",
                "trailing characters after the value",
                13,
            ),
            (
                "{\"sides\": 1, \"label\": \"a\u{1}\"}",
                "control character in a string",
                24,
            ),
            (
                "{\"sides\": 1, \"label\": \"\\x\"}",
                "invalid escape in a string",
                25,
            ),
            (
                "{\"sides\": 1, \"label\": \"\\ud800\"}",
                "lone surrogate in a \\u escape",
                29,
            ),
            ("{\"sides\": 1, \"x\": [1 2]}", "expected `,` or `]`", 21),
            ("{\"sides\": 1, \"x\": tru}", "expected a JSON value", 18),
            ("{\"sides\": 1, \"x\": -}", "invalid number", 18),
            (
                "{\"sides\": 1, \"x\": 1.}",
                "invalid number: no digits after `.`",
                20,
            ),
        ] {
            let e = read::<Args>(bad).unwrap_err();
            assert_eq!((e.message.as_str(), e.offset), (says, Some(at)), "{bad}");
        }
        let e = from_slice::<String>(b"\"\xff\"").unwrap_err();
        assert_eq!(e.to_string(), "invalid UTF-8 in a string at byte 1");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(message::<Value>(&deep).starts_with("nested too deeply"));
        assert!(
            message::<Args>(&format!("{{\"sides\": 1, \"x\": {deep}}}"))
                .starts_with("nested too deeply")
        );
        let fine = "[".repeat(100) + &"]".repeat(100);
        assert!(read::<Value>(&fine).is_ok());
    }
}
