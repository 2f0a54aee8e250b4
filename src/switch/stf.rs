//! The STF packet-test format (p4c's "simple test framework", as the reference tests in the
//! project's shared notes use it): one statement a line, `#` comments. This module only parses
//! text into statements; running them against a switch is the test runner's job.

/// A parse failure, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("STF line {line}: {message}")]
pub struct StfError {
    pub line: usize,
    pub message: String,
}

/// A match value as STF writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StfMatch {
    Exact(u128),
    /// `VALUE/PREFIX_LEN`
    Lpm(u128, u32),
    /// `VALUE&&&MASK`
    Ternary(u128, u128),
    /// `LOW->HIGH`
    Range(u128, u128),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterKind {
    Packets,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn holds(self, a: u64, b: u64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Add {
        table: String,
        priority: Option<i32>,
        keys: Vec<(String, StfMatch)>,
        action: String,
        args: Vec<(String, u128)>,
        label: Option<String>,
    },
    SetDefault {
        table: String,
        action: String,
        args: Vec<(String, u128)>,
    },
    MirroringAdd {
        session: u32,
        port: u32,
    },
    Packet {
        port: u32,
        data: Vec<u8>,
    },
    /// `pattern` holds one entry per nibble; `None` is the `*` wildcard.
    Expect {
        port: u32,
        pattern: Vec<Option<u8>>,
    },
    Wait,
    CheckCounter {
        counter: String,
        /// An index, or the label of an `add`.
        index: Result<usize, String>,
        kind: CounterKind,
        op: CmpOp,
        value: u64,
    },
}

/// A statement and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub line: usize,
    pub statement: Statement,
}

/// Parses a whole STF text.
pub fn parse(text: &str) -> Result<Vec<Line>, StfError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let statement = parse_statement(content).map_err(|message| StfError { line, message })?;
        out.push(Line { line, statement });
    }
    Ok(out)
}

/// Parses a decimal or `0x` hex number of up to 128 bits.
pub fn parse_number(s: &str) -> Result<u128, String> {
    let r = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u128::from_str_radix(hex, 16)
    } else {
        s.parse::<u128>()
    };
    r.map_err(|_| format!("bad number {s:?}"))
}

fn small<T: TryFrom<u128>>(s: &str) -> Result<T, String> {
    T::try_from(parse_number(s)?).map_err(|_| format!("number {s:?} out of range"))
}

fn parse_statement(content: &str) -> Result<Statement, String> {
    let (command, rest) = content
        .split_once(char::is_whitespace)
        .map_or((content, ""), |(c, r)| (c, r.trim()));
    let words: Vec<&str> = rest.split_whitespace().collect();
    match command {
        "add" => parse_add(rest),
        "setdefault" => {
            let (table, after) = rest
                .split_once(char::is_whitespace)
                .ok_or("setdefault needs a table and an action")?;
            let (action, args, tail) = parse_action(after.trim())?;
            if !tail.is_empty() {
                return Err(format!("unexpected text after the action: {tail:?}"));
            }
            Ok(Statement::SetDefault {
                table: table.to_string(),
                action,
                args,
            })
        }
        "mirroring_add" => match words.as_slice() {
            [session, port] => Ok(Statement::MirroringAdd {
                session: small(session)?,
                port: small(port)?,
            }),
            _ => Err("mirroring_add needs SESSION PORT".into()),
        },
        "packet" | "expect" => {
            let (port, hex) = words
                .split_first()
                .ok_or_else(|| format!("{command} needs a port"))?;
            let port = small(port)?;
            let mut nibbles = Vec::new();
            for c in hex.concat().chars() {
                nibbles.push(match c {
                    '*' if command == "expect" => None,
                    // `$` ends the expected frame (p4c STF); everything is compared whole anyway.
                    '$' if command == "expect" => continue,
                    c => Some(
                        c.to_digit(16)
                            .ok_or_else(|| format!("bad hex character {c:?}"))?
                            as u8,
                    ),
                });
            }
            if nibbles.len() % 2 != 0 {
                return Err("odd number of hex digits".into());
            }
            if command == "expect" {
                Ok(Statement::Expect {
                    port,
                    pattern: nibbles,
                })
            } else {
                let data = nibbles
                    .chunks(2)
                    .map(|c| (c[0].unwrap_or(0) << 4) | c[1].unwrap_or(0))
                    .collect();
                Ok(Statement::Packet { port, data })
            }
        }
        "wait" if words.is_empty() => Ok(Statement::Wait),
        "check_counter" => {
            let [target, kind, op, value] = words.as_slice() else {
                return Err("check_counter needs COUNTER(INDEX) packets|bytes OP N".into());
            };
            let (counter, index) = target
                .strip_suffix(')')
                .and_then(|t| t.split_once('('))
                .ok_or("check_counter needs COUNTER(INDEX|LABEL)")?;
            let index = match parse_number(index) {
                Ok(i) => Ok(usize::try_from(i).map_err(|_| "index out of range")?),
                Err(_) if !index.is_empty() => Err(index.to_string()),
                Err(e) => return Err(e),
            };
            let kind = match *kind {
                "packets" => CounterKind::Packets,
                "bytes" => CounterKind::Bytes,
                other => return Err(format!("expected packets or bytes, found {other:?}")),
            };
            let op = match *op {
                "==" => CmpOp::Eq,
                "!=" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                ">=" => CmpOp::Ge,
                other => return Err(format!("unknown comparison {other:?}")),
            };
            Ok(Statement::CheckCounter {
                counter: counter.to_string(),
                index,
                kind,
                op,
                value: small(value)?,
            })
        }
        other => Err(format!("unknown statement {other:?}")),
    }
}

type ActionParts = (String, Vec<(String, u128)>, String);

/// `NAME(P:V, ...)` followed by the rest of the line.
fn parse_action(text: &str) -> Result<ActionParts, String> {
    let open = text.find('(').ok_or("an action needs (...)")?;
    let close = text[open..]
        .find(')')
        .map(|c| c + open)
        .ok_or("unclosed (")?;
    let name = text[..open].trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("bad action name {name:?}"));
    }
    let mut args = Vec::new();
    for part in text[open + 1..close].split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (p, v) = part
            .split_once(':')
            .ok_or_else(|| format!("action argument {part:?} is not NAME:VALUE"))?;
        args.push((p.trim().to_string(), parse_number(v.trim())?));
    }
    Ok((name.to_string(), args, text[close + 1..].trim().to_string()))
}

fn parse_add(rest: &str) -> Result<Statement, String> {
    let open = rest.find('(').ok_or("add needs an action (...)")?;
    // The action name is the last word before `(`.
    let head_end = rest[..open]
        .rfind(char::is_whitespace)
        .ok_or("add needs a table, keys and an action")?;
    let mut head = rest[..head_end].split_whitespace();
    let table = head.next().ok_or("add needs a table")?.to_string();
    let mut priority = None;
    let mut keys = Vec::new();
    for (i, word) in head.enumerate() {
        match word.split_once(':') {
            Some((field, value)) => keys.push((field.to_string(), parse_match(value)?)),
            None if i == 0 => {
                priority = Some(small::<i32>(word)?);
            }
            None => return Err(format!("key {word:?} is not FIELD:VALUE")),
        }
    }
    let (action, args, tail) = parse_action(rest[head_end..].trim())?;
    let label = match tail.strip_prefix('=') {
        Some(l) if !l.trim().is_empty() && !l.trim().contains(char::is_whitespace) => {
            Some(l.trim().to_string())
        }
        None if tail.is_empty() => None,
        _ => return Err(format!("unexpected text after the action: {tail:?}")),
    };
    Ok(Statement::Add {
        table,
        priority,
        keys,
        action,
        args,
        label,
    })
}

fn parse_match(value: &str) -> Result<StfMatch, String> {
    if let Some((v, m)) = value.split_once("&&&") {
        return Ok(StfMatch::Ternary(parse_number(v)?, parse_number(m)?));
    }
    if let Some((lo, hi)) = value.split_once("->") {
        return Ok(StfMatch::Range(parse_number(lo)?, parse_number(hi)?));
    }
    if let Some((v, len)) = value.split_once('/') {
        return Ok(StfMatch::Lpm(parse_number(v)?, small(len)?));
    }
    Ok(StfMatch::Exact(parse_number(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_statement_kind() {
        let text = "\
# comment
add Ing.acl 10 h.ip.src:0x0a000000&&&0xff000000 h.udp.dport:53->53 Ing.permit(port:1) = e10
add Ing.routes h.ip.dst:0x0a000000/8 Ing.route(port:1, next_hop_mac:0x0000000000a1)
setdefault Ing.routes Ing.drop()
mirroring_add 5 4
packet 0 0001 02ab
expect 1 00**$
wait
check_counter Ing.acl_hits(e10) packets == 2
check_counter Ing.per_port(0) bytes >= 288
";
        let lines = parse(text).unwrap();
        let statements: Vec<Statement> = lines.into_iter().map(|l| l.statement).collect();
        assert_eq!(
            statements,
            vec![
                Statement::Add {
                    table: "Ing.acl".into(),
                    priority: Some(10),
                    keys: vec![
                        (
                            "h.ip.src".into(),
                            StfMatch::Ternary(0x0a00_0000, 0xff00_0000)
                        ),
                        ("h.udp.dport".into(), StfMatch::Range(53, 53)),
                    ],
                    action: "Ing.permit".into(),
                    args: vec![("port".into(), 1)],
                    label: Some("e10".into()),
                },
                Statement::Add {
                    table: "Ing.routes".into(),
                    priority: None,
                    keys: vec![("h.ip.dst".into(), StfMatch::Lpm(0x0a00_0000, 8))],
                    action: "Ing.route".into(),
                    args: vec![("port".into(), 1), ("next_hop_mac".into(), 0xa1)],
                    label: None,
                },
                Statement::SetDefault {
                    table: "Ing.routes".into(),
                    action: "Ing.drop".into(),
                    args: vec![],
                },
                Statement::MirroringAdd {
                    session: 5,
                    port: 4
                },
                Statement::Packet {
                    port: 0,
                    data: vec![0x00, 0x01, 0x02, 0xab]
                },
                Statement::Expect {
                    port: 1,
                    pattern: vec![Some(0), Some(0), None, None]
                },
                Statement::Wait,
                Statement::CheckCounter {
                    counter: "Ing.acl_hits".into(),
                    index: Err("e10".into()),
                    kind: CounterKind::Packets,
                    op: CmpOp::Eq,
                    value: 2
                },
                Statement::CheckCounter {
                    counter: "Ing.per_port".into(),
                    index: Ok(0),
                    kind: CounterKind::Bytes,
                    op: CmpOp::Ge,
                    value: 288
                },
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("wait\npacket 0 0g\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse("packet 0 012").is_err());
        assert!(parse("add T k:1 A(p:1) junk").is_err());
        assert!(parse("frobnicate").is_err());
        assert!(parse("check_counter c(0) packets ~ 1").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn statement_shaped_text_never_panics(
            cmd in prop::sample::select(vec!["add", "setdefault", "packet", "expect", "check_counter", "mirroring_add"]),
            rest in "[a-z0-9.:()&>/=*$, -]{0,60}",
        ) {
            let _ = parse(&format!("{cmd} {rest}"));
        }
    }
}
