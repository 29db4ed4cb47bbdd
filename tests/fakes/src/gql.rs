//! A small GraphQL document parser for the stateful Wiki.js fake: one
//! operation (`query`/`mutation`/shorthand) with variable definitions,
//! fields with aliases, arguments and selection sets. Fragments and
//! directives are not supported (no Wiki.js client the fake serves uses
//! them); they are reported as a syntax error.
//!
//! Every variable definition, variable use and field keeps its 1-based line
//! and column, so validation errors carry the `locations` graphql-js sends.

use serde_json::Value;

/// A source position (1-based, as graphql-js reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

/// A type reference as written (`[String]!`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeRef {
    /// A named type.
    Named(String),
    /// A list.
    List(Box<TypeRef>),
    /// Non-null.
    NonNull(Box<TypeRef>),
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeRef::Named(n) => f.write_str(n),
            TypeRef::List(t) => write!(f, "[{t}]"),
            TypeRef::NonNull(t) => write!(f, "{t}!"),
        }
    }
}

impl TypeRef {
    /// Parses a type string (`[String!]!`); for the schema table.
    pub fn parse(s: &str) -> TypeRef {
        let s = s.trim();
        if let Some(inner) = s.strip_suffix('!') {
            return TypeRef::NonNull(Box::new(TypeRef::parse(inner)));
        }
        if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            return TypeRef::List(Box::new(TypeRef::parse(inner)));
        }
        TypeRef::Named(s.to_string())
    }

    /// The innermost named type.
    pub fn named(&self) -> &str {
        match self {
            TypeRef::Named(n) => n,
            TypeRef::List(t) | TypeRef::NonNull(t) => t.named(),
        }
    }

    /// graphql-js `isTypeSubTypeOf`: may a variable of type `self` be used
    /// where `expected` is required?
    pub fn fits(&self, expected: &TypeRef) -> bool {
        match (self, expected) {
            (TypeRef::NonNull(a), TypeRef::NonNull(b)) => a.fits(b),
            (TypeRef::NonNull(a), b) => a.fits(b),
            (_, TypeRef::NonNull(_)) => false,
            (TypeRef::List(a), TypeRef::List(b)) => a.fits(b),
            (TypeRef::List(_), _) | (_, TypeRef::List(_)) => false,
            (TypeRef::Named(a), TypeRef::Named(b)) => a == b,
        }
    }
}

/// An argument value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `$name`, at the `$`.
    Var(String, Pos),
    /// A literal (enums become strings).
    Lit(Value),
    /// A list literal.
    List(Vec<Arg>),
}

/// A field in a selection set.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Response key (alias or name).
    pub key: String,
    /// Field name.
    pub name: String,
    /// Where the field starts (alias or name).
    pub pos: Pos,
    /// Arguments in order.
    pub args: Vec<(String, Arg)>,
    /// Sub-selection.
    pub selection: Vec<Field>,
}

/// A variable definition.
#[derive(Debug, Clone, PartialEq)]
pub struct VarDef {
    /// Name without `$`.
    pub name: String,
    /// Declared type.
    pub ty: TypeRef,
    /// At the `$`.
    pub pos: Pos,
    /// Whether a default value was given.
    pub has_default: bool,
}

/// The parsed operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `query` or `mutation`.
    pub mutation: bool,
    /// Variable definitions.
    pub vars: Vec<VarDef>,
    /// Top-level selection.
    pub selection: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Punct(char),
    Name(String),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A syntax error: message and position, as graphql-js words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Message (`Syntax Error: ...`).
    pub message: String,
    /// Where.
    pub pos: Pos,
}

fn lex(src: &str) -> Result<Vec<(Tok, Pos)>, SyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |m: String, line, column| SyntaxError {
        message: format!("Syntax Error: {m}"),
        pos: Pos { line, column },
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, column: col };
        match c {
            '\n' => {
                line += 1;
                col = 1;
                i += 1;
            }
            ' ' | '\t' | '\r' | ',' | '\u{feff}' => {
                i += 1;
                col += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '}' | '(' | ')' | '[' | ']' | ':' | '!' | '$' | '=' | '@' => {
                out.push((Tok::Punct(c), pos));
                i += 1;
                col += 1;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                col += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err("Unterminated string.".into(), line, col));
                    };
                    i += 1;
                    col += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let Some(&e) = chars.get(i) else {
                                return Err(err("Unterminated string.".into(), line, col));
                            };
                            i += 1;
                            col += 1;
                            match e {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                'b' => s.push('\u{8}'),
                                'f' => s.push('\u{c}'),
                                'u' => {
                                    let hex: String = chars.iter().skip(i).take(4).collect();
                                    let v =
                                        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                                    let Some(v) = v else {
                                        return Err(err(
                                            format!(
                                                "Invalid Unicode escape sequence: \"\\u{hex}\"."
                                            ),
                                            line,
                                            col,
                                        ));
                                    };
                                    s.push(v);
                                    i += 4;
                                    col += 4;
                                }
                                other => s.push(other),
                            }
                        }
                        '\n' => return Err(err("Unterminated string.".into(), line, col)),
                        other => s.push(other),
                    }
                }
                out.push((Tok::Str(s), pos));
            }
            '.' if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') => {
                return Err(err(
                    "fragments are not supported by this fake.".into(),
                    line,
                    col,
                ));
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || ".eE+-".contains(chars[i])) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                col += i - start;
                if let Ok(v) = text.parse::<i64>() {
                    out.push((Tok::Int(v), pos));
                } else if let Ok(v) = text.parse::<f64>() {
                    out.push((Tok::Float(v), pos));
                } else {
                    return Err(err(
                        format!("Invalid number, \"{text}\"."),
                        pos.line,
                        pos.column,
                    ));
                }
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                col += i - start;
                out.push((Tok::Name(chars[start..i].iter().collect()), pos));
            }
            other => {
                return Err(err(
                    format!("Unexpected character: \"{other}\"."),
                    line,
                    col,
                ));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, Pos)>,
    i: usize,
    end: Pos,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn pos(&self) -> Pos {
        self.toks.get(self.i).map_or(self.end, |(_, p)| *p)
    }

    fn unexpected(&self) -> SyntaxError {
        let what = match self.peek() {
            None => "<EOF>".to_string(),
            Some(Tok::Punct(c)) => format!("\"{c}\""),
            Some(Tok::Name(n)) => format!("Name \"{n}\""),
            Some(Tok::Int(v)) => format!("Int \"{v}\""),
            Some(Tok::Float(v)) => format!("Float \"{v}\""),
            Some(Tok::Str(s)) => format!("String \"{s}\""),
        };
        SyntaxError {
            message: format!("Syntax Error: Unexpected {what}."),
            pos: self.pos(),
        }
    }

    fn punct(&mut self, c: char) -> Result<Pos, SyntaxError> {
        if self.peek() == Some(&Tok::Punct(c)) {
            let p = self.pos();
            self.i += 1;
            Ok(p)
        } else {
            Err(SyntaxError {
                message: format!(
                    "Syntax Error: Expected \"{c}\", found {}.",
                    self.unexpected()
                        .message
                        .trim_start_matches("Syntax Error: Unexpected ")
                        .trim_end_matches('.')
                ),
                pos: self.pos(),
            })
        }
    }

    fn is(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Punct(c))
    }

    fn name(&mut self) -> Result<(String, Pos), SyntaxError> {
        match self.toks.get(self.i) {
            Some((Tok::Name(n), p)) => {
                let r = (n.clone(), *p);
                self.i += 1;
                Ok(r)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn type_ref(&mut self) -> Result<TypeRef, SyntaxError> {
        let t = if self.is('[') {
            self.i += 1;
            let inner = self.type_ref()?;
            self.punct(']')?;
            TypeRef::List(Box::new(inner))
        } else {
            TypeRef::Named(self.name()?.0)
        };
        if self.is('!') {
            self.i += 1;
            return Ok(TypeRef::NonNull(Box::new(t)));
        }
        Ok(t)
    }

    fn value(&mut self) -> Result<Arg, SyntaxError> {
        let pos = self.pos();
        match self.peek().cloned() {
            Some(Tok::Punct('$')) => {
                self.i += 1;
                Ok(Arg::Var(self.name()?.0, pos))
            }
            Some(Tok::Punct('[')) => {
                self.i += 1;
                let mut items = Vec::new();
                while !self.is(']') {
                    if self.peek().is_none() {
                        return Err(self.unexpected());
                    }
                    items.push(self.value()?);
                }
                self.i += 1;
                Ok(Arg::List(items))
            }
            Some(Tok::Int(v)) => {
                self.i += 1;
                Ok(Arg::Lit(Value::from(v)))
            }
            Some(Tok::Float(v)) => {
                self.i += 1;
                Ok(Arg::Lit(Value::from(v)))
            }
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Arg::Lit(Value::String(s)))
            }
            Some(Tok::Name(n)) => {
                self.i += 1;
                Ok(Arg::Lit(match n.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => Value::String(n),
                }))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn selection(&mut self) -> Result<Vec<Field>, SyntaxError> {
        self.punct('{')?;
        let mut fields = Vec::new();
        while !self.is('}') {
            if self.is('@') {
                return Err(SyntaxError {
                    message: "Syntax Error: directives are not supported by this fake.".into(),
                    pos: self.pos(),
                });
            }
            let (first, pos) = self.name()?;
            let (key, name) = if self.is(':') {
                self.i += 1;
                (first, self.name()?.0)
            } else {
                (first.clone(), first)
            };
            let mut args = Vec::new();
            if self.is('(') {
                self.i += 1;
                while !self.is(')') {
                    let (n, _) = self.name()?;
                    self.punct(':')?;
                    args.push((n, self.value()?));
                }
                self.i += 1;
            }
            let selection = if self.is('{') {
                self.selection()?
            } else {
                Vec::new()
            };
            fields.push(Field {
                key,
                name,
                pos,
                args,
                selection,
            });
        }
        self.i += 1;
        if fields.is_empty() {
            return Err(SyntaxError {
                message: "Syntax Error: Expected Name, found \"}\".".into(),
                pos: self.pos(),
            });
        }
        Ok(fields)
    }
}

/// Parses a document holding exactly one operation.
pub fn parse(src: &str) -> Result<Operation, SyntaxError> {
    let toks = lex(src)?;
    let end = Pos {
        line: src.lines().count().max(1),
        column: src.lines().last().map_or(1, |l| l.chars().count() + 1),
    };
    let mut p = Parser { toks, i: 0, end };
    let mut mutation = false;
    let mut vars = Vec::new();
    match p.peek() {
        Some(Tok::Name(n)) if n == "query" || n == "mutation" => {
            mutation = n == "mutation";
            p.i += 1;
            if matches!(p.peek(), Some(Tok::Name(_))) {
                p.i += 1;
            }
            if p.is('(') {
                p.i += 1;
                while !p.is(')') {
                    let pos = p.punct('$')?;
                    let (name, _) = p.name()?;
                    p.punct(':')?;
                    let ty = p.type_ref()?;
                    let has_default = if p.is('=') {
                        p.i += 1;
                        p.value()?;
                        true
                    } else {
                        false
                    };
                    vars.push(VarDef {
                        name,
                        ty,
                        pos,
                        has_default,
                    });
                }
                p.i += 1;
            }
        }
        Some(Tok::Punct('{')) => {}
        _ => return Err(p.unexpected()),
    }
    let selection = p.selection()?;
    if p.peek().is_some() {
        return Err(p.unexpected());
    }
    Ok(Operation {
        mutation,
        vars,
        selection,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_recorded_create() {
        let q = "mutation ($content: String!, $tags: [String]!) { pages { create(content: $content, tags: $tags) { responseResult { succeeded } page { id } } } }";
        let op = parse(q).unwrap();
        assert!(op.mutation);
        assert_eq!(op.vars[1].ty.to_string(), "[String]!");
        assert_eq!(op.vars[1].pos.column, q.find("$tags").unwrap() + 1);
        let create = &op.selection[0].selection[0];
        assert_eq!(create.name, "create");
        assert_eq!(create.pos.column, q.find("create").unwrap() + 1);
        assert_eq!(create.selection.len(), 2);
    }

    #[test]
    fn subtype_rules() {
        let t = TypeRef::parse;
        assert!(!t("[String]").fits(&t("[String]!")));
        assert!(t("[String]!").fits(&t("[String]")));
        assert!(t("Int!").fits(&t("Int")));
        assert!(!t("String").fits(&t("String!")));
        assert!(!t("[String]").fits(&t("[String!]")));
        assert!(t("[String!]").fits(&t("[String]")));
        assert!(!t("String").fits(&t("Int")));
    }

    #[test]
    fn shorthand_and_errors() {
        let op = parse("{ pages { list(limit: 2, orderBy: ID) { id } } }").unwrap();
        assert!(!op.mutation);
        assert_eq!(
            op.selection[0].selection[0].args[1].1,
            Arg::Lit("ID".into())
        );
        assert!(parse("{ pages { ").is_err());
        assert!(parse("{ ...x }").is_err());
    }
}
