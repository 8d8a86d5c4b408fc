//! Terminal-safe text. Owns the one rule for what a plugin's or a site file's text may put on
//! the user's terminal; it must never be bypassed by a print of such text (cli.rs prints every
//! error, warning, log line, table and diff through [`safe`] or [`safe_json`]).
//!
//! A plugin controls its warnings, its log output, every string of its plan (file contents
//! included, which `plugin check` shows as a diff) and the messages of its errors; a site file
//! controls names, values and the source lines quoted in diagnostics. Printed raw, such text
//! could move the cursor, clear the screen, retitle the window or answer back to the terminal
//! (C0 and C1 control characters, ESC sequences, the 8-bit CSI U+009B), overwrite a line
//! (carriage return), or reorder what the user reads (the Unicode bidirectional overrides,
//! embeddings, isolates and marks: "Trojan Source", CVE-2021-42574), or break one line into
//! two on terminals and editors that honour the Unicode line and paragraph separators.
//!
//! Each such character is replaced by a visible escape (`\u{202e}`; `\u202e` inside JSON
//! strings, where it is the same string), so the text still says what the plugin sent.
//! Everything else passes unchanged, so ordinary messages, non-Latin scripts and emoji print
//! as they are. Newline and tab are kept in [`safe`] (multi-line messages, diffs, tables).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: every C0 control but tab and newline, DEL,
/// every C1 control (U+0080..=U+009F), the bidirectional formatting characters of Unicode
/// UAX #9 (LRE, RLE, PDF, LRO, RLO U+202A..=U+202E; LRI, RLI, FSI, PDI U+2066..=U+2069; the
/// marks LRM U+200E, RLM U+200F, ALM U+061C) and the line and paragraph separators U+2028,
/// U+2029.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x08'
        | '\x0b'..='\x1f'
        | '\x7f'..='\u{9f}'
        | '\u{061c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// How an unsafe character is written.
#[derive(Clone, Copy)]
enum Style {
    /// `\u{1b}`: plain text.
    Text,
    /// `\u001b`: inside a JSON string, where it decodes to the character itself.
    Json,
}

fn escape(text: &str, style: Style) -> Cow<'_, str> {
    let Some(first) = text.find(is_unsafe) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if is_unsafe(c) {
            // Every unsafe character is in the Basic Multilingual Plane: four hex digits do.
            let _ = match style {
                Style::Text => write!(out, "\\u{{{:x}}}", c as u32),
                Style::Json => write!(out, "\\u{:04x}", c as u32),
            };
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every [`is_unsafe`] character replaced by a visible `\u{...}` escape; newlines
/// and tabs stay. Borrows when there is nothing to escape.
pub fn safe(text: &str) -> Cow<'_, str> {
    escape(text, Style::Text)
}

/// The same for a JSON document (serde_json's output): each unsafe character becomes a
/// `\uXXXX` escape, which is the same string to a JSON reader. serde_json already escapes C0
/// controls; this adds DEL, C1 and the bidi and separator characters it leaves raw. Those
/// can only occur inside JSON strings, so the result parses to the same value.
pub fn safe_json(json: &str) -> Cow<'_, str> {
    escape(json, Style::Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_what_a_terminal_acts_on() {
        assert_eq!(safe("plain é 日本 ✓\tx\ny"), "plain é 日本 ✓\tx\ny");
        assert!(matches!(safe("plain"), Cow::Borrowed(_)));
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("over\rwrite"), "over\\u{d}write");
        assert_eq!(safe("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(safe("\u{7f}"), "\\u{7f}");
        assert_eq!(
            safe("admin\u{202e}txt.exe\u{2066}x\u{2069}"),
            "admin\\u{202e}txt.exe\\u{2066}x\\u{2069}"
        );
        assert_eq!(safe("a\u{2028}b\u{2029}"), "a\\u{2028}b\\u{2029}");
        assert_eq!(
            safe("\u{200e}\u{200f}\u{61c}"),
            "\\u{200e}\\u{200f}\\u{61c}"
        );
        assert_eq!(safe_json("\"a\u{202e}b\""), "\"a\\u202eb\"");
    }

    /// Every character of `char`'s range outside the unsafe set, and the unsafe ones themselves,
    /// drawn often enough that each class appears in most cases.
    fn text() -> impl Strategy<Value = String> {
        let unsafe_char = prop_oneof![
            (0u32..=0x1f).prop_filter_map("tab and newline are safe", |c| {
                char::from_u32(c).filter(|c| !matches!(c, '\t' | '\n'))
            }),
            (0x7fu32..=0x9f).prop_map(|c| char::from_u32(c).expect("C1 is valid")),
            prop::sample::select(vec![
                '\u{061c}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}',
                '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
            ]),
        ];
        let c = prop_oneof![3 => any::<char>(), 1 => unsafe_char, 1 => prop::sample::select(vec!['\\', '\n', '\t', 'u', '{', '}'])];
        prop::collection::vec(c, 0..64).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Nothing unsafe survives; the escaping works character by character (so a text
        /// cannot be built to smuggle a character through: the result of a concatenation is the
        /// concatenation of the results); a safe character passes as it is and an unsafe one
        /// becomes printable ASCII that names it; a text with nothing unsafe comes back borrowed.
        #[test]
        fn safe_leaves_nothing_unsafe_and_changes_nothing_else(a in text(), b in text()) {
            let out = safe(&a);
            prop_assert!(!out.chars().any(is_unsafe), "{:?} -> {:?}", a, out);
            let joined = format!("{a}{b}");
            prop_assert_eq!(safe(&joined).into_owned(), format!("{}{}", safe(&a), safe(&b)));
            for c in a.chars() {
                let one = c.to_string();
                let got = safe(&one);
                if is_unsafe(c) {
                    prop_assert!(got.bytes().all(|b| b.is_ascii_graphic()), "{:?}", got);
                    let hex = got.strip_prefix("\\u{").and_then(|h| h.strip_suffix('}'));
                    let named = hex.and_then(|h| u32::from_str_radix(h, 16).ok());
                    prop_assert_eq!(named, Some(c as u32));
                } else {
                    prop_assert_eq!(got.as_ref(), one.as_str());
                }
            }
            if !a.chars().any(is_unsafe) {
                prop_assert!(matches!(out, Cow::Borrowed(_)));
            }
        }

        /// JSON stays the same JSON: a serialized string, made safe, parses back to itself.
        #[test]
        fn safe_json_keeps_the_value(s in text()) {
            let json = serde_json::to_string(&serde_json::json!({ "k": [s.clone()] })).unwrap();
            let out = safe_json(&json);
            prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
            let back: serde_json::Value = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(back["k"][0].as_str(), Some(s.as_str()));
        }
    }
}
