//! A pickle interpreter that executes nothing.
//!
//! It runs the opcode stream of protocols 0 to 5 over an arena of nodes
//! (see [`crate::arena`]). Globals are never imported: calling one makes an
//! [`Object`](super::value::Object) holding its name and arguments, except
//! for the few torch and builtin callables listed in `call`, whose meaning
//! is data (tensors, ordered dicts, sets, sizes). Every length read from the
//! input is checked against what is left of it before anything is allocated.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::arena::{Arena, Id, Node};
use super::error::ErrorKind;
use super::tensor::View;
use super::value::Value;

pub use super::tensor::{DType, RawTensor};

const HIGHEST_PROTOCOL: u8 = 5;

/// Opcodes, named as in CPython's `pickletools`.
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    // Protocol 2.
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    // Protocol 3.
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    // Protocol 4.
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    // Protocol 5.
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// Where the bytes of the storages named by persistent ids come from.
pub trait StorageSource {
    /// The whole storage `key` (`FOLDER/data/<key>` in a torch.save zip).
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>, ErrorKind>;
    /// Whether the storages hold big-endian elements.
    fn big_endian(&self) -> bool;
    /// How many bytes all tensors materialized so far may take together,
    /// given the storages loaded so far (a zero stride lets a tiny storage
    /// describe a huge tensor).
    fn tensor_budget(&self) -> usize;
}

/// A source without storages, for pickles that hold no tensors.
pub struct NoStorages;

impl StorageSource for NoStorages {
    fn storage(&mut self, key: &str) -> Result<Rc<[u8]>, ErrorKind> {
        Err(ErrorKind::MissingStorage(format!("data/{key}")))
    }
    fn big_endian(&self) -> bool {
        false
    }
    fn tensor_budget(&self) -> usize {
        0
    }
}

/// Runs the pickle in `data` and returns the value it produced.
pub fn unpickle(data: &[u8], storages: &mut dyn StorageSource) -> Result<Value, ErrorKind> {
    let mut machine = Machine {
        input: data,
        pos: 0,
        op_pos: 0,
        graph: Arena::default(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages,
        tensor_bytes_used: 0,
        copied: 0,
    };
    let root = machine.run()?;
    machine.graph.to_value(root)
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    /// Start of the opcode being run, for error messages.
    op_pos: usize,
    graph: Arena,
    stack: Vec<Id>,
    /// Stack lengths at each MARK still open.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    storages: &'a mut dyn StorageSource,
    tensor_bytes_used: usize,
    /// Ids copied between containers so far (see `charge_copy`).
    copied: usize,
}

/// How a text-mode or binary string opcode's bytes become a value.
enum Text {
    Utf8,
    /// Python 2 `str`: decoded as UTF-8 where valid, else kept as bytes.
    Py2Str,
    Bytes,
}

impl Machine<'_> {
    fn run(&mut self) -> Result<Id, ErrorKind> {
        loop {
            self.op_pos = self.pos;
            let Some(&op) = self.input.get(self.pos) else {
                return Err(self.err("the pickle ends before its STOP opcode"));
            };
            self.pos += 1;
            if op == op::STOP {
                return self.pop();
            }
            self.step(op)?;
        }
    }

    /// Runs one opcode; each group below returns false for opcodes that are
    /// not its own.
    fn step(&mut self, op: u8) -> Result<(), ErrorKind> {
        let known = self.control(op)? || self.scalar(op)? || self.text(op)? || self.container(op)? || self.memo_op(op)? || self.object(op)?;
        if !known {
            return Err(ErrorKind::UnknownOpcode { op, pos: self.op_pos });
        }
        Ok(())
    }

    fn control(&mut self, op: u8) -> Result<bool, ErrorKind> {
        match op {
            op::PROTO => self.proto()?,
            op::FRAME => {
                self.take(8)?; // only a read-ahead hint
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => self.pop_or_mark()?,
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.top()?;
                self.stack.push(top);
            }
            op::PERSID => return Err(self.err("text persistent ids are not used by torch.save")),
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(self.err("extension registry codes are not supported"));
            }
            op::NEXT_BUFFER => return Err(self.err("out-of-band buffers are not supported")),
            op::READONLY_BUFFER => {
                self.top()?; // no effect on the data
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn scalar(&mut self, op: u8) -> Result<bool, ErrorKind> {
        let node = match op {
            op::NONE => Node::None,
            op::NEWTRUE => Node::Bool(true),
            op::NEWFALSE => Node::Bool(false),
            op::BININT => Node::Int(i32::from_le_bytes(self.array()?).into()),
            op::BININT1 => Node::Int(self.byte()?.into()),
            op::BININT2 => Node::Int(u16::from_le_bytes(self.array()?).into()),
            op::LONG1 => {
                let n = usize::from(self.byte()?);
                self.long(n)?
            }
            op::LONG4 => {
                let n = self.length_i32()?;
                self.long(n)?
            }
            op::BINFLOAT => Node::Float(f64::from_be_bytes(self.array()?)),
            op::INT => self.text_int()?,
            op::LONG => {
                let line = self.text_line_utf8()?;
                self.parse_int(line.strip_suffix('L').unwrap_or(&line))?
            }
            op::FLOAT => self.text_float()?,
            _ => return Ok(false),
        };
        self.push(node);
        Ok(true)
    }

    fn text(&mut self, op: u8) -> Result<bool, ErrorKind> {
        let (len, text) = match op {
            op::BINUNICODE => (self.length_u32()?, Text::Utf8),
            op::SHORT_BINUNICODE => (usize::from(self.byte()?), Text::Utf8),
            op::BINUNICODE8 => (self.length_u64()?, Text::Utf8),
            op::BINSTRING => (self.length_i32()?, Text::Py2Str),
            op::SHORT_BINSTRING => (usize::from(self.byte()?), Text::Py2Str),
            op::BINBYTES => (self.length_u32()?, Text::Bytes),
            op::SHORT_BINBYTES => (usize::from(self.byte()?), Text::Bytes),
            op::BINBYTES8 | op::BYTEARRAY8 => (self.length_u64()?, Text::Bytes),
            op::STRING | op::UNICODE => {
                let node = match op {
                    op::STRING => self.text_string()?,
                    _ => self.text_unicode()?,
                };
                self.push(node);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let bytes = self.take(len)?.to_vec();
        let node = self.text_node(bytes, text)?;
        self.push(node);
        Ok(true)
    }

    fn container(&mut self, op: u8) -> Result<bool, ErrorKind> {
        match op {
            op::EMPTY_TUPLE => self.push(Node::Tuple(Vec::new())),
            op::EMPTY_LIST => self.push(Node::List(Vec::new())),
            op::EMPTY_DICT => self.push(Node::Dict(Vec::new())),
            op::EMPTY_SET => self.push(Node::Set(Vec::new())),
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push(Node::Tuple(items));
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let items = self.pop_n(usize::from(op - op::TUPLE1 + 1))?;
                self.push(Node::Tuple(items));
            }
            op::LIST => {
                let items = self.pop_mark()?;
                self.push(Node::List(items));
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let entries = self.pairs(items)?;
                self.push(Node::Dict(entries));
            }
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.push(Node::Set(items));
            }
            op::APPEND => {
                let item = self.pop()?;
                self.extend_list(vec![item])?;
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.extend_list(items)?;
            }
            op::SETITEM => {
                let items = self.pop_n(2)?;
                let entries = self.pairs(items)?;
                self.extend_dict(entries)?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let entries = self.pairs(items)?;
                self.extend_dict(entries)?;
            }
            op::ADDITEMS => {
                let items = self.pop_mark()?;
                self.extend_set(items)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn memo_op(&mut self, op: u8) -> Result<bool, ErrorKind> {
        match op {
            op::PUT => {
                let key = self.text_line_u64()?;
                self.memo_put(key)?;
            }
            op::BINPUT => {
                let key = self.byte()?;
                self.memo_put(key.into())?;
            }
            op::LONG_BINPUT => {
                let key = u32::from_le_bytes(self.array()?);
                self.memo_put(key.into())?;
            }
            op::MEMOIZE => self.memo_put(self.memo.len() as u64)?,
            op::GET => {
                let key = self.text_line_u64()?;
                self.memo_get(key)?;
            }
            op::BINGET => {
                let key = self.byte()?;
                self.memo_get(key.into())?;
            }
            op::LONG_BINGET => {
                let key = u32::from_le_bytes(self.array()?);
                self.memo_get(key.into())?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn object(&mut self, op: u8) -> Result<bool, ErrorKind> {
        match op {
            op::GLOBAL => {
                let module = self.text_line_utf8()?;
                let name = self.text_line_utf8()?;
                self.push(Node::Global(global_name(&module, &name)));
            }
            op::STACK_GLOBAL => {
                let name = self.pop_str()?;
                let module = self.pop_str()?;
                self.push(Node::Global(global_name(&module, &name)));
            }
            op::REDUCE | op::NEWOBJ => {
                let args = self.pop_args()?;
                let callable = self.pop()?;
                self.call_and_push(callable, args)?;
            }
            op::NEWOBJ_EX => {
                self.pop()?; // keyword arguments: not needed for data
                let args = self.pop_args()?;
                let class = self.pop()?;
                self.call_and_push(class, args)?;
            }
            op::INST => {
                let module = self.text_line_utf8()?;
                let name = self.text_line_utf8()?;
                let items = self.pop_mark()?;
                let args = self.graph.add(Node::Tuple(items));
                let class = self.graph.add(Node::Global(global_name(&module, &name)));
                self.call_and_push(class, args)?;
            }
            op::OBJ => {
                let mut items = self.pop_mark()?.into_iter();
                let class = items.next().ok_or_else(|| self.err("OBJ without a class"))?;
                let args = self.graph.add(Node::Tuple(items.collect()));
                self.call_and_push(class, args)?;
            }
            op::BUILD => self.build()?,
            op::BINPERSID => {
                let pid = self.pop()?;
                self.persistent_load(pid)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn call_and_push(&mut self, callable: Id, args: Id) -> Result<(), ErrorKind> {
        let id = self.call(callable, args)?;
        self.stack.push(id);
        Ok(())
    }

    // ----- errors and raw input -----

    fn err(&self, msg: impl Into<String>) -> ErrorKind {
        ErrorKind::Pickle { pos: self.op_pos, msg: msg.into() }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], ErrorKind> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.input.len());
        let Some(end) = end else {
            return Err(self.err(format!("needs {n} bytes but only {} are left", self.input.len().saturating_sub(self.pos))));
        };
        let bytes = self.input.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ErrorKind> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, ErrorKind> {
        Ok(self.array::<1>()?[0])
    }

    /// A length field; `take` later checks it against the input left.
    fn length_i32(&mut self) -> Result<usize, ErrorKind> {
        let n = i32::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }

    fn length_u32(&mut self) -> Result<usize, ErrorKind> {
        let n = u32::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }

    fn length_u64(&mut self) -> Result<usize, ErrorKind> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} is too large")))
    }

    /// The bytes up to the next newline (text-mode opcodes).
    fn line(&mut self) -> Result<&[u8], ErrorKind> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("unterminated text argument"));
        };
        let line = self.take(len + 1)?;
        Ok(line.get(..len).unwrap_or_default())
    }

    fn text_line_utf8(&mut self) -> Result<String, ErrorKind> {
        let line = self.line()?.to_vec();
        String::from_utf8(line).map_err(|_| self.err("invalid UTF-8 in a text argument"))
    }

    fn text_line_u64(&mut self) -> Result<u64, ErrorKind> {
        let line = self.text_line_utf8()?;
        line.trim().parse().map_err(|_| self.err(format!("bad memo index {line:?}")))
    }

    // ----- the stack -----

    fn push(&mut self, node: Node) {
        let id = self.graph.add(node);
        self.stack.push(id);
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Id, ErrorKind> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Result<Id, ErrorKind> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().copied().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Id>, ErrorKind> {
        let len = self.stack.len();
        if len < self.floor() + n {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.split_off(len - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, ErrorKind> {
        let mark = self.marks.pop().ok_or_else(|| self.err("no MARK to pop to"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    /// POP: like Python, an empty frame above a MARK drops the mark.
    fn pop_or_mark(&mut self) -> Result<(), ErrorKind> {
        if self.stack.len() > self.floor() {
            self.stack.pop();
            Ok(())
        } else {
            self.pop_mark().map(|_| ())
        }
    }

    fn pop_str(&mut self) -> Result<String, ErrorKind> {
        let id = self.pop()?;
        match self.graph.get(id) {
            Node::Str(s) => Ok(s.clone()),
            other => Err(self.err(format!("expected a str, got a {}", other.kind()))),
        }
    }

    /// The argument tuple of a call, by id: a call that becomes an Object
    /// keeps it without copying (a pickle can call with one big tuple many
    /// times).
    fn pop_args(&mut self) -> Result<Id, ErrorKind> {
        let id = self.pop()?;
        match self.graph.get(id) {
            Node::Tuple(_) => Ok(id),
            other => Err(self.err(format!("expected an argument tuple, got a {}", other.kind()))),
        }
    }

    /// The first `n` arguments of a call to an allow-listed callable.
    fn first_args(&self, args: Id, n: usize) -> Vec<Id> {
        match self.graph.get(args) {
            Node::Tuple(items) => items.iter().take(n).copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Accounts for ids copied from one container into another; legitimate
    /// checkpoints copy next to nothing, a hostile pickle could copy one big
    /// list over and over.
    fn charge_copy(&mut self, n: usize) -> Result<(), ErrorKind> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > self.input.len().saturating_mul(4).saturating_add(1 << 20) {
            return Err(self.err("copies containers too often"));
        }
        Ok(())
    }

    fn pairs(&self, items: Vec<Id>) -> Result<Vec<(Id, Id)>, ErrorKind> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|p| (p[0], p[1])).collect())
    }

    // ----- values -----

    fn proto(&mut self) -> Result<(), ErrorKind> {
        let version = self.byte()?;
        if version > HIGHEST_PROTOCOL {
            return Err(self.err(format!("unsupported pickle protocol {version}")));
        }
        Ok(())
    }

    /// LONG1 / LONG4: little-endian two's complement of `n` bytes.
    fn long(&mut self, n: usize) -> Result<Node, ErrorKind> {
        let bytes = self.take(n)?.to_vec();
        Ok(match long_to_i64(&bytes) {
            Some(v) => Node::Int(v),
            None => Node::BigInt(minimal_long(bytes)),
        })
    }

    fn text_node(&self, bytes: Vec<u8>, text: Text) -> Result<Node, ErrorKind> {
        Ok(match text {
            Text::Bytes => Node::Bytes(bytes),
            Text::Utf8 => Node::Str(String::from_utf8(bytes).map_err(|_| self.err("invalid UTF-8 in a string"))?),
            Text::Py2Str => match String::from_utf8(bytes) {
                Ok(s) => Node::Str(s),
                Err(e) => Node::Bytes(e.into_bytes()),
            },
        })
    }

    /// INT: decimal text; protocol 0 spells booleans `01` and `00`.
    fn text_int(&mut self) -> Result<Node, ErrorKind> {
        let line = self.text_line_utf8()?;
        match line.as_str() {
            "01" => Ok(Node::Bool(true)),
            "00" => Ok(Node::Bool(false)),
            s => self.parse_int(s),
        }
    }

    fn parse_int(&self, s: &str) -> Result<Node, ErrorKind> {
        let s = s.trim();
        if let Ok(v) = s.parse() {
            return Ok(Node::Int(v));
        }
        decimal_to_long(s).map(Node::BigInt).ok_or_else(|| self.err(format!("bad integer {:?}", truncate(s, 40))))
    }

    fn text_float(&mut self) -> Result<Node, ErrorKind> {
        let line = self.text_line_utf8()?;
        let v = line.trim().parse().map_err(|_| self.err(format!("bad float {:?}", truncate(&line, 40))))?;
        Ok(Node::Float(v))
    }

    /// STRING: a quoted Python 2 `repr` of a str.
    fn text_string(&mut self) -> Result<Node, ErrorKind> {
        let line = self.line()?.to_vec();
        let inner = unquote(&line).ok_or_else(|| self.err("STRING argument is not quoted"))?;
        let bytes = unescape_bytes(inner).ok_or_else(|| self.err("bad escape in STRING"))?;
        self.text_node(bytes, Text::Py2Str)
    }

    /// UNICODE: raw-unicode-escape text.
    fn text_unicode(&mut self) -> Result<Node, ErrorKind> {
        let line = self.line()?.to_vec();
        let s = raw_unicode_unescape(&line).ok_or_else(|| self.err("bad escape in UNICODE"))?;
        Ok(Node::Str(s))
    }

    // ----- containers -----

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), ErrorKind> {
        let target = self.top()?;
        if let Some(Node::List(list)) = self.graph.get_mut(target) {
            list.extend(items);
            return Ok(());
        }
        Err(self.wrong_target("APPEND", target))
    }

    fn extend_dict(&mut self, entries: Vec<(Id, Id)>) -> Result<(), ErrorKind> {
        let target = self.top()?;
        if let Some(Node::Dict(dict)) = self.graph.get_mut(target) {
            dict.extend(entries);
            return Ok(());
        }
        Err(self.wrong_target("SETITEM", target))
    }

    fn extend_set(&mut self, items: Vec<Id>) -> Result<(), ErrorKind> {
        let target = self.top()?;
        if let Some(Node::Set(set)) = self.graph.get_mut(target) {
            set.extend(items);
            return Ok(());
        }
        Err(self.wrong_target("ADDITEMS", target))
    }

    fn wrong_target(&self, op: &str, target: Id) -> ErrorKind {
        self.err(format!("{op} on a {}", self.graph.get(target).kind()))
    }

    fn memo_put(&mut self, key: u64) -> Result<(), ErrorKind> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), ErrorKind> {
        let id = *self.memo.get(&key).ok_or_else(|| self.err(format!("memo entry {key} is not defined")))?;
        self.stack.push(id);
        Ok(())
    }

    /// BUILD: give an object its state. Python merges a state dict into the
    /// instance `__dict__`; other targets (e.g. an OrderedDict's attributes)
    /// carry nothing the reader needs and ignore it.
    fn build(&mut self) -> Result<(), ErrorKind> {
        let state = self.pop()?;
        let target = self.top()?;
        let old = match self.graph.get(target) {
            Node::Object { state: old, .. } => *old,
            _ => return Ok(()),
        };
        let merged = match old.map(|o| (self.graph.get(o), self.graph.get(state))) {
            Some((Node::Dict(a), Node::Dict(b))) => {
                let entries: Vec<_> = a.iter().chain(b).copied().collect();
                self.charge_copy(entries.len())?;
                self.graph.add(Node::Dict(entries))
            }
            _ => state,
        };
        if let Some(Node::Object { state: slot, .. }) = self.graph.get_mut(target) {
            *slot = Some(merged);
        }
        Ok(())
    }

    // ----- calls: the allow-list -----

    /// REDUCE / NEWOBJ / INST / OBJ. Nothing is imported; the allow-listed
    /// names build data, anything else becomes an opaque object.
    fn call(&mut self, callable: Id, args: Id) -> Result<Id, ErrorKind> {
        let name = match self.graph.get(callable) {
            Node::Global(name) => name.clone(),
            other => return Err(self.err(format!("call of a {}, not a global", other.kind()))),
        };
        let node = match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                return self.rebuild_tensor(&self.first_args(args, 4));
            }
            // torch writes v3 only for dtypes added after the typed storages
            // (uint16, float8, ...), none of which a YOLO model holds.
            "torch._utils._rebuild_tensor_v3" => {
                let dtype = match self.first_args(args, 7).get(6).map(|&d| self.graph.get(d)) {
                    Some(Node::Global(name)) => truncate(name, 40),
                    _ => "?".into(),
                };
                return Err(ErrorKind::Tensor(format!("dtype {dtype} is not supported")));
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                return self.rebuild_parameter(&self.first_args(args, 1));
            }
            "torch._tensor._rebuild_from_type_v2" => {
                return self.rebuild_from_type(&self.first_args(args, 3));
            }
            "collections.OrderedDict" | "builtins.dict" => Node::Dict(self.dict_arg(args)?),
            "builtins.set" | "builtins.frozenset" => Node::Set(self.seq_arg(args)?),
            "builtins.list" => Node::List(self.seq_arg(args)?),
            "torch.Size" | "builtins.tuple" => Node::Tuple(self.seq_arg(args)?),
            // Protocols 0-2 spell `bytes` as `_codecs.encode(text, 'latin1')`.
            "_codecs.encode" => self.latin1_bytes(args)?,
            // Protocol 0/1 spelling of `object.__new__(cls)`.
            "copyreg._reconstructor" => {
                let first = self.first_args(args, 1);
                let class = match first.first().map(|&a| self.graph.get(a)) {
                    Some(Node::Global(class)) => class.clone(),
                    _ => return Err(self.err("_reconstructor without a class")),
                };
                let args = self.graph.add(Node::Tuple(Vec::new()));
                Node::Object { class, args, state: None }
            }
            _ => Node::Object { class: name, args, state: None },
        };
        Ok(self.graph.add(node))
    }

    fn latin1_bytes(&self, args: Id) -> Result<Node, ErrorKind> {
        let first = self.first_args(args, 2);
        let (text, encoding) = match *first.as_slice() {
            [t] => (self.graph.get(t), "latin1"),
            [t, e] => match self.graph.get(e) {
                Node::Str(e) => (self.graph.get(t), e.as_str()),
                _ => return Err(self.err("_codecs.encode with a non-str encoding")),
            },
            _ => return Err(self.err("_codecs.encode needs (text, encoding)")),
        };
        let Node::Str(text) = text else {
            return Err(self.err("_codecs.encode of a non-str"));
        };
        if !matches!(encoding, "latin1" | "latin-1" | "iso-8859-1") {
            return Err(self.err(format!("_codecs.encode to {}", truncate(encoding, 20))));
        }
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .map(Node::Bytes)
            .ok_or_else(|| self.err("_codecs.encode: text is not latin-1"))
    }

    /// A copy of the items of the optional single iterable argument
    /// (`set([..])`).
    fn seq_arg(&mut self, args: Id) -> Result<Vec<Id>, ErrorKind> {
        let items = match self.first_args(args, 1).first().map(|&a| self.graph.get(a)) {
            None => Vec::new(),
            Some(Node::List(v) | Node::Tuple(v) | Node::Set(v)) => v.clone(),
            Some(other) => return Err(self.err(format!("expected a sequence argument, got a {}", other.kind()))),
        };
        self.charge_copy(items.len())?;
        Ok(items)
    }

    /// The entries of `OrderedDict()`, `OrderedDict(d)` or
    /// `OrderedDict([(k, v), ...])`.
    fn dict_arg(&mut self, args: Id) -> Result<Vec<(Id, Id)>, ErrorKind> {
        let first = self.first_args(args, 1);
        if let Some(Node::Dict(entries)) = first.first().map(|&a| self.graph.get(a)) {
            let entries = entries.clone();
            self.charge_copy(entries.len())?;
            return Ok(entries);
        }
        let items = self.seq_arg(args)?;
        items
            .iter()
            .map(|&item| match self.graph.get(item) {
                Node::Tuple(p) | Node::List(p) => match p.as_slice() {
                    &[k, v] => Ok((k, v)),
                    _ => Err(self.err("dict items must be pairs")),
                },
                _ => Err(self.err("dict items must be pairs")),
            })
            .collect()
    }

    /// `_rebuild_parameter(data, requires_grad, hooks[, state])`: the data.
    fn rebuild_parameter(&mut self, args: &[Id]) -> Result<Id, ErrorKind> {
        match args.first() {
            Some(&data) if matches!(self.graph.get(data), Node::Tensor(_)) => Ok(data),
            _ => Err(self.err("_rebuild_parameter without a tensor")),
        }
    }

    /// `_rebuild_from_type_v2(func, type, args, state)`: a tensor subclass
    /// or a tensor with Python attributes; only `func(*args)` matters.
    fn rebuild_from_type(&mut self, args: &[Id]) -> Result<Id, ErrorKind> {
        let &[func, _, inner] = args else {
            return Err(self.err("_rebuild_from_type_v2 needs (func, type, args, state)"));
        };
        let allowed = matches!(self.graph.get(func),
            Node::Global(n) if n == "torch._utils._rebuild_tensor_v2" || n == "torch._utils._rebuild_parameter");
        if !allowed {
            return Err(self.err("_rebuild_from_type_v2 of an unsupported function"));
        }
        if !matches!(self.graph.get(inner), Node::Tuple(_)) {
            return Err(self.err("_rebuild_from_type_v2 without an argument tuple"));
        }
        self.call(func, inner)
    }

    /// BINPERSID: `('storage', StorageType, key, location, numel)`.
    fn persistent_load(&mut self, pid: Id) -> Result<(), ErrorKind> {
        let bad = || self.err("unsupported persistent id (expected ('storage', type, key, location, numel))");
        let Node::Tuple(parts) = self.graph.get(pid) else {
            return Err(bad());
        };
        let [tag, ty, key, _location, numel] = parts.as_slice() else {
            return Err(bad());
        };
        if !matches!(self.graph.get(*tag), Node::Str(s) if s == "storage") {
            return Err(bad());
        }
        let dtype = match self.graph.get(*ty) {
            Node::Global(name) => DType::from_torch_name(name).ok_or_else(|| self.err(format!("unknown storage type {name}")))?,
            _ => return Err(bad()),
        };
        let key = match self.graph.get(*key) {
            Node::Str(s) => s.clone(),
            Node::Int(i) => i.to_string(),
            _ => return Err(bad()),
        };
        let numel = match self.graph.get(*numel) {
            Node::Int(n) => usize::try_from(*n).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        self.push(Node::Storage { dtype, key, numel });
        Ok(())
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`: copies the
    /// view out of the storage bytes now.
    fn rebuild_tensor(&mut self, args: &[Id]) -> Result<Id, ErrorKind> {
        let &[storage, offset, size, stride] = args else {
            return Err(self.err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)"));
        };
        let (dtype, key, numel) = match self.graph.get(storage) {
            Node::Storage { dtype, key, numel } => (*dtype, key.clone(), *numel),
            other => return Err(self.err(format!("tensor over a {}, not a storage", other.kind()))),
        };
        let offset = self.usize_arg(offset, "offset")?;
        let shape = self.usize_list(size, "size")?;
        let stride = self.usize_list(stride, "stride")?;
        let bytes = self.storages.storage(&key)?;
        let declared = numel
            .checked_mul(dtype.size())
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| ErrorKind::Tensor(format!("storage 'data/{key}' holds {} bytes, fewer than {numel} {dtype:?} elements", bytes.len())))?;
        let view =
            View { dtype, storage: bytes.get(..declared).unwrap_or_default(), offset, shape: &shape, stride: &stride, big_endian: self.storages.big_endian() };
        let budget = self.storages.tensor_budget();
        let tensor = view.materialize(budget.saturating_sub(self.tensor_bytes_used))?;
        self.tensor_bytes_used += tensor.data.len();
        Ok(self.graph.add(Node::Tensor(Arc::new(tensor))))
    }

    fn usize_arg(&self, id: Id, what: &str) -> Result<usize, ErrorKind> {
        match self.graph.get(id) {
            Node::Int(i) => usize::try_from(*i).map_err(|_| self.err(format!("negative tensor {what} {i}"))),
            other => Err(self.err(format!("tensor {what} is a {}, not an int", other.kind()))),
        }
    }

    fn usize_list(&self, id: Id, what: &str) -> Result<Vec<usize>, ErrorKind> {
        match self.graph.get(id) {
            Node::Tuple(items) | Node::List(items) => items.iter().map(|&i| self.usize_arg(i, what)).collect(),
            other => Err(self.err(format!("tensor {what} is a {}, not a tuple", other.kind()))),
        }
    }
}

/// `module.name`, with the Python 2 module names torch still writes mapped
/// to their Python 3 names.
fn global_name(module: &str, name: &str) -> String {
    let module = match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        m => m,
    };
    format!("{module}.{name}")
}

/// Python refuses to parse integers longer than this many digits (its
/// `sys.int_info.str_digits_check_threshold`); the conversion is quadratic.
const MAX_DECIMAL_DIGITS: usize = 4300;

/// Decimal text to little-endian two's complement bytes.
fn decimal_to_long(s: &str) -> Option<Vec<u8>> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !valid || digits.len() > MAX_DECIMAL_DIGITS {
        return None;
    }
    let mut bytes: Vec<u8> = Vec::new();
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in bytes.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            bytes.push(carry as u8);
            carry >>= 8;
        }
    }
    bytes.push(0); // room for the sign bit
    if negative {
        let mut carry = 1u16;
        for byte in bytes.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = v as u8;
            carry = v >> 8;
        }
    }
    Some(minimal_long(bytes))
}

/// Drops redundant sign-extension bytes, so equal integers compare equal
/// whichever opcode wrote them.
fn minimal_long(mut bytes: Vec<u8>) -> Vec<u8> {
    while let [.., prev, last] = bytes[..] {
        let redundant = (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0);
        if !redundant {
            break;
        }
        bytes.pop();
    }
    bytes
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Little-endian two's complement, if it fits in an i64.
fn long_to_i64(bytes: &[u8]) -> Option<i64> {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    let (low, high) = bytes.split_at(bytes.len().min(8));
    if high.iter().any(|&b| b != fill) {
        return None;
    }
    let mut buf = [fill; 8];
    buf[..low.len()].copy_from_slice(low);
    let v = i64::from_le_bytes(buf);
    // The sign of the truncated value must match the full one.
    (v.is_negative() == negative).then_some(v)
}

fn unquote(line: &[u8]) -> Option<&[u8]> {
    let (&first, rest) = line.split_first()?;
    let (&last, inner) = rest.split_last()?;
    (first == last && (first == b'\'' || first == b'"')).then_some(inner)
}

/// Python 2 string-literal escapes.
fn unescape_bytes(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter().copied().peekable();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = it.next()?;
        out.push(match e {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'x' => {
                let hi = hex_digit(it.next()?)?;
                let lo = hex_digit(it.next()?)?;
                hi * 16 + lo
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match it.peek() {
                        Some(&d @ b'0'..=b'7') => {
                            it.next();
                            v = v * 8 + u32::from(d - b'0');
                        }
                        _ => break,
                    }
                }
                u8::try_from(v).ok()?
            }
            other => other, // \\, \', \" and unknown escapes keep the char
        });
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// raw-unicode-escape: Latin-1 bytes, except `\uXXXX` and `\UXXXXXXXX`.
fn raw_unicode_unescape(s: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        let digits = match (c, s.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if digits == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(s.get(i + 2..i + 2 + digits)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
        i += 2 + digits;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, ErrorKind> {
        unpickle(bytes, &mut NoStorages)
    }

    #[test]
    fn memoized_dict_is_filled_after_being_shared() {
        // d = {}; [d, d] with d filled by SETITEMS after both references.
        let p = b"\x80\x02}q\x00]q\x01(h\x00h\x00eh\x00(X\x01\x00\x00\x00aK\x01u0.";
        let v = run(p).unwrap();
        let want = Value::Dict(vec![(Value::Str("a".into()), Value::Int(1))]);
        assert_eq!(v, Value::List(vec![want.clone(), want]));
    }

    #[test]
    fn build_fills_a_memoized_object() {
        // obj = Foo(); memo; BUILD {'x': 2}; result (obj, memo[0])
        let p = b"\x80\x02cmod\nFoo\nq\x00)\x81q\x01}X\x01\x00\x00\x00xK\x02sbh\x01\x86.";
        let v = run(p).unwrap();
        let Value::Tuple(items) = v else { panic!("{v:?}") };
        let obj = items[1].as_object().unwrap();
        assert_eq!(obj.class, "mod.Foo");
        assert_eq!(obj.attr("x"), Some(&Value::Int(2)));
        assert_eq!(items[0], items[1]);
    }

    #[test]
    fn cycles_and_bad_bytes_are_errors() {
        // l = []; l.append(l)
        assert!(run(b"\x80\x02]q\x00h\x00a.").is_err());
        assert!(matches!(run(b"\x80\x02\xff."), Err(ErrorKind::UnknownOpcode { op: 0xff, pos: 2 })));
        assert!(run(b"\x80\x02X\xff\xff\xff\xff.").is_err());
        assert!(run(b"").is_err());
        assert!(run(b"\x80\x02(").is_err());
        assert!(run(b"0").is_err());
    }

    #[test]
    fn longs_and_text_opcodes() {
        assert_eq!(long_to_i64(&[0xff]), Some(-1));
        assert_eq!(long_to_i64(&[0x80, 0x00]), Some(128));
        assert_eq!(long_to_i64(&[0; 9]), Some(0));
        assert_eq!(long_to_i64(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0]), None);
        assert_eq!(decimal_to_long("-1"), Some(vec![0xff]));
        assert_eq!(decimal_to_long("256"), Some(vec![0, 1]));
        assert_eq!(decimal_to_long("128"), Some(vec![0x80, 0]));
        let big = decimal_to_long("-1180591620717411303424").unwrap();
        assert_eq!(big, [0, 0, 0, 0, 0, 0, 0, 0, 0xc0]);
        assert_eq!(decimal_to_long("12a"), None);
        let v = run(b"(I42\nI01\nF1.5\nS'a\\x41'\nVx\\u00e9\nL7L\nt.").unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![Value::Int(42), Value::Bool(true), Value::Float(1.5), Value::Str("aA".into()), Value::Str("x\u{e9}".into()), Value::Int(7),])
        );
    }
}
