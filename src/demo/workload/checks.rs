//! Independent readers of the workload's protocol bytes, written from the specifications rather
//! than from the encoders: each walks a whole byte stream (one direction of a TCP connection, or
//! one datagram), checks every length and framing rule it knows, and counts the requests or
//! responses it finds. Used only by the tests.

use std::net::Ipv4Addr;

pub(super) type Checked<T> = Result<T, String>;

/// A cursor over bytes that fails, rather than panics, past the end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.bytes.len()
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn take(&mut self, n: usize) -> Checked<&'a [u8]> {
        if self.bytes.len() - self.pos < n {
            return Err(format!(
                "{n} bytes wanted at offset {}, {} left",
                self.pos,
                self.bytes.len() - self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Checked<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn be(&mut self, n: usize) -> Checked<u64> {
        Ok(self.take(n)?.iter().fold(0, |a, b| a << 8 | u64::from(*b)))
    }

    pub fn le(&mut self, n: usize) -> Checked<u64> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0, |a, b| a << 8 | u64::from(*b)))
    }

    /// Bytes up to a NUL, which is consumed.
    pub fn cstring(&mut self) -> Checked<&'a str> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated C string")?;
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).map_err(|e| e.to_string())
    }

    /// Bytes up to CRLF, which is consumed.
    pub fn line(&mut self) -> Checked<&'a str> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("line without CRLF")?;
        self.pos += end + 2;
        std::str::from_utf8(&rest[..end]).map_err(|e| e.to_string())
    }
}

fn expect(cond: bool, what: &str) -> Checked<()> {
    if cond {
        Ok(())
    } else {
        Err(what.to_string())
    }
}

/// HTTP/1.1 messages in one direction (RFC 9112): a start line, header fields up to an empty
/// line, a body of exactly Content-Length bytes. Returns the messages and every Host value.
pub(super) fn http_messages(stream: &[u8], requests: bool) -> Checked<(u64, Vec<String>)> {
    let mut r = Reader::new(stream);
    let (mut count, mut hosts) = (0, Vec::new());
    while !r.is_empty() {
        let start = r.line()?;
        let parts: Vec<&str> = start.splitn(3, ' ').collect();
        expect(parts.len() == 3, "start line has three parts")?;
        if requests {
            expect(
                ["GET", "POST"].contains(&parts[0]) && parts[1].starts_with('/'),
                "request line",
            )?;
            expect(parts[2] == "HTTP/1.1", "request version")?;
        } else {
            expect(parts[0] == "HTTP/1.1", "status version")?;
            let code: u16 = parts[1].parse().map_err(|_| "status code")?;
            expect((100..600).contains(&code), "status code range")?;
        }
        let mut length = 0;
        let mut host = None;
        loop {
            let field = r.line()?;
            if field.is_empty() {
                break;
            }
            let (name, value) = field.split_once(": ").ok_or("header field without ': '")?;
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().map_err(|_| "Content-Length")?,
                "host" => host = Some(value.to_string()),
                _ => {}
            }
        }
        if requests {
            hosts.push(host.ok_or("request without Host")?);
        }
        r.take(length)?;
        count += 1;
    }
    Ok((count, hosts))
}

/// TLS records in one direction (RFC 8446 section 5): type, version, length, fragment. The
/// client's first record must be a ClientHello, the server's a ServerHello, both checked field
/// by field. Returns the application data records and the ClientHello's SNI.
pub(super) fn tls_records(stream: &[u8], client: bool) -> Checked<(u64, Option<String>)> {
    let mut r = Reader::new(stream);
    let (mut app_data, mut sni) = (0, None);
    let mut first = true;
    while !r.is_empty() {
        let kind = r.u8()?;
        let version = r.be(2)?;
        let len = r.be(2)? as usize;
        expect(len <= (1 << 14) + 256, "record longer than 2^14 + 256")?;
        let fragment = r.take(len)?;
        if first {
            expect(kind == 22, "first record is a handshake")?;
            let mut h = Reader::new(fragment);
            let msg_type = h.u8()?;
            let body = h.be(3)? as usize;
            expect(
                body == fragment.len() - 4,
                "handshake length fills the record",
            )?;
            if client {
                expect(version == 0x0301 && msg_type == 1, "ClientHello")?;
                sni = Some(client_hello_sni(&mut h)?);
            } else {
                expect(version == 0x0303 && msg_type == 2, "ServerHello")?;
                server_hello(&mut h)?;
            }
            first = false;
            continue;
        }
        expect(version == 0x0303, "record version")?;
        match kind {
            20 => expect(fragment == [1], "ChangeCipherSpec is one byte 1")?,
            23 => {
                expect(len > 16, "encrypted record holds a tag")?;
                app_data += 1;
            }
            _ => return Err(format!("unexpected record type {kind}")),
        }
    }
    Ok((app_data, sni))
}

/// Walks a ClientHello body to its extensions and returns the server_name's host name.
fn client_hello_sni(h: &mut Reader) -> Checked<String> {
    expect(h.be(2)? == 0x0303, "legacy_version")?;
    h.take(32)?;
    let session = h.u8()? as usize;
    h.take(session)?;
    let suites = h.be(2)? as usize;
    expect(suites.is_multiple_of(2) && suites > 0, "cipher suites")?;
    h.take(suites)?;
    let compression = h.u8()? as usize;
    expect(h.take(compression)? == [0], "null compression")?;
    let ext_len = h.be(2)? as usize;
    let mut exts = Reader::new(h.take(ext_len)?);
    expect(h.is_empty(), "nothing after the extensions")?;
    let mut sni = None;
    let mut versions = false;
    while !exts.is_empty() {
        let kind = exts.be(2)?;
        let len = exts.be(2)? as usize;
        let mut data = Reader::new(exts.take(len)?);
        match kind {
            0 => {
                let list = data.be(2)? as usize;
                expect(list == len - 2, "server name list length")?;
                expect(data.u8()? == 0, "host_name type")?;
                let name_len = data.be(2)? as usize;
                let name = data.take(name_len)?;
                sni = Some(String::from_utf8(name.to_vec()).map_err(|e| e.to_string())?);
            }
            43 => {
                let n = data.u8()? as usize;
                let list = data.take(n)?;
                versions = list.chunks(2).any(|v| v == [3, 4]);
            }
            _ => {
                data.take(len)?;
            }
        }
        expect(data.is_empty(), "extension length matches its contents")?;
    }
    expect(versions, "supported_versions offers TLS 1.3")?;
    sni.ok_or_else(|| "ClientHello without server_name".to_string())
}

fn server_hello(h: &mut Reader) -> Checked<()> {
    expect(h.be(2)? == 0x0303, "legacy_version")?;
    h.take(32)?;
    let session = h.u8()? as usize;
    h.take(session)?;
    expect(h.be(2)? == 0x1301, "TLS_AES_128_GCM_SHA256")?;
    expect(h.u8()? == 0, "null compression")?;
    let ext_len = h.be(2)? as usize;
    let mut exts = Reader::new(h.take(ext_len)?);
    let mut selected = None;
    while !exts.is_empty() {
        let kind = exts.be(2)?;
        let len = exts.be(2)? as usize;
        let data = exts.take(len)?;
        if kind == 43 {
            selected = Some(data.to_vec());
        }
    }
    expect(selected == Some(vec![3, 4]), "ServerHello selects TLS 1.3")?;
    expect(h.is_empty(), "nothing after the extensions")
}

/// The client side of a PostgreSQL v3 connection: a StartupMessage, then typed messages.
/// Returns the simple queries.
pub(super) fn postgres_frontend(stream: &[u8]) -> Checked<u64> {
    let mut r = Reader::new(stream);
    let len = r.be(4)? as usize;
    let mut startup = Reader::new(r.take(len.checked_sub(4).ok_or("startup length")?)?);
    expect(startup.be(4)? == 196_608, "protocol 3.0")?;
    loop {
        let name = startup.cstring()?;
        if name.is_empty() {
            break;
        }
        startup.cstring()?;
    }
    expect(startup.is_empty(), "startup ends with its terminator")?;
    let mut queries = 0;
    let mut terminated = false;
    while !r.is_empty() {
        expect(!terminated, "nothing after Terminate")?;
        let kind = r.u8()?;
        let len = r.be(4)? as usize;
        let mut body = Reader::new(r.take(len.checked_sub(4).ok_or("message length")?)?);
        match kind {
            b'Q' => {
                body.cstring()?;
                queries += 1;
            }
            b'X' => terminated = true,
            _ => return Err(format!("unexpected frontend message {:?}", kind as char)),
        }
        expect(body.is_empty(), "message length matches its contents")?;
    }
    expect(terminated, "the client says goodbye")?;
    Ok(queries)
}

/// The server side: AuthenticationOk first, then messages; RowDescription's column count must
/// match every DataRow's and CommandComplete's row count the DataRows. Returns the
/// ReadyForQuery messages after the startup's (one per answered query).
pub(super) fn postgres_backend(stream: &[u8]) -> Checked<u64> {
    let mut r = Reader::new(stream);
    let (mut ready, mut columns, mut rows) = (0u64, None, 0u64);
    let mut first = true;
    while !r.is_empty() {
        let kind = r.u8()?;
        let len = r.be(4)? as usize;
        let mut body = Reader::new(r.take(len.checked_sub(4).ok_or("message length")?)?);
        if first {
            expect(kind == b'R' && body.be(4)? == 0, "AuthenticationOk first")?;
            first = false;
            continue;
        }
        match kind {
            b'S' => {
                body.cstring()?;
                body.cstring()?;
            }
            b'K' => {
                body.take(8)?;
            }
            b'T' => {
                let n = body.be(2)?;
                for _ in 0..n {
                    body.cstring()?;
                    body.take(4 + 2 + 4 + 2 + 4 + 2)?;
                }
                columns = Some(n);
                rows = 0;
            }
            b'D' => {
                let n = body.be(2)?;
                expect(Some(n) == columns, "DataRow has RowDescription's columns")?;
                for _ in 0..n {
                    let len = body.be(4)? as u32 as i32;
                    if len >= 0 {
                        body.take(len as usize)?;
                    }
                }
                rows += 1;
            }
            b'C' => {
                let tag = body.cstring()?;
                if let Some(n) = tag.strip_prefix("SELECT ") {
                    expect(n.parse() == Ok(rows), "SELECT tag counts the rows")?;
                }
                columns = None;
            }
            b'Z' => {
                expect(body.u8()? == b'I', "idle")?;
                ready += 1;
            }
            _ => return Err(format!("unexpected backend message {:?}", kind as char)),
        }
        expect(body.is_empty(), "message length matches its contents")?;
    }
    ready
        .checked_sub(1)
        .ok_or_else(|| "no ReadyForQuery after startup".to_string())
}

/// One RESP2 value; returns how many top-level values a stream holds, and for commands checks
/// each is an array of bulk strings.
pub(super) fn resp_values(stream: &[u8], commands: bool) -> Checked<u64> {
    fn value(r: &mut Reader, commands: bool) -> Checked<()> {
        let line = r.line()?;
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" | "-" => Ok(()),
            ":" => rest.parse::<i64>().map(|_| ()).map_err(|e| e.to_string()),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| "bulk length")?;
                if n >= 0 {
                    r.take(n as usize)?;
                    expect(r.take(2)? == b"\r\n", "bulk string ends with CRLF")?;
                }
                Ok(())
            }
            "*" => {
                let n: usize = rest.parse().map_err(|_| "array length")?;
                for _ in 0..n {
                    if commands {
                        expect(
                            r.bytes.get(r.pos) == Some(&b'$'),
                            "command arguments are bulk",
                        )?;
                    }
                    value(r, false)?;
                }
                Ok(())
            }
            _ => Err(format!("unknown RESP type {kind:?}")),
        }
    }
    let mut r = Reader::new(stream);
    let mut n = 0;
    while !r.is_empty() {
        if commands {
            expect(r.bytes[r.pos] == b'*', "a command is an array")?;
        }
        value(&mut r, commands)?;
        n += 1;
    }
    Ok(n)
}

/// MySQL packets: 3-byte little-endian length, sequence id, payload.
fn mysql_packets(stream: &[u8]) -> Checked<Vec<(u8, &[u8])>> {
    let mut r = Reader::new(stream);
    let mut packets = Vec::new();
    while !r.is_empty() {
        let len = r.le(3)? as usize;
        let seq = r.u8()?;
        packets.push((seq, r.take(len)?));
    }
    Ok(packets)
}

/// The client side: HandshakeResponse41 (sequence 1), COM_QUERY packets (sequence 0), COM_QUIT
/// last. Returns the queries.
pub(super) fn mysql_client(stream: &[u8]) -> Checked<u64> {
    let packets = mysql_packets(stream)?;
    let (&(seq, login), rest) = packets.split_first().ok_or("no login")?;
    expect(seq == 1, "login is packet 1")?;
    let mut l = Reader::new(login);
    let flags = l.le(4)?;
    expect(
        flags & 0x200 != 0 && flags & 0x8000 != 0,
        "4.1 protocol, secure auth",
    )?;
    l.take(4 + 1 + 23)?;
    l.cstring()?;
    let auth = l.u8()? as usize;
    l.take(auth)?;
    l.cstring()?;
    expect(l.cstring()? == "mysql_native_password", "auth plugin")?;
    expect(l.is_empty(), "login ends with the plugin name")?;
    let (&(seq, quit), queries) = rest.split_last().ok_or("no COM_QUIT")?;
    expect(seq == 0 && quit == [0x01], "COM_QUIT last")?;
    for (seq, q) in queries {
        expect(
            *seq == 0 && q.first() == Some(&0x03) && q.len() > 1,
            "COM_QUERY",
        )?;
    }
    Ok(queries.len() as u64)
}

/// A length-encoded integer.
fn lenenc(r: &mut Reader) -> Checked<u64> {
    match r.u8()? {
        n @ 0..=250 => Ok(u64::from(n)),
        0xfc => r.le(2),
        0xfd => r.le(3),
        0xfe => r.le(8),
        b => Err(format!("bad length-encoded integer prefix {b:#x}")),
    }
}

/// The server side: a protocol-10 greeting, the login's OK, then one answer per query: an OK
/// packet or a result set (column count, that many definitions, EOF, rows, EOF) with
/// consecutive sequence ids. Returns the answers.
pub(super) fn mysql_server(stream: &[u8]) -> Checked<u64> {
    let packets = mysql_packets(stream)?;
    let at = std::cell::Cell::new(0);
    // The next packet, which must carry sequence id `seq`.
    let next = |seq: u8| -> Checked<&[u8]> {
        let (s, p) = *packets.get(at.get()).ok_or("stream cut short")?;
        expect(s == seq, &format!("sequence id {s}, expected {seq}"))?;
        at.set(at.get() + 1);
        Ok(p)
    };
    let mut g = Reader::new(next(0)?);
    expect(g.u8()? == 10, "protocol 10 greeting")?;
    g.cstring()?;
    g.take(4 + 8 + 1 + 2 + 1 + 2 + 2)?;
    let auth_len = g.u8()? as usize;
    g.take(10)?;
    g.take(auth_len.max(21) - 8)?;
    expect(g.cstring()? == "mysql_native_password", "auth plugin")?;
    expect(next(2)?.first() == Some(&0), "login OK is packet 2")?;
    let mut answers = 0;
    while at.get() < packets.len() {
        let first = next(1)?;
        answers += 1;
        if first.first() == Some(&0x00) {
            let mut ok = Reader::new(&first[1..]);
            lenenc(&mut ok)?;
            lenenc(&mut ok)?;
            ok.take(4)?;
            expect(ok.is_empty(), "OK packet length")?;
            continue;
        }
        let columns = lenenc(&mut Reader::new(first))?;
        let mut seq = 2u8;
        for _ in 0..columns {
            let mut def = Reader::new(next(seq)?);
            seq = seq.wrapping_add(1);
            for _ in 0..6 {
                let n = lenenc(&mut def)? as usize;
                def.take(n)?;
            }
            expect(lenenc(&mut def)? == 0x0c, "fixed fields length")?;
            def.take(0x0c)?;
            expect(def.is_empty(), "column definition length")?;
        }
        expect(next(seq)?.first() == Some(&0xfe), "EOF after the columns")?;
        loop {
            seq = seq.wrapping_add(1);
            let row = next(seq)?;
            if row.first() == Some(&0xfe) && row.len() < 9 {
                break;
            }
            let mut values = Reader::new(row);
            for _ in 0..columns {
                let n = lenenc(&mut values)? as usize;
                values.take(n)?;
            }
            expect(values.is_empty(), "row has the columns' values")?;
        }
    }
    Ok(answers)
}

/// A DNS name at `pos` of `msg`, following compression pointers (RFC 1035 4.1.4); returns the
/// name and the offset after it where it was read.
pub(super) fn dns_name(msg: &[u8], mut pos: usize) -> Checked<(String, usize)> {
    let mut labels = Vec::new();
    let mut after = None;
    for _ in 0..64 {
        let len = *msg.get(pos).ok_or("name runs past the message")?;
        match len {
            0 => {
                return Ok((labels.join("."), after.unwrap_or(pos + 1)));
            }
            1..=63 => {
                let label = msg.get(pos + 1..pos + 1 + len as usize).ok_or("label")?;
                labels.push(String::from_utf8(label.to_vec()).map_err(|e| e.to_string())?);
                pos += 1 + len as usize;
            }
            0xc0..=0xff => {
                let low = *msg.get(pos + 1).ok_or("pointer")?;
                after.get_or_insert(pos + 2);
                pos = usize::from(len & 0x3f) << 8 | usize::from(low);
            }
            _ => return Err("reserved label type".into()),
        }
    }
    Err("name too long or looping".into())
}

/// A DNS message with one A question and, for a response, one A answer for the same name.
/// Returns (id, is_response, question name, answered address).
pub(super) fn dns_message(msg: &[u8]) -> Checked<(u16, bool, String, Option<Ipv4Addr>)> {
    let mut r = Reader::new(msg);
    let id = r.be(2)? as u16;
    let flags = r.be(2)?;
    let (qd, an, ns, ar) = (r.be(2)?, r.be(2)?, r.be(2)?, r.be(2)?);
    let response = flags & 0x8000 != 0;
    expect(flags & 0x000f == 0, "RCODE NOERROR")?;
    expect(qd == 1 && ns == 0 && ar == 0, "one question")?;
    expect(an == u64::from(response), "an answer exactly in responses")?;
    let (name, pos) = dns_name(msg, 12)?;
    let mut r = Reader::new(&msg[pos..]);
    expect(r.be(2)? == 1 && r.be(2)? == 1, "question is A IN")?;
    let mut addr = None;
    if response {
        let (owner, after) = dns_name(msg, pos + r.pos())?;
        expect(owner == name, "answer owns the question's name")?;
        let mut a = Reader::new(&msg[after..]);
        expect(a.be(2)? == 1 && a.be(2)? == 1, "answer is A IN")?;
        a.be(4)?;
        expect(a.be(2)? == 4, "RDLENGTH 4")?;
        let b = a.take(4)?;
        addr = Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        expect(a.is_empty(), "nothing after the answer")?;
    } else {
        expect(r.is_empty(), "nothing after the question")?;
    }
    Ok((id, response, name, addr))
}

/// An NTPv4 packet: 48 bytes, version 4, mode 3 (client) or 4 (server). Returns the mode and
/// the origin and transmit timestamps.
pub(super) fn ntp_packet(p: &[u8]) -> Checked<(u8, u64, u64)> {
    expect(p.len() == 48, "48 bytes")?;
    expect(p[0] >> 6 == 0 && (p[0] >> 3) & 7 == 4, "no leap, version 4")?;
    let mode = p[0] & 7;
    expect(mode == 3 || mode == 4, "client or server mode")?;
    let ts = |at: usize| u64::from_be_bytes(p[at..at + 8].try_into().unwrap());
    Ok((mode, ts(24), ts(40)))
}
