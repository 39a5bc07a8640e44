//! The textual form of the IR: a printer and a parser such that
//! `print(parse(print(g))) == print(g)` byte for byte.
//!
//! ```text
//! graph "main"(%x: f32[N,3,224,224], %mask: bool[N,?]) {
//!   %w: f32[64,3,7,7] = const hex"0000803f..."
//!   %b: f32[64] = const file("weights.bin", offset=1024, len=256)
//!   %s: string[2] = const ["a", "b\n"]
//!   %c: f32[N,64,112,112] = Conv(%x, %w, %b) {group=1, pads=[3, 3, 3, 3]} name="conv1"
//!   %y: f32[N,64], _ = SomeOp(%c, _) {axes=ints[], eps=1e-5}
//!   return %y, %"out:1"
//! }
//! ```
//!
//! Grammar (tokens may be separated by any whitespace; `#` starts a comment that
//! runs to the end of the line):
//!
//! ```text
//! graph    ::= "graph" STRING "(" [input {"," input}] ")" [bounds] "{" {stmt} return "}"
//! bounds   ::= "bounds" "(" (IDENT | STRING) "=" INT {"," ...} ")"   # symbolic dim <= INT
//! input    ::= VALUE ":" type
//! return   ::= "return" [VALUE {"," VALUE}]
//! stmt     ::= VALUE ":" type "=" "const" payload
//!            | [result {"," result} "="] OPNAME "(" [operand {"," operand}] ")"
//!              ["{" [attr {"," attr}] "}"] ["name" "=" STRING]
//! result   ::= VALUE ":" type | "_"
//! operand  ::= VALUE | "_"
//! type     ::= DTYPE "[" ("*" | [dim {"," dim}]) "]"       # f32[] is a scalar
//! dim      ::= INT | "?" | IDENT | STRING                  # static, unknown, symbolic
//! attr     ::= (IDENT | STRING) "=" attrval
//! attrval  ::= INT | FLOAT | STRING | type payload         # int, float, string, tensor
//!            | "[" INT {"," INT} "]" | "[" FLOAT {"," FLOAT} "]" | "[" STRING {"," STRING} "]"
//!            | ("ints" | "floats" | "strings") "[" [elements] "]"   # empty lists say their kind
//! payload  ::= "hex" STRING                                 # little-endian bytes, packed
//!            | "[" [STRING {"," STRING}] "]"                # string tensors, row-major
//!            | "file" "(" STRING "," "offset" "=" INT "," "len" "=" INT ")"
//!            | "elided" "(" INT ")"                         # printed only; never parses
//! VALUE    ::= "%" ([A-Za-z0-9_./-]+ | STRING)
//! IDENT    ::= [A-Za-z_][A-Za-z0-9_]*
//! STRING   ::= '"' {char | "\\" | "\"" | "\n" | "\t" | "\r" | "\u{" HEX "}"} '"'
//! INT      ::= ["-"] DIGITS
//! FLOAT    ::= ["-"] DIGITS ("." DIGITS [EXP] | EXP) | "nan" | "inf" | "-inf"
//! ```
//!
//! Floats always carry a `.` or an exponent so they never read back as ints;
//! they print as the shortest text that parses back to the same f32 bits (NaN
//! payloads are normalized). The printer puts constants (in value-id order)
//! before the nodes (in program order); the parser accepts them in any order,
//! but requires every value to be defined before it is used, which is why a
//! cyclic graph has no text form.

mod lexer;
mod parse;
mod print;

#[cfg(test)]
mod tests;

pub use parse::{parse, parse_with};
pub use print::{print, print_with};

use std::fmt;

/// How to print a graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintOptions {
    /// Constants whose payload is larger than this many bytes and that do not
    /// come from a file print as `elided(N)`, which keeps dumps of big models
    /// readable; such text no longer parses. `None` inlines everything.
    pub inline_limit: Option<usize>,
}

/// A syntax or meaning error in IR text, at a 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.col, self.message)
    }
}

impl std::error::Error for ParseError {}
