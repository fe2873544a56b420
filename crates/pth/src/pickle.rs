//! A minimal pickle virtual machine that interprets only the opcodes a `torch.save` state_dict
//! needs, and never imports or calls anything.
//!
//! Every `GLOBAL`/`STACK_GLOBAL` is resolved through the allow-list in [`crate::torch`]; `REDUCE`
//! "calls" only the allow-listed rebuild functions, which [`crate::torch`] interprets as data;
//! `BINPERSID` turns a torch storage reference into a [`StorageRef`] (its bytes live outside the
//! pickle and are read by the format module). Any other opcode is an error naming its byte and
//! offset.
//!
//! Interpreted opcodes: `PROTO FRAME MARK STOP`, `EMPTY_DICT EMPTY_LIST EMPTY_TUPLE TUPLE
//! TUPLE1-3`, `BININT BININT1 BININT2 LONG1 BINFLOAT NONE NEWTRUE NEWFALSE`, `BINUNICODE
//! SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES`, `GLOBAL
//! STACK_GLOBAL`, `PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET`, `APPEND APPENDS
//! SETITEM SETITEMS`, `REDUCE BUILD BINPERSID`. `torch.save` writes protocol 2 by default (no
//! frames, `GLOBAL`, `BINPUT`); protocols 3 to 5 (`pickle_protocol=`) add `FRAME`, `MEMOIZE`,
//! `STACK_GLOBAL` and the short string forms.
//!
//! Containers (tuples, lists, dicts) live in a [`Heap`] and values refer to them by index, so the
//! memo shares mutable containers as Python does, cyclic or deeply nested input cannot overflow
//! the stack when dropped, and cloning a value is cheap.

use std::collections::HashMap;
use std::rc::Rc;

use crate::torch::{self, Global, StorageRef, TensorRef};
use crate::DType;

/// A value on the pickle stack or in the memo.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    None,
    Bool(bool),
    /// Python ints wider than 128 bits are refused.
    Int(i128),
    /// A float or bytes object: parsed, but nothing a state_dict needs reads its value.
    Float,
    Str(Rc<str>),
    Bytes,
    Tuple(TupleId),
    List(ListId),
    Dict(DictId),
    /// An allow-listed callable.
    Global(Global),
    /// A storage class such as `torch.FloatStorage`.
    StorageType(DType),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    /// The Python type of the value, with an article, for error messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float => "a float",
            Value::Str(_) => "a str",
            Value::Bytes => "a bytes object",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a function or class",
            Value::StorageType(_) => "a storage type",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

/// Index of a tuple in its [`Heap`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct TupleId(usize);
/// Index of a list in its [`Heap`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListId(usize);
/// Index of a dict in its [`Heap`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct DictId(usize);

/// The containers built by one pickle. Ids are only minted by this heap, so indexing never fails.
#[derive(Default)]
pub(crate) struct Heap {
    tuples: Vec<Vec<Value>>,
    lists: Vec<Vec<Value>>,
    dicts: Vec<Dict>,
}

impl Heap {
    pub(crate) fn tuple(&self, id: TupleId) -> &[Value] {
        &self.tuples[id.0]
    }

    pub(crate) fn list(&self, id: ListId) -> &[Value] {
        &self.lists[id.0]
    }

    pub(crate) fn dict(&self, id: DictId) -> &Dict {
        &self.dicts[id.0]
    }

    pub(crate) fn new_dict(&mut self) -> Value {
        self.dicts.push(Dict::default());
        Value::Dict(DictId(self.dicts.len() - 1))
    }

    fn new_tuple(&mut self, items: Vec<Value>) -> Value {
        self.tuples.push(items);
        Value::Tuple(TupleId(self.tuples.len() - 1))
    }

    fn new_list(&mut self) -> Value {
        self.lists.push(Vec::new());
        Value::List(ListId(self.lists.len() - 1))
    }
}

/// A Python dict: entries in insertion order; re-setting a str/int/bool key replaces its value in
/// place, as Python does (other key types are simply appended).
#[derive(Default)]
pub(crate) struct Dict {
    entries: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

#[derive(Hash, PartialEq, Eq)]
enum Key {
    Str(Rc<str>),
    Int(i128),
}

impl Dict {
    pub(crate) fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    /// The value under the str key `name`.
    pub(crate) fn get_str(&self, name: &str) -> Option<&Value> {
        let i = *self.index.get(&Key::Str(name.into()))?;
        Some(&self.entries[i].1)
    }

    fn insert(&mut self, key: Value, value: Value) {
        let hashable = match &key {
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Bool(b) => Some(Key::Int(i128::from(*b))),
            _ => None,
        };
        match hashable {
            Some(k) => match self.index.get(&k) {
                Some(&i) => self.entries[i].1 = value,
                None => {
                    self.index.insert(k, self.entries.len());
                    self.entries.push((key, value));
                }
            },
            None => self.entries.push((key, value)),
        }
    }
}

/// Why a pickle could not be interpreted, at which byte offset (of its opcode).
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) offset: usize,
    pub(crate) kind: FaultKind,
}

#[derive(Debug)]
pub(crate) enum FaultKind {
    UnknownOpcode(u8),
    /// The data ended inside an opcode or before `STOP`.
    Truncated,
    /// A global outside the allow-list.
    Forbidden {
        module: String,
        name: String,
    },
    /// Something a torch file may legitimately hold that this reader does not support.
    Unsupported(String),
    /// Anything else that is malformed.
    Invalid(String),
}

/// The result of one pickle: its root object, the containers it refers to, the torch storages
/// referenced through persistent ids (by key), and the offset just past `STOP`.
pub(crate) struct Unpickled {
    pub(crate) root: Value,
    pub(crate) heap: Heap,
    pub(crate) storages: HashMap<Rc<str>, Rc<StorageRef>>,
    pub(crate) end: usize,
}

/// Interprets the pickle that starts at `data[0]`; bytes after its `STOP` are not looked at.
pub(crate) fn unpickle(data: &[u8]) -> Result<Unpickled, Fault> {
    let mut vm = Machine {
        input: Input { data, pos: 0 },
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        heap: Heap::default(),
        storages: HashMap::new(),
    };
    loop {
        let offset = vm.input.pos;
        let opcode = vm.input.byte().map_err(|kind| Fault { offset, kind })?;
        match vm.step(opcode) {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop(root)) => {
                return Ok(Unpickled {
                    root,
                    heap: vm.heap,
                    storages: vm.storages,
                    end: vm.input.pos,
                })
            }
            Err(kind) => return Err(Fault { offset, kind }),
        }
    }
}

enum Flow {
    Continue,
    Stop(Value),
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FaultKind> {
        let end = self.pos.checked_add(n).ok_or(FaultKind::Truncated)?;
        let bytes = self.data.get(self.pos..end).ok_or(FaultKind::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FaultKind> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, FaultKind> {
        Ok(self.array::<1>()?[0])
    }

    fn len_u32(&mut self) -> Result<usize, FaultKind> {
        usize::try_from(u32::from_le_bytes(self.array()?)).map_err(|_| FaultKind::Truncated)
    }

    fn len_u64(&mut self) -> Result<usize, FaultKind> {
        usize::try_from(u64::from_le_bytes(self.array()?)).map_err(|_| FaultKind::Truncated)
    }

    /// A `\n`-terminated UTF-8 line (text opcodes), without the newline.
    fn line(&mut self) -> Result<&'a str, FaultKind> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FaultKind::Truncated)?;
        let line = self.take(n + 1)?;
        std::str::from_utf8(&line[..n])
            .map_err(|_| FaultKind::Invalid("a text argument that is not UTF-8".into()))
    }

    fn utf8(&mut self, n: usize) -> Result<Value, FaultKind> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| FaultKind::Invalid("a string that is not valid UTF-8".into()))?;
        Ok(Value::Str(s.into()))
    }

    fn memo_index(&mut self) -> Result<usize, FaultKind> {
        let line = self.line()?;
        line.trim()
            .parse()
            .map_err(|_| FaultKind::Invalid(format!("memo index {line:?} is not a number")))
    }
}

struct Machine<'a> {
    input: Input<'a>,
    stack: Vec<Value>,
    /// Stack lengths at each pending `MARK`.
    marks: Vec<usize>,
    memo: HashMap<usize, Value>,
    heap: Heap,
    storages: HashMap<Rc<str>, Rc<StorageRef>>,
}

impl Machine<'_> {
    fn step(&mut self, opcode: u8) -> Result<Flow, FaultKind> {
        let input = &mut self.input;
        let value = match opcode {
            op::PROTO => {
                let version = input.byte()?;
                if version > 5 {
                    return Err(FaultKind::Invalid(format!(
                        "pickle protocol {version} (at most 5 exists)"
                    )));
                }
                return Ok(Flow::Continue);
            }
            op::FRAME => {
                // Frames only group opcodes for buffered reading; the whole input is in memory.
                input.take(8)?;
                return Ok(Flow::Continue);
            }
            op::STOP => return self.pop().map(Flow::Stop),
            op::MARK => {
                self.marks.push(self.stack.len());
                return Ok(Flow::Continue);
            }
            op::EMPTY_DICT => self.heap.new_dict(),
            op::EMPTY_LIST => self.heap.new_list(),
            op::EMPTY_TUPLE => self.heap.new_tuple(Vec::new()),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.heap.new_tuple(items)
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let items = self.pop_n(usize::from(opcode - op::TUPLE1 + 1))?;
                self.heap.new_tuple(items)
            }
            op::BININT => Value::Int(i32::from_le_bytes(input.array()?).into()),
            op::BININT1 => Value::Int(input.byte()?.into()),
            op::BININT2 => Value::Int(u16::from_le_bytes(input.array()?).into()),
            op::LONG1 => {
                let n = usize::from(input.byte()?);
                Value::Int(long(input.take(n)?)?)
            }
            op::BINFLOAT => {
                input.take(8)?;
                Value::Float
            }
            op::NONE => Value::None,
            op::NEWTRUE => Value::Bool(true),
            op::NEWFALSE => Value::Bool(false),
            op::SHORT_BINUNICODE | op::SHORT_BINSTRING => {
                let n = usize::from(input.byte()?);
                input.utf8(n)?
            }
            op::BINUNICODE => {
                let n = input.len_u32()?;
                input.utf8(n)?
            }
            op::BINUNICODE8 => {
                let n = input.len_u64()?;
                input.utf8(n)?
            }
            op::BINSTRING => {
                let n = i32::from_le_bytes(input.array()?);
                let n = usize::try_from(n)
                    .map_err(|_| FaultKind::Invalid(format!("negative string length {n}")))?;
                input.utf8(n)?
            }
            op::SHORT_BINBYTES => {
                let n = usize::from(input.byte()?);
                input.take(n)?;
                Value::Bytes
            }
            op::BINBYTES => {
                let n = input.len_u32()?;
                input.take(n)?;
                Value::Bytes
            }
            op::GLOBAL => {
                let module = input.line()?;
                let name = input.line()?;
                torch::global(module, name)?
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (&module, &name) {
                    (Value::Str(module), Value::Str(name)) => torch::global(module, name)?,
                    _ => {
                        return Err(FaultKind::Invalid(format!(
                            "STACK_GLOBAL on {} and {} instead of two strs",
                            module.describe(),
                            name.describe()
                        )))
                    }
                }
            }
            op::PUT | op::BINPUT | op::LONG_BINPUT | op::MEMOIZE => {
                let index = match opcode {
                    op::PUT => input.memo_index()?,
                    op::BINPUT => usize::from(input.byte()?),
                    op::LONG_BINPUT => input.len_u32()?,
                    _ => self.memo.len(),
                };
                let top = self.top()?.clone();
                self.memo.insert(index, top);
                return Ok(Flow::Continue);
            }
            op::GET | op::BINGET | op::LONG_BINGET => {
                let index = match opcode {
                    op::GET => input.memo_index()?,
                    op::BINGET => usize::from(input.byte()?),
                    _ => input.len_u32()?,
                };
                self.memo.get(&index).cloned().ok_or_else(|| {
                    FaultKind::Invalid(format!("memo entry {index} read before it was written"))
                })?
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
                return Ok(Flow::Continue);
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
                return Ok(Flow::Continue);
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
                return Ok(Flow::Continue);
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
                return Ok(Flow::Continue);
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                match (callable, args) {
                    (Value::Global(global), Value::Tuple(args)) => {
                        torch::call(&mut self.heap, global, args)?
                    }
                    (callable, args) => {
                        return Err(FaultKind::Invalid(format!(
                            "REDUCE calls {} with {} (only allow-listed functions with a tuple of \
                             arguments)",
                            callable.describe(),
                            args.describe()
                        )))
                    }
                }
            }
            op::BUILD => {
                let state = self.pop()?;
                match self.top()? {
                    // An OrderedDict's attributes (a state_dict's `_metadata`): not needed.
                    Value::Dict(_) => return Ok(Flow::Continue),
                    other => {
                        return Err(FaultKind::Invalid(format!(
                            "BUILD sets {} as the state of {}",
                            state.describe(),
                            other.describe()
                        )))
                    }
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                torch::persistent_load(&self.heap, &pid, &mut self.storages)?
            }
            other => return Err(FaultKind::UnknownOpcode(other)),
        };
        self.stack.push(value);
        Ok(Flow::Continue)
    }

    /// Stack values below the last `MARK` are out of reach, as in CPython's unpickler.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn top(&self) -> Result<&Value, FaultKind> {
        if self.stack.len() > self.floor() {
            self.stack.last().ok_or_else(underflow)
        } else {
            Err(underflow())
        }
    }

    fn pop(&mut self) -> Result<Value, FaultKind> {
        self.top()?;
        self.stack.pop().ok_or_else(underflow)
    }

    /// The top `n` values, oldest first.
    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, FaultKind> {
        let at = self.stack.len().checked_sub(n).ok_or_else(underflow)?;
        if at < self.floor() {
            return Err(underflow());
        }
        Ok(self.stack.split_off(at))
    }

    /// The values pushed since the last `MARK`, removing the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, FaultKind> {
        let at = self
            .marks
            .pop()
            .ok_or_else(|| FaultKind::Invalid("an opcode needs a MARK but there is none".into()))?;
        Ok(self.stack.split_off(at))
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), FaultKind> {
        match self.top()? {
            &Value::List(id) => {
                self.heap.lists[id.0].extend(items);
                Ok(())
            }
            other => Err(FaultKind::Invalid(format!(
                "APPEND(S) to {} instead of a list",
                other.describe()
            ))),
        }
    }

    /// Sets `items` (key, value, key, value, ...) into the dict on top of the stack.
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), FaultKind> {
        if !items.len().is_multiple_of(2) {
            return Err(FaultKind::Invalid(
                "SETITEMS with an odd number of values".into(),
            ));
        }
        let id = match self.top()? {
            Value::Dict(id) => *id,
            other => {
                return Err(FaultKind::Invalid(format!(
                    "SETITEM(S) on {} instead of a dict",
                    other.describe()
                )))
            }
        };
        let dict = &mut self.heap.dicts[id.0];
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            dict.insert(key, value);
        }
        Ok(())
    }
}

fn underflow() -> FaultKind {
    FaultKind::Invalid("stack underflow".into())
}

/// A `LONG1` payload: little-endian two's complement.
fn long(bytes: &[u8]) -> Result<i128, FaultKind> {
    if bytes.len() > 16 {
        return Err(FaultKind::Invalid(format!(
            "a {}-byte integer (at most 16 supported)",
            bytes.len()
        )));
    }
    let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut wide = [fill; 16];
    wide[..bytes.len()].copy_from_slice(bytes);
    Ok(i128::from_le_bytes(wide))
}

/// Opcode bytes (names as in CPython's `pickletools`).
mod op {
    pub(super) const MARK: u8 = b'(';
    pub(super) const STOP: u8 = b'.';
    pub(super) const BINFLOAT: u8 = b'G';
    pub(super) const BININT: u8 = b'J';
    pub(super) const BININT1: u8 = b'K';
    pub(super) const BININT2: u8 = b'M';
    pub(super) const NONE: u8 = b'N';
    pub(super) const BINPERSID: u8 = b'Q';
    pub(super) const REDUCE: u8 = b'R';
    pub(super) const BINSTRING: u8 = b'T';
    pub(super) const SHORT_BINSTRING: u8 = b'U';
    pub(super) const BINUNICODE: u8 = b'X';
    pub(super) const APPEND: u8 = b'a';
    pub(super) const BUILD: u8 = b'b';
    pub(super) const GLOBAL: u8 = b'c';
    pub(super) const EMPTY_DICT: u8 = b'}';
    pub(super) const APPENDS: u8 = b'e';
    pub(super) const GET: u8 = b'g';
    pub(super) const BINGET: u8 = b'h';
    pub(super) const LONG_BINGET: u8 = b'j';
    pub(super) const EMPTY_LIST: u8 = b']';
    pub(super) const PUT: u8 = b'p';
    pub(super) const BINPUT: u8 = b'q';
    pub(super) const LONG_BINPUT: u8 = b'r';
    pub(super) const SETITEM: u8 = b's';
    pub(super) const TUPLE: u8 = b't';
    pub(super) const EMPTY_TUPLE: u8 = b')';
    pub(super) const SETITEMS: u8 = b'u';
    pub(super) const BINBYTES: u8 = b'B';
    pub(super) const SHORT_BINBYTES: u8 = b'C';
    pub(super) const PROTO: u8 = 0x80;
    pub(super) const TUPLE1: u8 = 0x85;
    pub(super) const TUPLE2: u8 = 0x86;
    pub(super) const TUPLE3: u8 = 0x87;
    pub(super) const NEWTRUE: u8 = 0x88;
    pub(super) const NEWFALSE: u8 = 0x89;
    pub(super) const LONG1: u8 = 0x8a;
    pub(super) const SHORT_BINUNICODE: u8 = 0x8c;
    pub(super) const BINUNICODE8: u8 = 0x8d;
    pub(super) const STACK_GLOBAL: u8 = 0x93;
    pub(super) const MEMOIZE: u8 = 0x94;
    pub(super) const FRAME: u8 = 0x95;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Result<Unpickled, Fault> {
        unpickle(data)
    }

    #[test]
    fn long1_is_twos_complement() {
        assert_eq!(long(&[]).unwrap(), 0);
        assert_eq!(long(&[0xff]).unwrap(), -1);
        assert_eq!(long(&[0x80, 0x00]).unwrap(), 128);
        assert_eq!(
            long(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]).unwrap(),
            0x1950a86a20f9469cfc6c
        );
        assert!(long(&[0; 17]).is_err());
    }

    #[test]
    fn memo_shares_mutable_containers() {
        // d = {}; l = [d, d]; d['k'] = 1; (l, d): both list items see the key.
        let data = b"\x80\x02]q\x01(}q\x00h\x00eh\x00X\x01\x00\x00\x00kK\x01s\x86.";
        let out = run(data).unwrap();
        let Value::Tuple(t) = out.root else {
            panic!("root is not a tuple")
        };
        let [Value::List(list), Value::Dict(d)] = out.heap.tuple(t) else {
            panic!("unexpected tuple")
        };
        assert_eq!(out.heap.dict(*d).entries().len(), 1);
        for item in out.heap.list(*list) {
            let Value::Dict(id) = item else {
                panic!("not a dict")
            };
            assert!(matches!(
                out.heap.dict(*id).get_str("k"),
                Some(Value::Int(1))
            ));
        }
    }

    #[test]
    fn every_value_opcode() {
        let mut data =
            b"\x80\x04\x95\x40\x00\x00\x00\x00\x00\x00\x00]p0\n(g0\nr\x05\x00\x00\x00".to_vec();
        data.extend_from_slice(b"j\x05\x00\x00\x00\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi");
        data.extend_from_slice(b"T\x02\x00\x00\x00abU\x01cB\x01\x00\x00\x00\x00C\x00");
        data.extend_from_slice(b"J\xff\xff\xff\xffG\x3f\xf0\x00\x00\x00\x00\x00\x00N\x94e.");
        let out = run(&data).unwrap();
        assert_eq!(out.end, data.len());
        let Value::List(id) = out.root else {
            panic!("not a list")
        };
        let kinds: Vec<_> = out.heap.list(id).iter().map(Value::describe).collect();
        assert_eq!(
            kinds,
            [
                "a list",
                "a list",
                "a str",
                "a str",
                "a str",
                "a bytes object",
                "a bytes object",
                "an int",
                "a float",
                "None"
            ]
        );
        let strs: Vec<_> = out.heap.list(id)[2..5]
            .iter()
            .map(|v| match v {
                Value::Str(s) => s.to_string(),
                _ => panic!("not a str"),
            })
            .collect();
        assert_eq!(strs, ["hi", "ab", "c"]);
        assert!(matches!(out.heap.list(id)[7], Value::Int(-1)));
    }

    #[test]
    fn setitem_replaces_in_place() {
        let data = b"}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.";
        let out = run(data).unwrap();
        let Value::Dict(d) = out.root else {
            panic!("not a dict")
        };
        let entries = out.heap.dict(d).entries();
        assert_eq!(entries.len(), 2);
        assert!(
            matches!((&entries[0].0, &entries[0].1), (Value::Str(k), Value::Int(3)) if &**k == "a")
        );
    }

    #[test]
    fn malformed_stacks_are_errors() {
        for data in [
            &b"."[..],
            b"(.",
            b"K\x01(u.",
            b"]K\x01K\x02s.",
            b"h\x05.",
            b"K\x01(\x85.",
            b"]K\x01(a.",
        ] {
            assert!(run(data).is_err(), "{data:?}");
        }
        assert!(matches!(run(b"").err().unwrap().kind, FaultKind::Truncated));
        let pop = run(b"K\x010.").err().unwrap();
        assert!(matches!(pop.kind, FaultKind::UnknownOpcode(b'0')) && pop.offset == 2);
        assert!(matches!(
            run(b"X\xff\xff\xff\xff").err().unwrap().kind,
            FaultKind::Truncated
        ));
    }
}
