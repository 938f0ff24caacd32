//! The external-data files an ONNX model references.
//!
//! A tensor in an ONNX file can keep its bytes in another file
//! (`TensorProto.data_location = EXTERNAL`, with a `location` entry in
//! `external_data`). The manifest must list every such file so that its
//! hash is checked; this module finds them without ONNX Runtime, by walking
//! the protobuf wire format of `ModelProto` down to every `TensorProto`:
//! graph initializers, sparse initializers, node attributes (tensors and
//! subgraphs, recursively), functions and training graphs.
//!
//! Only the fields on those paths are interpreted; everything else is
//! skipped by wire type. Malformed input is an error, never a panic, and
//! nesting is bounded.

use std::collections::BTreeSet;

/// Deepest message nesting followed (subgraphs inside attributes).
const MAX_DEPTH: usize = 64;

/// What a message's fields lead to, for the fields we follow.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    SparseTensor,
    Function,
    TrainingInfo,
    StringEntry,
}

/// The sub-message kind of `field` in a message of kind `m`, if followed.
fn child(m: Msg, field: u64) -> Option<Msg> {
    use Msg::*;
    match (m, field) {
        (Model, 7) => Some(Graph),
        (Model, 20) => Some(TrainingInfo),
        (Model, 25) => Some(Function),
        (TrainingInfo, 1 | 2) => Some(Graph),
        (Graph, 1) => Some(Node),
        (Graph, 5) => Some(Tensor),
        (Graph, 15) => Some(SparseTensor),
        (Function, 7) => Some(Node),
        (Node, 5) => Some(Attribute),
        (Attribute, 5 | 10) => Some(Tensor),
        (Attribute, 6 | 11) => Some(Graph),
        (Attribute, 22 | 23) => Some(SparseTensor),
        (SparseTensor, 1 | 2) => Some(Tensor),
        (Tensor, 13) => Some(StringEntry),
        _ => None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("length runs past the end")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// A field's value, by wire type.
enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire types 1 and 5 (skipped).
    Fixed,
    /// Wire type 2: the body, and where it starts in the reader's buffer.
    Bytes { body: &'a [u8], start: usize },
}

impl<'a> Reader<'a> {
    /// The next field (number, value), or None at the end of the message.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 {
            return Err("field number 0".into());
        }
        let value = match wire {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.bytes(8)?;
                Value::Fixed
            }
            5 => {
                self.bytes(4)?;
                Value::Fixed
            }
            2 => {
                let len = self.varint()?;
                let start = self.pos;
                Value::Bytes {
                    body: self.bytes(len)?,
                    start,
                }
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((field, value)))
    }
}

/// One tensor's external-data facts.
#[derive(Default)]
struct TensorRefs {
    external: bool,
    location: Option<String>,
}

fn walk(
    buf: &[u8],
    m: Msg,
    depth: usize,
    out: &mut BTreeSet<String>,
    tensor: &mut TensorRefs,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("messages nested deeper than {MAX_DEPTH}"));
    }
    let mut r = Reader { buf, pos: 0 };
    let (mut key, mut value) = (None::<String>, None::<String>);
    while let Some((field, v)) = r.field()? {
        match v {
            Value::Varint(v) => {
                if m == Msg::Tensor && field == 14 {
                    tensor.external = v == 1;
                }
            }
            Value::Fixed => {}
            Value::Bytes { body, .. } => {
                if m == Msg::StringEntry {
                    let s = String::from_utf8_lossy(body).into_owned();
                    match field {
                        1 => key = Some(s),
                        2 => value = Some(s),
                        _ => {}
                    }
                } else if let Some(c) = child(m, field) {
                    if c == Msg::Tensor {
                        let mut t = TensorRefs::default();
                        walk(body, c, depth + 1, out, &mut t)?;
                        match (t.external, t.location) {
                            (true, Some(loc)) => {
                                out.insert(loc);
                            }
                            (true, None) => {
                                return Err("a tensor stored externally has no `location`".into())
                            }
                            (false, _) => {}
                        }
                    } else {
                        walk(body, c, depth + 1, out, tensor)?;
                    }
                }
            }
        }
    }
    if m == Msg::StringEntry && key.as_deref() == Some("location") {
        tensor.location = value;
    }
    Ok(())
}

/// The `location`s of every externally stored tensor in the ONNX model
/// `bytes`, or why the bytes are not a readable ONNX model.
pub(crate) fn external_data_files(bytes: &[u8]) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    walk(bytes, Msg::Model, 0, &mut out, &mut TensorRefs::default())?;
    Ok(out)
}

/// Where an initializer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitializerBytes {
    /// `raw_data` inside the model: this byte range of the model bytes.
    Inline { start: usize, len: usize },
    /// External data: `length` bytes (None: to the end) at `offset` of `location`.
    External {
        location: String,
        offset: u64,
        length: Option<u64>,
    },
}

/// A graph initializer whose bytes are raw little-endian data (inline
/// `raw_data` or external), the only kind [`graph_initializers`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawInitializer {
    pub name: String,
    pub dims: Vec<i64>,
    /// ONNX `TensorProto.DataType` (1 = float, 7 = int64, ...).
    pub data_type: i32,
    pub bytes: InitializerBytes,
}

/// A `StringStringEntryProto`: (key, value).
fn string_entry(buf: &[u8]) -> Result<(String, String), String> {
    let mut e = Reader { buf, pos: 0 };
    let (mut k, mut v) = (String::new(), String::new());
    while let Some((field, value)) = e.field()? {
        let Value::Bytes { body, .. } = value else {
            return Err("external_data entry is not two strings".into());
        };
        let s = String::from_utf8_lossy(body).into_owned();
        match field {
            1 => k = s,
            2 => v = s,
            _ => {}
        }
    }
    Ok((k, v))
}

/// One `TensorProto`, the fields an initializer needs.
fn read_tensor(buf: &[u8], base: usize) -> Result<Option<RawInitializer>, String> {
    let mut r = Reader { buf, pos: 0 };
    let (mut name, mut dims, mut data_type) = (None, Vec::new(), 0i32);
    let (mut raw, mut external, mut entries) = (None, false, Vec::new());
    let mut typed = false;
    while let Some((field, v)) = r.field()? {
        match (field, v) {
            (1, Value::Varint(d)) => dims.push(d as i64),
            (1, Value::Bytes { body, .. }) => {
                let mut p = Reader { buf: body, pos: 0 };
                while p.pos < body.len() {
                    dims.push(p.varint()? as i64);
                }
            }
            (2, Value::Varint(t)) => {
                data_type = i32::try_from(t).map_err(|_| "data_type overflows")?
            }
            (8, Value::Bytes { body, .. }) => {
                name = Some(String::from_utf8_lossy(body).into_owned())
            }
            (9, Value::Bytes { body, start }) => raw = Some((base + start, body.len())),
            (13, Value::Bytes { body, .. }) => entries.push(string_entry(body)?),
            (14, Value::Varint(x)) => external = x == 1,
            // float_data, int32_data, string_data, int64_data, double_data, uint64_data
            (4..=7 | 10 | 11, _) => typed = true,
            _ => {}
        }
    }
    let Some(name) = name else { return Ok(None) };
    let find = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let bytes = if external {
        let location = find("location").ok_or("a tensor stored externally has no `location`")?;
        let num = |key: &str| -> Result<Option<u64>, String> {
            find(key)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| format!("external data `{key}` {v:?} is not a number"))
                })
                .transpose()
        };
        InitializerBytes::External {
            location,
            offset: num("offset")?.unwrap_or(0),
            length: num("length")?,
        }
    } else {
        match raw {
            Some((start, len)) if !typed => InitializerBytes::Inline { start, len },
            _ => return Ok(None),
        }
    };
    Ok(Some(RawInitializer {
        name,
        dims,
        data_type,
        bytes,
    }))
}

/// The initializers of the model's main graph whose bytes are raw data
/// (inline `raw_data`, or external). Tensors given in the typed fields
/// (`float_data`, ...) are left out: ONNX Runtime reads those itself.
pub(crate) fn graph_initializers(bytes: &[u8]) -> Result<Vec<RawInitializer>, String> {
    let mut out = Vec::new();
    let mut model = Reader { buf: bytes, pos: 0 };
    while let Some((field, v)) = model.field()? {
        // ModelProto.graph = 7, GraphProto.initializer = 5
        let (7, Value::Bytes { body: graph, start }) = (field, v) else {
            continue;
        };
        let mut g = Reader { buf: graph, pos: 0 };
        while let Some((f, v)) = g.field()? {
            if let (5, Value::Bytes { body, start: t }) = (f, v) {
                if let Some(init) = read_tensor(body, start + t)? {
                    out.push(init);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut put = |mut x: u64| loop {
            let b = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        };
        put((num << 3) | 2);
        put(body.len() as u64);
        v.extend_from_slice(body);
        v
    }

    fn external_tensor(loc: &str) -> Vec<u8> {
        let mut entry = field(1, b"location");
        entry.extend(field(2, loc.as_bytes()));
        let mut t = field(8, b"w"); // name
        t.extend(field(13, &entry));
        t.extend([14 << 3, 1]); // data_location = EXTERNAL
        t
    }

    #[test]
    fn finds_initializer_and_attribute_tensors() {
        let init = field(5, &external_tensor("a.data"));
        let attr = field(5, &field(5, &external_tensor("b.data")));
        let node = field(1, &attr);
        let mut graph = init;
        graph.extend(node);
        let model = field(7, &graph);
        let got = external_data_files(&model).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["a.data", "b.data"]
        );
    }

    #[test]
    fn subgraphs_and_inline_tensors() {
        // A tensor with a location entry but no EXTERNAL flag is inline.
        let mut inline = external_tensor("c.data");
        inline.truncate(inline.len() - 2);
        let sub = field(5, &external_tensor("d.data"));
        let attr = field(6, &sub); // attribute g = subgraph
        let mut graph = field(5, &inline);
        graph.extend(field(1, &field(5, &attr)));
        let got = external_data_files(&field(7, &graph)).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["d.data"]);
    }

    fn varint_field(num: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for x in [(num << 3), v] {
            let mut x = x;
            loop {
                let b = (x & 0x7f) as u8;
                x >>= 7;
                if x == 0 {
                    out.push(b);
                    break;
                }
                out.push(b | 0x80);
            }
        }
        out
    }

    #[test]
    fn graph_initializers_inline_external_and_typed() {
        // w: float [2, 3] in raw_data (dims unpacked); e: external at offset 8;
        // t: float_data (typed) is left to ONNX Runtime.
        let raw: Vec<u8> = (0..24).collect();
        let mut w = varint_field(1, 2);
        w.extend(varint_field(1, 3));
        w.extend(varint_field(2, 1));
        w.extend(field(8, b"w"));
        w.extend(field(9, &raw));
        let mut e = field(1, &[4]); // packed dims [4]
        e.extend(varint_field(2, 7));
        e.extend(field(8, b"e"));
        for (k, v) in [("location", "x.data"), ("offset", "8"), ("length", "32")] {
            let mut entry = field(1, k.as_bytes());
            entry.extend(field(2, v.as_bytes()));
            e.extend(field(13, &entry));
        }
        e.extend(varint_field(14, 1));
        let mut t = field(8, b"t");
        t.extend(varint_field(2, 1));
        t.extend(field(4, &[0, 0, 128, 63]));
        let mut graph = field(5, &w);
        graph.extend(field(5, &e));
        graph.extend(field(5, &t));
        let model = field(7, &graph);
        let got = graph_initializers(&model).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].name.as_str(), &got[0].dims[..], got[0].data_type),
            ("w", &[2i64, 3][..], 1)
        );
        let InitializerBytes::Inline { start, len } = got[0].bytes else {
            panic!("w is inline: {got:?}")
        };
        assert_eq!(&model[start..start + len], &raw[..]);
        assert_eq!(
            (got[1].name.as_str(), &got[1].dims[..], got[1].data_type),
            ("e", &[4i64][..], 7)
        );
        assert_eq!(
            got[1].bytes,
            InitializerBytes::External {
                location: "x.data".into(),
                offset: 8,
                length: Some(32)
            }
        );
        // malformed: an external tensor without a location, a bad offset
        let mut bad = field(8, b"b");
        bad.extend(varint_field(14, 1));
        assert!(graph_initializers(&field(7, &field(5, &bad))).is_err());
        let mut entry = field(1, b"location");
        entry.extend(field(2, b"x"));
        bad.extend(field(13, &entry));
        let mut off = field(1, b"offset");
        off.extend(field(2, b"-1"));
        bad.extend(field(13, &off));
        assert!(graph_initializers(&field(7, &field(5, &bad))).is_err());
        assert!(graph_initializers(&[0x3a, 0x05, 0x01]).is_err());
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(external_data_files(&[0x3a, 0x05, 0x01]).is_err()); // short body
        assert!(external_data_files(&[0xff; 12]).is_err()); // endless varint
        assert!(external_data_files(&[0x00]).is_err()); // field 0
                                                        // graph -> node -> attribute -> subgraph, 100 times over
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep = field(1, &field(5, &field(6, &deep)));
        }
        let e = external_data_files(&field(7, &deep)).unwrap_err();
        assert!(e.contains("nested"), "{e}");
        let mut t = field(8, b"w");
        t.extend([14 << 3, 1]);
        let e = external_data_files(&field(7, &field(5, &t))).unwrap_err();
        assert!(e.contains("location"), "{e}");
        assert!(external_data_files(b"").unwrap().is_empty());
    }
}
