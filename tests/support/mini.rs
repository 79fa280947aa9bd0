//! Just enough JSON and XML reading to check the conformance runner's reports: a JSON
//! value parser, and an XML element lister that insists on well-formed nesting.
#![allow(dead_code)]

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(k).unwrap_or_else(|| panic!("no key {k} in {self:?}")),
            _ => panic!("not an object: {self:?}"),
        }
    }
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array: {self:?}"),
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }
    pub fn num(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            _ => panic!("not a number: {self:?}"),
        }
    }
}

pub fn parse_json(text: &str) -> Json {
    let b: Vec<char> = text.chars().collect();
    let mut i = 0;
    let v = value(&b, &mut i);
    ws(&b, &mut i);
    assert_eq!(i, b.len(), "trailing characters after JSON value");
    v
}

fn ws(b: &[char], i: &mut usize) {
    while *i < b.len() && b[*i].is_whitespace() {
        *i += 1;
    }
}

fn expect(b: &[char], i: &mut usize, c: char) {
    ws(b, i);
    assert_eq!(b.get(*i), Some(&c), "expected {c:?} at {}", *i);
    *i += 1;
}

fn string(b: &[char], i: &mut usize) -> String {
    expect(b, i, '"');
    let mut s = String::new();
    loop {
        let c = *b.get(*i).expect("unterminated string");
        *i += 1;
        match c {
            '"' => return s,
            '\\' => {
                let e = b[*i];
                *i += 1;
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'u' => {
                        let h: String = b[*i..*i + 4].iter().collect();
                        *i += 4;
                        char::from_u32(u32::from_str_radix(&h, 16).expect("hex")).expect("char")
                    }
                    c @ ('"' | '\\' | '/') => c,
                    c => panic!("bad escape \\{c}"),
                });
            }
            c if (c as u32) < 0x20 => panic!("raw control character in JSON string"),
            c => s.push(c),
        }
    }
}

fn value(b: &[char], i: &mut usize) -> Json {
    ws(b, i);
    match b.get(*i).copied().expect("value expected") {
        '{' => {
            *i += 1;
            let mut m = BTreeMap::new();
            ws(b, i);
            if b[*i] == '}' {
                *i += 1;
                return Json::Obj(m);
            }
            loop {
                ws(b, i);
                let k = string(b, i);
                expect(b, i, ':');
                m.insert(k, value(b, i));
                ws(b, i);
                *i += 1;
                match b[*i - 1] {
                    ',' => continue,
                    '}' => return Json::Obj(m),
                    c => panic!("unexpected {c:?} in object"),
                }
            }
        }
        '[' => {
            *i += 1;
            let mut a = Vec::new();
            ws(b, i);
            if b[*i] == ']' {
                *i += 1;
                return Json::Arr(a);
            }
            loop {
                a.push(value(b, i));
                ws(b, i);
                *i += 1;
                match b[*i - 1] {
                    ',' => continue,
                    ']' => return Json::Arr(a),
                    c => panic!("unexpected {c:?} in array"),
                }
            }
        }
        '"' => Json::Str(string(b, i)),
        't' | 'f' | 'n' => {
            for (word, v) in [
                ("true", Json::Bool(true)),
                ("false", Json::Bool(false)),
                ("null", Json::Null),
            ] {
                let w: String = b[*i..(*i + word.len()).min(b.len())].iter().collect();
                if w == word {
                    *i += word.len();
                    return v;
                }
            }
            panic!("bad literal at {}", *i)
        }
        _ => {
            let start = *i;
            while *i < b.len() && matches!(b[*i], '0'..='9' | '-' | '+' | '.' | 'e' | 'E') {
                *i += 1;
            }
            let s: String = b[start..*i].iter().collect();
            Json::Num(s.parse().unwrap_or_else(|_| panic!("bad number {s:?}")))
        }
    }
}

/// An XML element: its name, attributes (entities decoded), parent index and text.
#[derive(Debug)]
pub struct Element {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub parent: Option<usize>,
}

fn unescape(s: &str) -> String {
    assert!(
        !s.contains('<') && s.chars().all(|c| c >= ' ' || "\t\n\r".contains(c)),
        "unescaped markup or control character in {s:?}"
    );
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Lists every element in document order; panics on mismatched or unclosed tags.
pub fn parse_xml(text: &str) -> Vec<Element> {
    let mut out: Vec<Element> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut rest = text.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").expect("end of XML declaration") + 2..];
    }
    while let Some(lt) = rest.find('<') {
        unescape(&rest[..lt]);
        rest = &rest[lt + 1..];
        let gt = rest.find('>').expect("unclosed tag");
        let tag = &rest[..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("closing tag without opening");
            assert_eq!(out[open].name, name.trim(), "mismatched closing tag");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs_text) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        let mut attrs = BTreeMap::new();
        loop {
            attrs_text = attrs_text.trim_start();
            if attrs_text.is_empty() {
                break;
            }
            let eq = attrs_text.find("=\"").expect("attribute without =\"");
            let key = attrs_text[..eq].trim().to_string();
            let after = &attrs_text[eq + 2..];
            let end = after.find('"').expect("unterminated attribute");
            attrs.insert(key, unescape(&after[..end]));
            attrs_text = &after[end + 1..];
        }
        out.push(Element {
            name: name.to_string(),
            attrs,
            parent: stack.last().copied(),
        });
        if !self_closing {
            stack.push(out.len() - 1);
        }
    }
    assert!(stack.is_empty(), "unclosed elements at end of document");
    unescape(rest);
    out
}
