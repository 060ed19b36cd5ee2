//! A strict JSON reader and the RFC 8785 canonical writer, for everything
//! the protocol signs or reads: Agent Cards, revocations, ACL policies and
//! registry answers.
//!
//! It is small on purpose: the WebAssembly build downloads every byte of
//! code, and a card verifier needs exactly three things — a reader that
//! refuses anything two JSON implementations could read differently, the
//! canonical (JCS) form of what it read, and typed access to members.
//!
//! # What the reader refuses
//!
//! Beyond RFC 8259 syntax (which it follows exactly: no comments, no
//! trailing commas, no leading zeros, no byte-order mark), the reader
//! applies I-JSON (RFC 7493) rules, so that a signed document means the same
//! thing to every reader:
//!
//! - an object may not repeat a member name;
//! - strings may not contain lone surrogates (`"\ud800"`);
//! - a number written as a plain integer (no fraction, no exponent) must be
//!   within ±(2^53 − 1) ([`MAX_JSON_SAFE_INTEGER`]);
//! - any other number must have at most [`MAX_JSON_SIGNIFICANT_DIGITS`]
//!   significant digits and a decimal exponent within
//!   ±[`MAX_JSON_DECIMAL_EXPONENT`] (so it is a normal, finite IEEE double
//!   whose shortest form is its own digits), and if its value is an integer
//!   below 10^21 (which the canonical form prints as a plain integer), it
//!   must be within ±(2^53 − 1) too, or its canonical text would not read
//!   back;
//! - nesting is at most [`MAX_JSON_DEPTH`] arrays and objects deep.
//!
//! [`Fields`], the typed reader, also refuses `null` for a member it reads:
//! an optional member is left out, never `null`, so a signed document has
//! one form for each typed value.
//!
//! # Numbers
//!
//! A [`Number`] keeps the canonical text of the value — what ECMAScript's
//! `Number.prototype.toString` prints, as RFC 8785 requires — computed from
//! the digits alone. The rules above are what make that exact without a
//! floating-point formatter: a decimal with at most 15 significant digits
//! converts to a double and back unchanged, so its shortest round-trip form
//! is its own digits with trailing zeros removed.

use std::fmt::{self, Write as _};

use crate::limits::{
    MAX_JSON_DECIMAL_EXPONENT, MAX_JSON_DEPTH, MAX_JSON_SAFE_INTEGER, MAX_JSON_SIGNIFICANT_DIGITS,
};

/// Why a JSON text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    Utf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not JSON: something else was found where `expected` was
    /// needed.
    #[error("expected {expected} at byte {offset}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What the grammar needed there.
        expected: &'static str,
    },
    /// A string is malformed (bad escape, raw control character, lone
    /// surrogate).
    #[error("invalid string at byte {offset}: {reason}")]
    String {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A number is valid JSON but would not mean the same value in every
    /// reader (see the module documentation).
    #[error("number at byte {offset} {reason}")]
    Number {
        /// Byte offset of the number.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// An object repeats a member name.
    #[error("duplicate member {} in the object at byte {offset}", shown(name))]
    DuplicateMember {
        /// Byte offset of the object.
        offset: usize,
        /// The repeated name.
        name: String,
    },
    /// Arrays and objects nest deeper than [`MAX_JSON_DEPTH`].
    #[error("nested deeper than {MAX_JSON_DEPTH} levels at byte {offset}")]
    TooDeep {
        /// Byte offset where the limit was passed.
        offset: usize,
    },
}

/// A JSON number, held as its canonical (ECMAScript) text.
///
/// Two numbers are equal exactly when they denote the same value: `1`,
/// `1.0` and `1e0` all read as `1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number(String);

impl Number {
    /// The canonical text, e.g. `1`, `0.5`, `1e+300`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value if it is an integer in `0..=2^53 − 1`.
    pub fn as_u64(&self) -> Option<u64> {
        let n: u64 = self.0.parse().ok()?;
        (n <= MAX_JSON_SAFE_INTEGER).then_some(n)
    }

    /// The value if it is an integer within ±(2^53 − 1).
    pub fn as_i64(&self) -> Option<i64> {
        let n: i64 = self.0.parse().ok()?;
        (n.unsigned_abs() <= MAX_JSON_SAFE_INTEGER).then_some(n)
    }

    /// `n` as a JSON number, if it is at most 2^53 − 1.
    pub fn from_u64(n: u64) -> Option<Number> {
        (n <= MAX_JSON_SAFE_INTEGER).then(|| Number(n.to_string()))
    }

    /// `n` as a JSON number, if it is within ±(2^53 − 1).
    pub fn from_i64(n: i64) -> Option<Number> {
        (n.unsigned_abs() <= MAX_JSON_SAFE_INTEGER).then(|| Number(n.to_string()))
    }
}

impl From<u32> for Number {
    fn from(n: u32) -> Self {
        Number(n.to_string())
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JSON object: members in the order they were read or inserted, names
/// unique. Two objects are equal when they have the same members, in any
/// order.
#[derive(Debug, Clone, Default)]
pub struct Object(Vec<(String, Value)>);

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for Object {}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object(Vec::new())
    }

    /// The member `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Sets member `name`, replacing (in place) a member of that name.
    /// Linear in the number of members (as are `get`, `remove` and `==`):
    /// meant for building and reading the small objects of the protocol.
    /// Objects read from the network never go through it.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes and returns member `name`.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(i).1)
    }

    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical (RFC 8785) text of the object.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = String::new();
        write_flat_object(&mut out, self, true);
        out.into_bytes()
    }
}

impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut o = Object::new();
        for (k, v) in iter {
            o.insert(k, v);
        }
        o
    }
}

impl IntoIterator for Object {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object.
    Object(Object),
}

impl Value {
    /// Reads one JSON value (surrounding whitespace allowed, nothing else)
    /// with the rules in the module documentation.
    pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
        let text = std::str::from_utf8(bytes).map_err(|e| JsonError::Utf8 {
            offset: e.valid_up_to(),
        })?;
        let mut p = Parser {
            text,
            bytes,
            pos: 0,
            depth: 0,
        };
        p.skip_ws();
        let value = p.value()?;
        p.skip_ws();
        if p.pos != bytes.len() {
            return Err(p.syntax("the end of the text"));
        }
        Ok(value)
    }

    /// The canonical (RFC 8785 JCS) text: members sorted by their UTF-16
    /// code units, no whitespace, minimal string escaping, ECMAScript
    /// numbers.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = String::new();
        write_flat(&mut out, self, true);
        out.into_bytes()
    }

    /// Indented text (two spaces), members in their order, for people.
    pub fn to_pretty(&self) -> String {
        let mut out = String::new();
        write_pretty(&mut out, self, 0);
        out
    }

    /// The member `name` if this is an object that has it.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_object()?.get(name)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one in `0..=2^53 − 1`.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// How deeply arrays and objects nest in this value (a scalar is 0,
    /// `[]` and `{}` are 1).
    pub fn depth(&self) -> usize {
        match self {
            Value::Array(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Object(o) => 1 + o.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The name of this value's JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Compact text, members in their order (not canonical: see
/// [`Value::to_canonical`]).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_flat(&mut out, self, false);
        f.write_str(&out)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        Value::Number(n)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Serializes as the same JSON value (integers as integers, other numbers
/// as `f64`, which is exact for every number the reader accepts).
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => s.serialize_i64(i),
                None => s.serialize_f64(n.0.parse().map_err(serde::ser::Error::custom)?),
            },
            Value::String(t) => s.serialize_str(t),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(members) => {
                let mut map = s.serialize_map(Some(members.len()))?;
                for (k, v) in members.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn syntax(&self, expected: &'static str) -> JsonError {
        JsonError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8, expected: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, JsonError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.syntax("a JSON value"))
        }
    }

    fn value(&mut self) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            _ => Err(self.syntax("a JSON value")),
        }
    }

    fn nested(
        &mut self,
        read: fn(&mut Self) -> Result<Value, JsonError>,
    ) -> Result<Value, JsonError> {
        if self.depth == MAX_JSON_DEPTH {
            return Err(JsonError::TooDeep { offset: self.pos });
        }
        self.depth += 1;
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn array(&mut self) -> Result<Value, JsonError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("`,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        self.pos += 1; // '{'
        let mut members: Vec<(String, Value)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Object(members)));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax("a member name (a string)"));
            }
            let name = self.string()?;
            self.skip_ws();
            self.eat(b':', "`:`")?;
            self.skip_ws();
            let value = self.value()?;
            members.push((name, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    // Sorted (as the canonical writer sorts, so no second
                    // sort is compiled in): n log n even for large objects.
                    let sorted = sorted_members(&members);
                    if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
                        return Err(JsonError::DuplicateMember {
                            offset: start,
                            name: pair[0].0.clone(),
                        });
                    }
                    return Ok(Value::Object(Object(members)));
                }
                _ => return Err(self.syntax("`,` or `}`")),
            }
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // `"`, `\` and control bytes are ASCII, so `start..pos` is on
            // character boundaries.
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(JsonError::String {
                        offset: self.pos,
                        reason: "control characters must be escaped",
                    })
                }
                None => return Err(self.syntax("`\"` (the end of the string)")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.pos - 1;
        let bad = |reason| JsonError::String { offset: at, reason };
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self
                    .hex4()
                    .ok_or_else(|| bad("`\\u` needs four hex digits"))?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if !self.bytes[self.pos..].starts_with(b"\\u") {
                        return Err(bad("lone surrogate"));
                    }
                    self.pos += 2;
                    let lo = self
                        .hex4()
                        .ok_or_else(|| bad("`\\u` needs four hex digits"))?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(bad("lone surrogate"));
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return Err(bad("lone surrogate"));
                } else {
                    hi
                };
                out.push(char::from_u32(code).ok_or_else(|| bad("invalid code point"))?);
                return Ok(());
            }
            _ => return Err(bad("unknown escape")),
        };
        self.pos += 1;
        out.push(c);
        Ok(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(n)
    }

    fn digits(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn number(&mut self) -> Result<Number, JsonError> {
        let offset = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int = self.digits();
        if int.is_empty() {
            return Err(self.syntax("a digit"));
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(JsonError::Syntax {
                offset,
                expected: "a number without leading zeros",
            });
        }
        let mut frac = "";
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac = self.digits();
            if frac.is_empty() {
                return Err(self.syntax("a digit after `.`"));
            }
        }
        let mut exp: Option<i64> = None;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            let exp_negative = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let digits = self.digits();
            if digits.is_empty() {
                return Err(self.syntax("a digit in the exponent"));
            }
            // Saturate: anything this large is out of range anyway (unless
            // the digits are all zero, and then the exponent is moot).
            let magnitude = digits.bytes().fold(0i64, |n, d| {
                n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
            });
            exp = Some(if exp_negative { -magnitude } else { magnitude });
        }
        let bad = |reason| JsonError::Number { offset, reason };
        let is_integer_token = frac.is_empty() && exp.is_none();
        canonical_number(negative, int, frac, exp.unwrap_or(0), is_integer_token).map_err(bad)
    }
}

/// The ECMAScript text of `±int.frac × 10^exp`, or why it is refused.
fn canonical_number(
    negative: bool,
    int: &str,
    frac: &str,
    exp: i64,
    is_integer_token: bool,
) -> Result<Number, &'static str> {
    let too_big = "is an integer beyond ±(2^53 - 1), which not every JSON reader holds exactly";
    if is_integer_token {
        let n: u64 = int.parse().map_err(|_| too_big)?;
        if n > MAX_JSON_SAFE_INTEGER {
            return Err(too_big);
        }
        let sign = if negative && n != 0 { "-" } else { "" };
        return Ok(Number(format!("{sign}{n}")));
    }
    // value = 0.sig × 10^n, with sig free of leading and trailing zeros.
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = all.iter().position(|&d| d != b'0') else {
        return Ok(Number("0".to_owned()));
    };
    let last = all.iter().rposition(|&d| d != b'0').unwrap_or(first);
    let sig: String = all[first..=last].iter().map(|&d| char::from(d)).collect();
    if sig.len() > MAX_JSON_SIGNIFICANT_DIGITS {
        return Err(
            "has more than 15 significant digits, so not every reader holds it exactly (integers need no fraction or exponent)",
        );
    }
    // `int.len()` is bounded by the input size, so this cannot overflow
    // before the range check below.
    let n = (int.len() as i64 - first as i64).saturating_add(exp);
    let sci = n.saturating_sub(1);
    if sci.unsigned_abs() > u64::from(MAX_JSON_DECIMAL_EXPONENT) {
        return Err("is out of range (decimal exponent beyond ±307)");
    }
    let k = sig.len() as i64;
    let mut out = String::with_capacity(sig.len() + 8);
    if negative {
        out.push('-');
    }
    if k <= n && n <= 21 {
        // An integer, printed as one: the same bound as for integer tokens,
        // or the canonical text would not read back.
        let magnitude = sig
            .parse::<u64>()
            .ok()
            .and_then(|m| m.checked_mul(10u64.checked_pow((n - k) as u32)?));
        if magnitude.is_none_or(|m| m > MAX_JSON_SAFE_INTEGER) {
            return Err(too_big);
        }
        out.push_str(&sig);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (a, b) = sig.split_at(n as usize);
        out.push_str(a);
        out.push('.');
        out.push_str(b);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&sig);
    } else {
        let (a, b) = sig.split_at(1);
        out.push_str(a);
        if !b.is_empty() {
            out.push('.');
            out.push_str(b);
        }
        out.push('e');
        out.push(if sci >= 0 { '+' } else { '-' });
        let _ = write!(out, "{}", sci.unsigned_abs());
    }
    Ok(Number(out))
}

// ---------------------------------------------------------------------------
// Writing

/// Writes `s` as a JSON string with RFC 8785's escaping: `"` and `\`, the
/// five short control escapes, `\u00xx` for the other control characters,
/// everything else as it is.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.0),
        Value::String(s) => write_string(out, s),
        Value::Array(_) | Value::Object(_) => {}
    }
}

/// Writes `value` without whitespace: members in RFC 8785 order when
/// `canonical`, else in their own order.
fn write_flat(out: &mut String, value: &Value, canonical: bool) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_flat(out, item, canonical);
            }
            out.push(']');
        }
        Value::Object(o) => write_flat_object(out, o, canonical),
        scalar => write_scalar(out, scalar),
    }
}

/// The members in RFC 8785 order: by the UTF-16 code units of their names.
fn sorted_members(members: &[(String, Value)]) -> Vec<&(String, Value)> {
    let mut sorted: Vec<&(String, Value)> = members.iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    sorted
}

fn write_flat_object(out: &mut String, o: &Object, canonical: bool) {
    let members = if canonical {
        sorted_members(&o.0)
    } else {
        o.0.iter().collect()
    };
    out.push('{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_flat(out, v, canonical);
    }
    out.push('}');
}

fn write_pretty(out: &mut String, value: &Value, indent: usize) {
    let newline = |out: &mut String, level: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', 2 * level));
    };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                write_pretty(out, item, indent + 1);
            }
            newline(out, indent);
            out.push(']');
        }
        Value::Object(o) if !o.is_empty() => {
            out.push('{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 1);
                write_string(out, k);
                out.push_str(": ");
                write_pretty(out, v, indent + 1);
            }
            newline(out, indent);
            out.push('}');
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
        scalar => write_scalar(out, scalar),
    }
}

// ---------------------------------------------------------------------------
// Typed access

/// A JSON document did not have the expected shape: a member is missing,
/// unknown or of the wrong type. `path` names the place (`skills[2].tags`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ShapeError {
    /// Where the problem is.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ShapeError {
    /// A document that could not be read at all (no path).
    pub fn from_json(err: JsonError) -> Self {
        ShapeError::new("", err.to_string())
    }

    /// A shape error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ShapeError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A member name from a document, for an error message: quoted and
/// escaped (it may hold control characters) and cut to 64 characters.
fn shown(name: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = name.chars().take(MAX).collect();
    if out.len() < name.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Reads the members of one object by name ([`Fields::read`]), then
/// refuses any it did not read, so a typo in a document is an error rather
/// than silently ignored.
pub struct Fields {
    path: String,
    members: Object,
}

impl Fields {
    /// Starts reading `value`, which must be an object; `path` names it in
    /// errors (empty for the document itself).
    fn new(value: Value, path: &str) -> Result<Self, ShapeError> {
        match value {
            Value::Object(members) => Ok(Fields {
                path: path.to_owned(),
                members,
            }),
            other => Err(expected(path, "an object", &other)),
        }
    }

    /// Reads `value`, which must be an object (`path` names it in errors,
    /// empty for the document itself), with `read`, then refuses any member
    /// `read` did not take. The one way to read an object, so the check
    /// cannot be forgotten.
    pub fn read<T>(
        value: Value,
        path: &str,
        read: impl FnOnce(&mut Fields) -> Result<T, ShapeError>,
    ) -> Result<T, ShapeError> {
        let mut fields = Fields::new(value, path)?;
        let out = read(&mut fields)?;
        fields.finish()?;
        Ok(out)
    }

    /// The path of member `name`, for errors.
    pub fn path_of(&self, name: &str) -> String {
        join(&self.path, name)
    }

    /// Takes member `name` if present. `null` is refused rather than read
    /// as absent: a document has one way to leave a member out, so a signed
    /// document has one form for each typed value.
    pub fn optional(&mut self, name: &str) -> Result<Option<Value>, ShapeError> {
        match self.members.remove(name) {
            Some(Value::Null) => Err(ShapeError::new(
                self.path_of(name),
                "must not be null (leave the member out instead)",
            )),
            other => Ok(other),
        }
    }

    /// Takes member `name`, which must be present.
    pub fn required(&mut self, name: &str) -> Result<Value, ShapeError> {
        self.optional(name)?
            .ok_or_else(|| ShapeError::new(self.path_of(name), "missing"))
    }

    /// Takes string member `name`, which must be present.
    pub fn string(&mut self, name: &str) -> Result<String, ShapeError> {
        let v = self.required(name)?;
        into_string(v, &self.path_of(name))
    }

    /// Takes string member `name` if present.
    pub fn opt_string(&mut self, name: &str) -> Result<Option<String>, ShapeError> {
        let path = self.path_of(name);
        self.optional(name)?
            .map(|v| into_string(v, &path))
            .transpose()
    }

    /// Takes boolean member `name`; `false` when absent.
    pub fn flag(&mut self, name: &str) -> Result<bool, ShapeError> {
        match self.optional(name)? {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(expected(&self.path_of(name), "a boolean", &other)),
        }
    }

    /// Takes integer member `name` (0 to 2^53 − 1), which must be present.
    pub fn u64(&mut self, name: &str) -> Result<u64, ShapeError> {
        let path = self.path_of(name);
        match self.required(name)? {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| ShapeError::new(path, "expected an integer from 0 to 2^53 - 1")),
            other => Err(expected(&path, "an integer", &other)),
        }
    }

    /// Takes array member `name`, which must be present, and reads each
    /// element with `read(element, path)`.
    pub fn array<T>(
        &mut self,
        name: &str,
        read: impl FnMut(Value, &str) -> Result<T, ShapeError>,
    ) -> Result<Vec<T>, ShapeError> {
        let path = self.path_of(name);
        into_array(self.required(name)?, &path, read)
    }

    /// Takes array member `name` if present.
    pub fn opt_array<T>(
        &mut self,
        name: &str,
        read: impl FnMut(Value, &str) -> Result<T, ShapeError>,
    ) -> Result<Option<Vec<T>>, ShapeError> {
        let path = self.path_of(name);
        self.optional(name)?
            .map(|v| into_array(v, &path, read))
            .transpose()
    }

    /// Refuses members that were not taken.
    fn finish(self) -> Result<(), ShapeError> {
        match self.members.iter().next() {
            None => Ok(()),
            Some((name, _)) => Err(ShapeError::new(
                self.path,
                format!("unknown field {}", shown(name)),
            )),
        }
    }
}

fn expected(path: &str, what: &str, found: &Value) -> ShapeError {
    ShapeError::new(
        path,
        format!("expected {what}, found {}", found.type_name()),
    )
}

/// `value` as a string, or a shape error at `path`.
pub fn into_string(value: Value, path: &str) -> Result<String, ShapeError> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(expected(path, "a string", &other)),
    }
}

/// `value` as an array read element by element with `read(element,
/// path[i])`, or a shape error.
pub fn into_array<T>(
    value: Value,
    path: &str,
    mut read: impl FnMut(Value, &str) -> Result<T, ShapeError>,
) -> Result<Vec<T>, ShapeError> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| read(v, &format!("{path}[{i}]")))
            .collect(),
        other => Err(expected(path, "an array", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<Value, JsonError> {
        Value::parse(text.as_bytes())
    }

    fn canon(text: &str) -> String {
        String::from_utf8(parse(text).unwrap().to_canonical()).unwrap()
    }

    #[test]
    fn reads_every_kind_of_value() {
        let v =
            parse(r#" {"a": [1, -2, 0.5, true, false, null, "x\n\u00e9\ud83d\ude00"], "b": {}} "#)
                .unwrap();
        let a = v.get("a").unwrap().as_array().unwrap();
        assert_eq!(a[0].as_u64(), Some(1));
        assert_eq!(a[1], Value::Number(Number::from_i64(-2).unwrap()));
        assert_eq!(a[2], Value::Number(Number("0.5".into())));
        assert_eq!(a[3].as_bool(), Some(true));
        assert_eq!(a[5], Value::Null);
        assert_eq!(a[6].as_str(), Some("x\né😀"));
        assert_eq!(v.get("b"), Some(&Value::Object(Object::new())));
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for bad in [
            "",
            " ",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "tru",
            "nul",
            "'x'",
            "\"\\x\"",
            "\"a",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "1 2",
            "\u{feff}1",
            "\"\t\"",
            "NaN",
            "Infinity",
            "[",
            "{\"a\":}",
            "\"\\u12\"",
            "\"\\u12g4\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            Value::parse(b"\"\xff\""),
            Err(JsonError::Utf8 { offset: 1 })
        ));
    }

    #[test]
    fn refuses_what_i_json_refuses() {
        assert!(matches!(
            parse(r#"{"a": 1, "b": {"c": 1, "c": 2}}"#),
            Err(JsonError::DuplicateMember { name, .. }) if name == "c"
        ));
        for lone in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800x""#,
        ] {
            assert!(
                matches!(parse(lone), Err(JsonError::String { .. })),
                "{lone}"
            );
        }
        for n in [
            "9007199254740992",
            "-9007199254740992",
            "18446744073709551616",
            "0.30000000000000004",
            "1234567890.1234567",
            "1e308",
            "1e-308",
            "9.99e999999999999999999",
            "1e20",
            "9.007199254740992e15",
            "-1.5e17",
        ] {
            assert!(matches!(parse(n), Err(JsonError::Number { .. })), "{n}");
        }
        assert_eq!(canon("9007199254740991"), "9007199254740991");
        assert_eq!(canon("-9007199254740991"), "-9007199254740991");
        assert_eq!(canon("0e99999999999999999999"), "0");
        // Exponents far beyond i64 saturate instead of overflowing.
        for n in [
            "0.0001e-99999999999999999999999",
            "1e99999999999999999999999",
        ] {
            assert!(matches!(parse(n), Err(JsonError::Number { .. })), "{n}");
        }
    }

    #[test]
    fn duplicates_are_found_in_large_objects_too() {
        let members: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{}}}", members.join(","));
        assert_eq!(parse(&text).unwrap().as_object().unwrap().len(), 20_000);
        let text = format!("{{{},\"k7\":0}}", members.join(","));
        assert!(matches!(
            parse(&text),
            Err(JsonError::DuplicateMember { offset: 0, name }) if name == "k7"
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(JsonError::TooDeep { .. })));
        // Far past the limit: an error, not a stack overflow.
        assert!(parse(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn numbers_print_as_ecmascript_does() {
        for (text, want) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1.0", "1"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("100e-2", "1"),
            ("0.5", "0.5"),
            ("-1.25", "-1.25"),
            ("9.00719925474099e15", "9007199254740990"),
            ("1e15", "1000000000000000"),
            ("1e21", "1e+21"),
            ("1.5e21", "1.5e+21"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1.23e-7", "1.23e-7"),
            ("123456789012345e-20", "0.00000123456789012345"),
            ("1e307", "1e+307"),
            ("1e-307", "1e-307"),
            ("4.5e300", "4.5e+300"),
            ("12.5000", "12.5"),
            ("0.000123", "0.000123"),
        ] {
            assert_eq!(canon(text), want, "{text}");
        }
    }

    #[test]
    fn canonical_form_follows_rfc_8785() {
        // Members sorted by UTF-16 code units: U+1F600 (a surrogate pair,
        // 0xD83D…) sorts before U+FB33 although its code point is larger.
        assert_eq!(
            canon("{\"b\":1,\"a\":{\"z\":[],\"y\":null},\"\u{fb33}\":0,\"\u{1f600}\":0}"),
            "{\"a\":{\"y\":null,\"z\":[]},\"b\":1,\"\u{1f600}\":0,\"\u{fb33}\":0}"
        );
        assert_eq!(
            canon(r#""\u0000\u001f\b\f\n\r\t\"\\\/\u007f\u2028é""#),
            "\"\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\u{7f}\u{2028}é\""
        );
    }

    #[test]
    fn pretty_and_compact_keep_member_order() {
        let v = parse(r#"{"rule":[{"b":1,"a":[]}],"e":{}}"#).unwrap();
        assert_eq!(v.to_string(), r#"{"rule":[{"b":1,"a":[]}],"e":{}}"#);
        assert_eq!(
            v.to_pretty(),
            "{\n  \"rule\": [\n    {\n      \"b\": 1,\n      \"a\": []\n    }\n  ],\n  \"e\": {}\n}"
        );
    }

    #[test]
    fn fields_read_typed_members_and_refuse_the_rest() {
        let v = parse(r#"{"s":"x","n":5,"f":true,"a":["p","q"],"z":null,"extra":1}"#).unwrap();
        let mut f = Fields::new(v, "doc").unwrap();
        assert_eq!(f.string("s").unwrap(), "x");
        assert_eq!(f.u64("n").unwrap(), 5);
        assert!(f.flag("f").unwrap());
        assert!(!f.flag("absent").unwrap());
        assert_eq!(f.opt_string("absent").unwrap(), None);
        assert_eq!(
            f.opt_string("z").unwrap_err().to_string(),
            "doc.z: must not be null (leave the member out instead)"
        );
        assert_eq!(
            f.array("a", into_string).unwrap(),
            vec!["p".to_owned(), "q".to_owned()]
        );
        assert_eq!(
            f.string("missing").unwrap_err().to_string(),
            "doc.missing: missing"
        );
        assert_eq!(
            f.finish().unwrap_err().to_string(),
            "doc: unknown field \"extra\""
        );
        let mut f = Fields::new(parse(r#"{"a":[1]}"#).unwrap(), "").unwrap();
        assert_eq!(
            f.array("a", into_string).unwrap_err().to_string(),
            "a[0]: expected a string, found a number"
        );
        assert_eq!(
            Fields::new(parse("[]").unwrap(), "")
                .err()
                .unwrap()
                .to_string(),
            "expected an object, found an array"
        );
    }

    /// An integer-valued double that prints without exponent but is beyond
    /// ±(2^53 − 1): refused by the reader.
    fn unsafe_integer(f: f64) -> bool {
        f.fract() == 0.0 && f.abs() > MAX_JSON_SAFE_INTEGER as f64 && f.abs() < 1e21
    }

    /// serde_json values whose numbers this reader accepts.
    fn arb_value() -> impl Strategy<Value = serde_json::Value> {
        let safe = MAX_JSON_SAFE_INTEGER as i64;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            (-safe..=safe).prop_map(|n| serde_json::json!(n)),
            // Doubles printed with at most 15 significant digits.
            (any::<f64>(), 0usize..15).prop_filter_map("finite, in range", |(f, p)| {
                let t = format!("{f:.p$e}");
                let back: f64 = t.parse().ok()?;
                (back.is_finite()
                    && (back == 0.0 || (1e-307..1e307).contains(&back.abs()))
                    && !unsafe_integer(back))
                .then(|| serde_json::Value::from(back))
            }),
            "\\PC{0,12}".prop_map(serde_json::Value::String),
            "[\u{0}-\u{1f}\"\\\\a\u{e9}\u{1f600}\u{fb33}]{0,6}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("\\PC{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The canonical form is byte for byte what serde_jcs (an
        /// independent RFC 8785 implementation) writes.
        #[test]
        fn canonical_form_matches_an_independent_implementation(v in arb_value()) {
            let text = serde_json::to_vec(&v).unwrap();
            let ours = Value::parse(&text).unwrap().to_canonical();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(serde_jcs::to_vec(&v).unwrap()).unwrap());
        }

        /// Pretty and compact output read back as the same value.
        #[test]
        fn every_output_reads_back(v in arb_value()) {
            let ours = Value::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
            prop_assert_eq!(&Value::parse(ours.to_pretty().as_bytes()).unwrap(), &ours);
            prop_assert_eq!(&Value::parse(ours.to_string().as_bytes()).unwrap(), &ours);
            prop_assert_eq!(&Value::parse(&ours.to_canonical()).unwrap(), &ours);
        }

        /// Numbers written in any notation canonicalize as ECMAScript
        /// prints the double they denote.
        #[test]
        fn any_notation_of_a_number_canonicalizes_alike(
            digits in "[1-9][0-9]{0,14}",
            exp in -290i64..290,
            zeros in 0usize..4,
            point in 0usize..16,
        ) {
            let int_form = format!("{digits}{}e{exp}", "0".repeat(zeros));
            let point = point.min(digits.len());
            let (a, b) = digits.split_at(point);
            let a = if a.is_empty() { "0" } else { a };
            let b = if b.is_empty() && zeros == 0 { "0" } else { b };
            let shifted = format!("{a}.{b}{}e{}", "0".repeat(zeros), exp + zeros as i64 + (digits.len() - point) as i64);
            let f: f64 = int_form.parse().unwrap();
            prop_assume!(!unsafe_integer(f));
            let x = canon(&int_form);
            prop_assert_eq!(&x, &canon(&shifted));
            prop_assert_eq!(x, String::from_utf8(serde_jcs::to_vec(&f).unwrap()).unwrap());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Value::parse(&bytes);
        }

        #[test]
        fn json_ish_text_never_panics(text in r#"[\[\]{}":,0-9a-z .\-\\eE+u]{0,200}"#) {
            let _ = Value::parse(text.as_bytes());
        }
    }
}
